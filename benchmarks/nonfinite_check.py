"""Benchmark: what the NaN/inf check of the weights (core.checkpoint.check_values) costs at load.

Writes one full-size CelebA-64 ddpm-torch trainer checkpoint (~546 MB, random weights, as
``visualize_speed.py`` makes them), then loads its EMA weights into a model
(``load_checkpoint``, as every command does) ``--repeat`` times each with the check and without
it (``allow_nonfinite=True``; the dtype check, which reads no data, stays on), alternating to
cancel this shared machine's drift, in one process with the file in the page cache. Prints
both medians, the check's share of the load time and, separately, the check alone on weights
already in memory. Target: under 5 % of the load time.

    python benchmarks/nonfinite_check.py            # ~1 minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from visualize_speed import ROOT, make_trainer_checkpoint  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=9, help="loads with and without the check (default: 9 each)")
    args = p.parse_args()

    import torch

    from ddpm_lens.core.checkpoint import check_values, load_checkpoint, load_weights

    config = ROOT / "configs/celeba.json"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "celeba_20251219_113720_16.pt"
        make_trainer_checkpoint(path, 0)
        size = path.stat().st_size / 2**20
        load_checkpoint(config, path, memory_format=torch.channels_last)  # warm-up: page cache, allocator
        times: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for i in range(args.repeat):
            for checked in (True, False) if i % 2 == 0 else (False, True):
                tic, cpu_tic = time.perf_counter(), time.process_time()
                load_checkpoint(config, path, memory_format=torch.channels_last, allow_nonfinite=not checked)
                times[checked].append(time.perf_counter() - tic)
                cpu[checked].append(time.process_time() - cpu_tic)
        weights = load_weights(path, allow_nonfinite=True)
        resident = {k: v.clone() for k, v in weights.state_dict.items()}  # out of the mapping, in memory
        weights.state_dict = resident
        alone = []
        for _ in range(args.repeat):
            tic = time.perf_counter()
            check_values(weights)
            alone.append(time.perf_counter() - tic)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    cpu_on, cpu_off = statistics.median(cpu[True]), statistics.median(cpu[False])
    paired = statistics.median(a - b for a, b in zip(times[True], times[False]))
    mb = sum(v.numel() * v.element_size() for v in resident.values()) / 2**20
    print(
        f"checkpoint: {size:.0f} MiB ddpm-torch trainer file, EMA weights {mb:.0f} MiB; torch threads "
        f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"load (load_checkpoint, EMA weights into the UNet), median of {args.repeat}:")
    for checked, name in ((True, "with the NaN/inf check:   "), (False, "without (allow_nonfinite):")):
        runs = ", ".join(f"{t * 1000:.0f}" for t in times[checked])
        print(f"  {name} {(on if checked else off) * 1000:7.1f} ms wall  ({runs})")
    print(f"  median paired difference: {paired * 1000:+.1f} ms = {paired / off * 100:+.1f} % of the load")
    print(
        f"  process CPU time: {cpu_on * 1000:.0f} ms with, {cpu_off * 1000:.0f} ms without "
        f"({(cpu_on - cpu_off) / cpu_off * 100:+.1f} %)"
    )
    check = statistics.median(alone)
    print(
        f"the check alone on the weights in memory: {check * 1000:.1f} ms = {check / off * 100:.1f} % of the "
        f"load's wall time, {check / cpu_off * 100:.1f} % of its CPU time (target < 5 %)"
    )


if __name__ == "__main__":
    main()
