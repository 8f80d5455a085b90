"""The study's U-ViT checkpoint folders: ``ckpts/<step>.ckpt/`` with ``nnet.pth`` (raw weights),
``nnet_ema.pth`` (EMA weights), ``optimizer.pth``, ``lr_scheduler.pth`` and ``step.pth``, as its
``utils.TrainState.save`` writes them (bare state dicts, one ``torch.save`` each).

Only the weights file chosen is read, with ``weights_only=True`` (through
:func:`ddpm_lens.core.safe_load.read_checkpoint`, like every other checkpoint).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ddpm_lens.core.safe_load import read_checkpoint
from ddpm_lens.util.errors import UserError, warn

FILES = {"ema": "nnet_ema.pth", "model": "nnet.pth"}


def is_uvit_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in FILES.values())


def read_uvit_folder(
    path: str | os.PathLike, *, use_ema: bool
) -> tuple[dict[str, torch.Tensor], str, int | None]:
    """``(state_dict, which, step)``: ``nnet_ema.pth`` with ``use_ema`` (else ``nnet.pth``; the other
    when only one is there, with a warning); the step from the folder's name (:func:`uvit_step`)."""
    p = Path(path)
    which = "ema" if use_ema else "model"
    if not (p / FILES[which]).is_file():
        other = "model" if which == "ema" else "ema"
        warn(f"U-ViT checkpoint {p} has no {FILES[which]}; using its {FILES[other]}")
        which = other
    obj = read_checkpoint(p / FILES[which])
    if not (
        isinstance(obj, dict)
        and obj
        and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())
    ):
        raise UserError(
            f"checkpoint {p / FILES[which]} is not a state dict (name -> tensor) as U-ViT's nnet files are"
        )
    return obj, which, uvit_step(p)


def uvit_step(path: str | os.PathLike) -> int | None:
    """The training step in a U-ViT checkpoint folder's name, ``<step>.ckpt``; None for another name."""
    m = re.fullmatch(r"(\d+)\.ckpt", Path(path).name)
    return int(m.group(1)) if m else None
