"""Runs on disk and their checkpoints, for scoring every checkpoint of a training run.

A run folder holds checkpoints named ``<name>_<epoch>.pt`` (ddpm-torch) or
``<name>_<YYYYmmdd_HHMMSS>_<epoch>.pt`` (ddpm-lens runs and the study's folders), ``.pth`` and
``.safetensors`` too, or the study's U-ViT checkpoint folders ``<step>.ckpt/`` (``nnet.pth``,
``nnet_ema.pth``; a U-ViT run's ``ckpts/``), ordered by their step. A folder without checkpoints
whose subfolders have them (``chkpts/``, a U-ViT workdir) stands for those runs. A run's config
is ``config`` if given, else its ``config.json`` (ddpm-lens runs), else the one each checkpoint
carries (a U-ViT run carries none: pass its ``.py`` config).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ddpm_lens.core.checkpoint import parse_epoch
from ddpm_lens.core.uvit_checkpoint import is_uvit_folder, uvit_step
from ddpm_lens.util.errors import UserError

SUFFIXES = (".pt", ".pth", ".safetensors")


@dataclass(frozen=True)
class TrainingRun:
    name: str
    folder: Path
    config: Path | None
    checkpoints: tuple[Path, ...]  # by epoch (U-ViT folders: by step), then name


def checkpoint_number(path: Path) -> int | None:
    """The epoch in a checkpoint file's name, or the step of a U-ViT ``<step>.ckpt/`` folder."""
    if path.is_dir():
        return uvit_step(path) if is_uvit_folder(path) else None
    return parse_epoch(path) if path.suffix in SUFFIXES else None


def checkpoints_in(folder: Path) -> list[Path]:
    """The checkpoints of ``folder`` (not recursive), by epoch or step, then name."""
    found = [p for p in folder.iterdir() if not p.name.startswith(".") and checkpoint_number(p) is not None]
    return sorted(found, key=lambda p: (checkpoint_number(p), p.name))


def find_runs(
    run_dirs: Sequence[str | os.PathLike], *, config: str | os.PathLike | None = None
) -> list[TrainingRun]:
    """The runs in ``run_dirs``, in the order given; UserError for a folder without checkpoints."""
    if not run_dirs:
        raise UserError("name at least one run folder")
    folders: list[Path] = []
    for d in map(Path, run_dirs):
        if not d.is_dir():
            raise UserError(f"run folder {d} not found: pass folders that hold checkpoints")
        if checkpoints_in(d):
            folders.append(d)
            continue
        subs = sorted(s for s in d.iterdir() if s.is_dir() and checkpoints_in(s))
        if not subs:
            raise UserError(
                f"no checkpoints in {d} or its subfolders: expected files named <name>_<epoch>.pt "
                "or <name>_<YYYYmmdd_HHMMSS>_<epoch>.pt, or U-ViT folders <step>.ckpt/ holding nnet.pth"
            )
        folders += subs
    names = [f.name for f in folders]
    runs = []
    for f in folders:
        name = f.name if names.count(f.name) == 1 else f"{f.parent.name}/{f.name}"
        own = f / "config.json"
        chosen = Path(config) if config is not None else (own if own.is_file() else None)
        runs.append(TrainingRun(name, f, chosen, tuple(checkpoints_in(f))))
    if len({r.name for r in runs}) != len(runs):
        raise UserError(f"run folders given twice: {', '.join(names)}")
    return runs
