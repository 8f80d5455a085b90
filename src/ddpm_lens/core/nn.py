"""Small building blocks of the UNet, numerically matching ddpm-torch.

Facts that matter for checkpoint compatibility (see ../shared/compat):
GroupNorm has 32 groups and eps 1e-6; the timestep embedding puts the sin half first and
uses a ``half - 1`` frequency denominator; layers declared with init scale 0 get
Xavier-uniform with gain sqrt(1e-10) = 1e-5 (near zero, not zero).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GROUPS = 32
GN_EPS = 1e-6


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUPS, channels, eps=GN_EPS)


def init_xavier(module: nn.Conv2d | nn.Linear, scale: float = 1.0) -> nn.Module:
    """Xavier-uniform weights with gain sqrt(scale) (scale 0 means 1e-10), zero bias."""
    nn.init.xavier_uniform_(module.weight, gain=math.sqrt(scale or 1e-10))
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def conv3x3(c_in: int, c_out: int, *, stride: int = 1, padding: int = 1, scale: float = 1.0) -> nn.Conv2d:
    return init_xavier(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=padding), scale)


def conv1x1(c_in: int, c_out: int, *, scale: float = 1.0) -> nn.Conv2d:
    return init_xavier(nn.Conv2d(c_in, c_out, 1), scale)


def linear(c_in: int, c_out: int, *, scale: float = 1.0) -> nn.Linear:
    return init_xavier(nn.Linear(c_in, c_out), scale)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps ``t`` (B,) -> (B, dim), float32.

    f_i = exp(-i ln(10000) / (half - 1)), i = 0..half-1; output [sin(t f), cos(t f)],
    zero-padded by one column for odd ``dim``.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) / (half - 1) * torch.arange(half, dtype=torch.float32, device=t.device)
    )
    args = t.to(torch.float32)[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class SamePad2d(nn.Module):
    """TensorFlow-'SAME' padding for a stride-s, k-wide kernel: extra pixel goes bottom/right."""

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h = max((math.ceil(h / self.stride) - 1) * self.stride + self.kernel_size - h, 0)
        pad_w = max((math.ceil(w / self.stride) - 1) * self.stride + self.kernel_size - w, 0)
        return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
