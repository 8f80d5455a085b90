"""Pick a torch device from a user's flag, falling back to the CPU with a warning."""

from __future__ import annotations

import torch

from ddpm_lens.util.errors import UserError, warn


def pick_device(requested: str = "auto", *, fallback: bool = True) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda[:N]`` without CUDA -> cpu with a warning.

    With ``fallback=False`` a missing CUDA device is a UserError instead (training wants that).
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"unknown device '{requested}': use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            if not fallback:
                raise UserError(f"device {requested} requested but CUDA is not available: use --device cpu")
            warn(f"CUDA is not available; using the CPU instead of {requested}")
            return torch.device("cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"device {requested} does not exist: {torch.cuda.device_count()} CUDA device(s) found"
            )
    return device
