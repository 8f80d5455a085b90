"""U-ViT beside the UNet on 2 CPU threads: forward time per image and training images/s.

Interleaved rounds so both models see the same machine load; medians over the rounds:

- forward (inference mode, batch 8, t = 500, float32) of a CelebA-64 U-ViT (the study's
  ``celeba64_uvit_small`` before its width went to 256: embed_dim 512, depth 12, patch 4;
  random weights) and of the study's CelebA-64 UNet (configs/celeba.json), and of the two tiny
  configs (tiny_uvit.json, tiny.json);
- ``Trainer.train_step`` images/s of configs/tiny_uvit.json and configs/tiny.json (batch 16,
  32x32, one fixed batch of synthetic faces, after one warm-up step each).

Run from the repository root::

    PYTHONPATH=src python benchmarks/uvit_speed.py   # 6 minutes at load average 16 on 2 cores
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ddpm_lens.core.config import load_config
from ddpm_lens.core.unet import build_unet, count_parameters
from ddpm_lens.core.uvit import UViTConfig
from ddpm_lens.data.datasets import build_dataset, first_n
from ddpm_lens.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 5


def forward_ms(model, res: int, batch: int = 8) -> float:
    x, t = torch.rand(batch, 3, res, res) * 2 - 1, torch.full((batch,), 500)
    with torch.inference_mode():
        tic = time.perf_counter()
        model(x, t)
    return (time.perf_counter() - tic) / batch * 1e3


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    models = {
        "U-ViT CelebA-64 (512, depth 12)": (build_unet(UViTConfig()).eval(), 64),
        "UNet CelebA-64 (configs/celeba.json)": (
            build_unet(load_config(ROOT / "configs/celeba.json").model).eval(),
            64,
        ),
        "U-ViT tiny (configs/tiny_uvit.json)": (
            build_unet(load_config(ROOT / "configs/tiny_uvit.json").model).eval(),
            32,
        ),
        "UNet tiny (configs/tiny.json)": (
            build_unet(load_config(ROOT / "configs/tiny.json").model).eval(),
            32,
        ),
    }
    for model, res in models.values():
        forward_ms(model, res)  # warm-up
    times = {name: [] for name in models}
    for _ in range(ROUNDS):
        for name, (model, res) in models.items():
            times[name].append(forward_ms(model, res))
    print(f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, 2 threads")
    for name, (model, _) in models.items():
        print(
            f"forward  {name}: {statistics.median(times[name]):.1f} ms per image "
            f"({count_parameters(model):,} parameters)"
        )
    batch = first_n(build_dataset("synthetic-faces", resolution=32), 16)
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tiny_uvit", "tiny"):
            trainers[name] = Trainer(
                load_config(ROOT / f"configs/{name}.json"), run_dir=Path(tmp) / name, progress=False
            )
            trainers[name].train_step([batch])
        steps = {name: [] for name in trainers}
        for _ in range(ROUNDS):
            for name, trainer in trainers.items():
                tic = time.perf_counter()
                trainer.train_step([batch])
                steps[name].append(time.perf_counter() - tic)
    for name in trainers:
        print(f"training configs/{name}.json, batch 16: {16 / statistics.median(steps[name]):.1f} images/s")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
