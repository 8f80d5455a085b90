"""Pick a torch device from a user's flag, falling back to the CPU with a warning."""

from __future__ import annotations

import torch

from ddpm_lens.util.errors import UserError, warn

VALID = "auto, cpu, cuda or cuda:N"  # the kinds every command runs on


def pick_device(requested: str = "auto", *, fallback: bool = True) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda[:N]`` without CUDA -> cpu with a warning.

    With ``fallback=False`` a missing CUDA device is a UserError instead (training wants that).
    Any other kind (``mps``, ``xpu``, ``meta``, a typo) is a UserError listing the valid ones:
    the UNet and the samplers are tested on the CPU and CUDA only.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device '{requested}': use {VALID}") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device '{requested}' is not supported ({device.type} devices are not): use {VALID}")
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
