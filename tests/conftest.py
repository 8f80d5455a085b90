"""Shared fixtures: tiny models whose weights are perturbed so numerics are exercised.

ddpm-torch zero-inits residual branches to ~1e-5, so a freshly initialised model barely
depends on t or attention; ``perturb`` adds O(0.05) noise to every weight to fix that.
"""

from __future__ import annotations

import os

import pytest
import torch

from ddpm_lens.core.config import ModelConfig
from ddpm_lens.core.unet import build_unet

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


# --- training (tests/test_trainer.py, tests/test_distributed.py) -----------------------------
@pytest.fixture(scope="session")
def face_folder(tmp_path_factory):
    """16 synthetic faces as 16x16 PNGs: a `folder` dataset with 4-step epochs at batch 4."""
    from PIL import Image

    from ddpm_lens.data.datasets import build_dataset, first_n, to_uint8

    root = tmp_path_factory.mktemp("faces")
    for i, face in enumerate(to_uint8(first_n(build_dataset("synthetic-faces", resolution=16), 16))):
        Image.fromarray(face).save(root / f"{i:02d}.png")
    return root


# ---- checkpoints of two different tiny models, as a visualizer run would get them -------------
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def write_tiny_checkpoint(path, *, config: str = "configs/tiny.json", seed: int = 0, model_overrides=None):
    """A ddpm-lens checkpoint of a perturbed tiny model, carrying its config. Its EMA and raw
    weights differ (the EMA is the raw weights perturbed once more), so a loader that picks
    the wrong set changes every activation."""
    from ddpm_lens.core.checkpoint import save_checkpoint
    from ddpm_lens.core.config import load_config, with_overrides

    cfg = load_config(ROOT / config)
    if model_overrides:
        cfg = with_overrides(cfg, {f"model.{k}": v for k, v in model_overrides.items()})
    torch.manual_seed(seed)
    model = perturb(build_unet(cfg.model), seed=seed)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    ema = perturb(model, seed=seed + 1000).state_dict()
    save_checkpoint(
        {
            "model": raw,
            "ema": {"decay": 0.99, "shadow": ema, "num_updates": 9},
            "epoch": 3,
            "config": cfg.to_dict(),
        },
        path,
    )
    return path


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """(baseline, curriculum) checkpoint paths of two differently perturbed tiny models."""
    d = tmp_path_factory.mktemp("pair")
    return (
        write_tiny_checkpoint(d / "tiny_20260101_000000_3.pt", seed=0),
        write_tiny_checkpoint(d / "tiny_c_20260101_000000_3.pt", config="configs/tiny_c.json", seed=1),
    )


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: on a shared 2-core machine, 2 threads stall each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
