"""The run's output folder: checked before any work, and where each figure goes."""

from __future__ import annotations

import os
from pathlib import Path

from ddpm_lens.util.errors import UserError


def figure_path(sample: int, condition: str, layer: str) -> str:
    return f"sample_{sample}/{condition}/{layer}_baseline_vs_curriculum.png"


def check_output_dir(out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output_dir {out} is a file: pass a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --output_dir {out}: {exc.strerror}") from None
    return out
