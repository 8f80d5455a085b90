"""Shared fixtures: tiny models whose weights are perturbed so numerics are exercised.

ddpm-torch zero-inits residual branches to ~1e-5, so a freshly initialised model barely
depends on t or attention; ``perturb`` adds O(0.05) noise to every weight to fix that.
"""

from __future__ import annotations

import os

import pytest
import torch

from ddpm_lens.config import ModelConfig
from ddpm_lens.unet import build_unet

torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY_MODEL = ModelConfig(
    hid_channels=32, ch_multipliers=(1, 1, 2, 2), num_res_blocks=1, apply_attn=(False, False, True, False)
)


def perturb(model: torch.nn.Module, *, scale: float = 0.05, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return perturb(build_unet(TINY_MODEL)).eval()
