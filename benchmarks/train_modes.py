"""Step time of the study's CS and CR modes against a plain curriculum (C) step, in one run.

For each model size it builds three trainers that differ only in the mode (C, CS, CR: the
study-schema configs), puts all three in stage 3 of their curricula (t in [150, 1000); CS with
76 of 256 bottleneck channels active at CelebA-64 scale, CR with lambda = 2.4e-5) and times
``Trainer.train_step`` on one fixed batch of synthetic faces, interleaved (C, CS, CR, then
CS, CR, C, ...) after a warm-up step each, so that all three see the same machine load. It prints the median
step times, the overhead of CS and CR over C, and, timed on their own (median of 50), the work
the modes add: the gradient accumulation of CS and the penalty's forward and backward of CR.
The target is an overhead of at most 5 %.

Steps run on one thread and are timed in process CPU time as well as wall time: on a machine
that other processes share, CPU time still measures the step's own work, while wall time also
counts the waits for a core. Run it from the repository root::

    PYTHONPATH=src python benchmarks/train_modes.py   # ~3 minutes on an idle 2-core machine
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ddpm_lens.core.config import load_config, with_overrides
from ddpm_lens.data.datasets import build_dataset, first_n
from ddpm_lens.train.channel_regrowth import accumulate_mask_gradients
from ddpm_lens.train.trainer import Trainer

THREADS = 1
MODES = ("C", "CS", "CR")
CASES = [  # name, (C, CS, CR) configs, batch, timed steps
    ("tiny (32x32)", ("configs/tiny_study_c.json", "configs/tiny_cs.json", "configs/tiny_cr.json"), 16, 15),
    ("CelebA-64", ("configs/celeba64_c.json", "configs/celeba64_cs.json", "configs/celeba64_cr.json"), 2, 9),
]
STAGE = 2  # 0-based: the study's stage3_detail


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def trainer_for(config: str, batch: int, tmp: str) -> Trainer:
    overrides = {"dataset.name": "synthetic-faces", "dataset.max_images": None, "train.batch_size": batch}
    cfg = with_overrides(load_config(config), overrides)
    trainer = Trainer(cfg, run_dir=Path(tmp) / Path(config).stem, progress=False)
    trainer.sampler.begin_epoch(sum(s.epochs for s in cfg.curriculum.stages[:STAGE]))
    trainer.modes.enter_stage(trainer.sampler.stage, torch.Generator())
    return trainer


def timed(fn) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def median_time(fn, repeats: int) -> float:
    return statistics.median(timed(fn)[0] for _ in range(repeats))


def bench(configs: tuple[str, ...], batch: int, steps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        trainers = dict(zip(MODES, (trainer_for(c, batch, tmp) for c in configs)))
    res = trainers["C"].cfg.dataset.resolution
    x = first_n(build_dataset("synthetic-faces", resolution=res), batch)  # (B, 3, R, R)
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    for trainer in trainers.values():  # warm-up
        trainer.train_step([x])
    for k in range(steps):
        for mode in MODES[k % 3 :] + MODES[: k % 3]:  # rotated, so no mode always follows another
            times[mode].append(timed(lambda t=trainers[mode]: t.train_step([x])))
    out = {m: statistics.median(c for c, _ in v) for m, v in times.items()}
    out.update({f"{m}_wall": statistics.median(w for _, w in v) for m, v in times.items()})
    cs, cr = trainers["CS"], trainers["CR"]
    cs.model(x, torch.full((batch,), 500)).square().mean().backward()  # gradients to accumulate
    out["cs_extra"] = median_time(lambda: accumulate_mask_gradients(cs.model), 50)
    out["cr_extra"] = median_time(lambda: (cr.modes.penalty(STAGE) / batch).backward(), 50)
    out["active"] = cs.model.active_channels
    out["lambda"] = cr.modes.lam(STAGE)
    return out


def main() -> None:
    torch.set_num_threads(THREADS)
    print(f"machine: {cpu_name()}, {THREADS} threads, torch {torch.__version__}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share the cores when above ~0.5)")
    for name, configs, batch, steps in CASES:
        m = bench(configs, batch, steps)
        print(
            f"{name}, batch {batch}, stage {STAGE + 1} (CS {m['active']} channels active, CR lambda "
            f"{m['lambda']:g}), median of {steps} interleaved steps:"
        )
        print(f"  C  {m['C'] * 1e3:9.1f} ms CPU/step ({m['C_wall'] * 1e3:.1f} ms wall)")
        for mode, extra in (("CS", "cs_extra"), ("CR", "cr_extra")):
            over, wall = m[mode] / m["C"] - 1, m[f"{mode}_wall"] / m["C_wall"] - 1
            print(
                f"  {mode} {m[mode] * 1e3:9.1f} ms CPU/step  {over:+6.1%} vs C ({wall:+.1%} wall);  the "
                f"mode's own work {m[extra] * 1e3:.2f} ms = {m[extra] / m['C']:.2%} of a C step"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
