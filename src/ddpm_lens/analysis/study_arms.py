"""The arms of an across-training study: a label and the checkpoints of one or more runs.

An arm is named ``LABEL=PATH[,PATH...]`` (``--arm Baseline=chkpts/celeba``) or in a study
file (JSON)::

    {"arms": [{"label": "Baseline", "paths": ["chkpts/celeba"]},
              {"label": "C", "paths": ["chkpts/celeba64_c"], "config": "configs/celeba64_c.json"}]}

Each PATH is a checkpoint file (``.pt``, ``.pth``, ``.safetensors``), a diffusers folder, a run
folder of checkpoints in any layout :mod:`~ddpm_lens.analysis.training_runs` reads (ours and the
study's ``<name>_<YYYYmmdd_HHMMSS>_<epoch>.pt``, ddpm-torch's ``<name>_<epoch>.pt``, a U-ViT run's
``ckpts/`` of ``<step>.ckpt/`` folders), one U-ViT ``<step>.ckpt/`` folder, or a folder of such run
folders. Checkpoints are ordered by the epoch in their file name (U-ViT folders: by the step in
theirs); an arm holding a checkpoint without one is ordered by file modification time instead,
with a warning that says so. A U-ViT arm needs its ``.py`` config (``config`` in the study file,
or ``--config``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ddpm_lens.analysis.training_runs import SUFFIXES, find_runs
from ddpm_lens.core.checkpoint import parse_epoch
from ddpm_lens.core.uvit_checkpoint import is_uvit_folder, uvit_step
from ddpm_lens.util.errors import UserError, warn

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]*$")


@dataclass(frozen=True)
class CheckpointRef:
    path: Path
    config: Path | None  # the config file to build it with; None: the one it carries
    epoch: int | None  # from the file name; None where it has none
    step: int | None = None  # a U-ViT folder's, from its name ``<step>.ckpt``


@dataclass(frozen=True)
class Arm:
    label: str
    checkpoints: tuple[CheckpointRef, ...]  # in training order
    ordered_by: str  # "epoch" | "step" | "file time"


def parse_arm(spec: str) -> tuple[str, list[str]]:
    """``LABEL=PATH[,PATH...]`` -> (label, paths); UserError for anything else."""
    label, sep, rest = spec.partition("=")
    label = label.strip()
    paths = [p.strip() for p in rest.split(",") if p.strip()]
    if not sep or not paths:
        raise UserError(f"--arm {spec!r} is not LABEL=PATH[,PATH...]: e.g. --arm Baseline=chkpts/celeba")
    _check_label(label)
    return label, paths


def read_study_file(path: str | os.PathLike) -> list[tuple[str, list[str], str | None]]:
    """(label, paths, config) of each arm of a study file; relative paths are taken from the file's folder."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read study file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"study file {path} is not JSON ({exc.msg}, line {exc.lineno})") from None
    arms = data.get("arms") if isinstance(data, dict) else None
    if not isinstance(arms, list) or not arms:
        raise UserError(f'study file {path} needs "arms": [{{"label": ..., "paths": [...]}}, ...]')
    out = []
    for i, arm in enumerate(arms):
        ok = (
            isinstance(arm, dict) and isinstance(arm.get("label"), str) and isinstance(arm.get("paths"), list)
        )
        if not ok or not all(isinstance(p, str) for p in arm["paths"]) or not arm["paths"]:
            raise UserError(
                f'study file {path}: arm {i + 1} needs "label" (text) and "paths" (a list of paths)'
            )
        _check_label(arm["label"])
        config = arm.get("config")
        out.append(
            (
                arm["label"],
                [str(path.parent / p) for p in arm["paths"]],
                None if config is None else str(path.parent / config),
            )
        )
    return out


def resolve_arms(
    specs: Sequence[tuple[str, Sequence[str], str | None]], *, config: str | os.PathLike | None = None
) -> list[Arm]:
    """The arms of (label, paths, config) triples, in the order given; ``config`` for every
    checkpoint that names none. UserError for a duplicate label, a path without checkpoints,
    or a checkpoint named twice within an arm."""
    if not specs:
        raise UserError("name at least one arm: --arm LABEL=PATH[,PATH...] or --study FILE")
    labels = [label for label, _, _ in specs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise UserError(f"arm label(s) given twice: {', '.join(twice)}; give each arm its own label")
    arms = []
    for label, paths, own_config in specs:
        chosen = own_config if own_config is not None else config
        refs: list[CheckpointRef] = []
        for p in paths:
            refs += _checkpoints_of(Path(p), chosen, label)
        seen = [r.path.resolve() for r in refs]
        if len(set(seen)) != len(seen):
            raise UserError(f"arm {label} names a checkpoint more than once: give each file once")
        if all(r.epoch is not None for r in refs):
            refs.sort(key=lambda r: (r.epoch, r.path.name))
            ordered_by = "epoch"
        elif all(r.step is not None for r in refs):
            refs.sort(key=lambda r: (r.step, r.path.name))
            ordered_by = "step"
        else:
            missing = next(r.path.name for r in refs if r.epoch is None)
            warn(
                f"arm {label}: {missing} has no epoch number in its name (<name>_<epoch>.pt, or "
                "<step>.ckpt for U-ViT folders); its checkpoints are ordered by file modification time"
            )
            refs.sort(key=lambda r: (r.path.stat().st_mtime, r.path.name))
            ordered_by = "file time"
        arms.append(Arm(label, tuple(refs), ordered_by))
    return arms


def _checkpoints_of(path: Path, config: str | None, label: str) -> list[CheckpointRef]:
    cfg = Path(config) if config is not None else None
    if not path.exists():
        raise UserError(f"arm {label}: {path} not found; pass checkpoints, run folders or diffusers folders")
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise UserError(f"arm {label}: {path} is not a checkpoint ({', '.join(SUFFIXES)})")
        return [CheckpointRef(path, cfg or _run_config(path.parent), parse_epoch(path))]
    if is_uvit_folder(path):  # one U-ViT checkpoint, <step>.ckpt/
        return [CheckpointRef(path, cfg, None, uvit_step(path))]
    if _is_diffusers(path):
        return [CheckpointRef(path, cfg, parse_epoch(path))]
    try:
        runs = find_runs([path], config=cfg)
    except UserError:
        loose = sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES and not p.name.startswith(".")
        )
        diffusers = sorted(p for p in path.iterdir() if p.is_dir() and _is_diffusers(p))
        if not loose and not diffusers:
            raise UserError(
                f"arm {label}: no checkpoints in {path} or its subfolders; expected <name>_<epoch>.pt, "
                "<name>_<YYYYmmdd_HHMMSS>_<epoch>.pt, .safetensors files or diffusers folders"
            ) from None
        own = cfg or _run_config(path)
        return [CheckpointRef(p, own if p.is_file() else cfg, parse_epoch(p)) for p in loose + diffusers]
    return [_ref(c, run.config) for run in runs for c in run.checkpoints]


def _ref(path: Path, config: Path | None) -> CheckpointRef:
    if path.is_dir() and is_uvit_folder(path):
        return CheckpointRef(path, config, None, uvit_step(path))
    return CheckpointRef(path, config, parse_epoch(path))


def _run_config(folder: Path) -> Path | None:
    own = folder / "config.json"
    return own if own.is_file() else None


def _is_diffusers(path: Path) -> bool:
    weights = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
    return path.is_dir() and (
        (path / "model_index.json").is_file()
        or ((path / "config.json").is_file() and any((path / w).is_file() for w in weights))
    )


def _check_label(label: str) -> None:
    if not _LABEL.match(label):
        raise UserError(
            f"arm label {label!r}: use letters, digits, spaces and _ . + - (starting with a letter or digit)"
        )
