"""Cost of ``ddpm-lens trajectories``: 4 arms x 5 tiny checkpoints, then one more checkpoint.

Writes 20 checkpoints of the tiny study model (configs/tiny_study.json: 32 px, 64 training
images; each a differently perturbed model carrying its config), runs the study on them with
a light grid (32 images, 6 loss timesteps, 8 statistics images clean and at t = 100, 500),
adds a sixth checkpoint to one arm and runs it again on the same cache, all in one process.
Prints per-checkpoint seconds (mean, min, max), the cross-checkpoint phase (CKA,
comparisons), the peak RSS after each run (``ru_maxrss``: it should not grow with the number
of checkpoints) and what the rerun cost against one checkpoint's measuring time. The load
average is printed beside the figures: they are wall times on a shared machine.

    python benchmarks/trajectories_speed.py
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddpm_lens.analysis.study_arms import resolve_arms  # noqa: E402
from ddpm_lens.analysis.trajectories import run_study  # noqa: E402
from ddpm_lens.analysis.trajectory_measures import TrajectoryOptions  # noqa: E402
from ddpm_lens.core.checkpoint import save_checkpoint  # noqa: E402
from ddpm_lens.core.config import load_config  # noqa: E402
from ddpm_lens.core.unet import build_unet  # noqa: E402

ARMS = ("Baseline", "C", "CS", "CR")
OPTIONS = TrajectoryOptions(
    loss_num=32, loss_timesteps=(0, 10, 50, 100, 300, 700), stats_num=8, stats_timesteps=(100, 500)
)


def write_checkpoint(folder: Path, name: str, epoch: int, seed: int) -> None:
    cfg = load_config(ROOT / "configs/tiny_study.json")
    torch.manual_seed(seed)
    model = build_unet(cfg.model)
    g = torch.Generator().manual_seed(seed * 100 + epoch)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    state = model.state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        {
            "model": state,
            "ema": {"shadow": state},
            "epoch": epoch,
            "step": 4 * epoch,
            "config": cfg.to_dict(),
        },
        folder / f"{name}_20260101_000000_{epoch}.pt",
    )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for k, arm in enumerate(ARMS):
            for epoch in range(1, 6):
                write_checkpoint(root / arm, arm.lower(), epoch, seed=k)
        specs = [(arm, [str(root / arm)], None) for arm in ARMS]
        load = os.getloadavg()
        tic = time.perf_counter()
        first = run_study(resolve_arms(specs), OPTIONS, cache_dir=root / "cache", progress=False)
        first_s = time.perf_counter() - tic
        rss_first = peak_rss_mib()
        per = np.array([c["seconds"] for c in first.checkpoints])
        write_checkpoint(root / ARMS[1], ARMS[1].lower(), 6, seed=1)
        tic = time.perf_counter()
        second = run_study(resolve_arms(specs), OPTIONS, cache_dir=root / "cache", progress=False)
        second_s = time.perf_counter() - tic
        load_after = os.getloadavg()
        new = [c["seconds"] for c in second.checkpoints if not c["cached"]]
    print(f"trajectories: {len(ARMS)} arms x 5 tiny checkpoints (32 px), {torch.get_num_threads()} thread(s)")
    print(
        f"load average before / after: {load[0]:.1f} / {load_after[0]:.1f} (2 cores shared with other jobs)"
    )
    print(f"first run:  {first_s:7.1f} s for {len(per)} checkpoints, {len(first.rows)} rows")
    print(f"  per checkpoint: mean {per.mean():.2f} s, min {per.min():.2f} s, max {per.max():.2f} s")
    print(f"  cross-checkpoint phase (CKA, comparisons): {first.settings['cross_checkpoint_s']:.1f} s")
    print(f"  peak RSS: {rss_first:.0f} MiB")
    print(f"rerun with one more checkpoint: {second_s:7.1f} s ({len(new)} measured, {new[0]:.2f} s for it)")
    print(f"  cross-checkpoint phase: {second.settings['cross_checkpoint_s']:.1f} s")
    print(f"  peak RSS: {peak_rss_mib():.0f} MiB")
    print(f"  rerun / one checkpoint's mean time: {second_s / per.mean():.2f}")


if __name__ == "__main__":
    main()
