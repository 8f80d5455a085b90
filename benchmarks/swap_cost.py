"""Benchmark: what writing a run beside the earlier one and swapping it in costs.

python benchmarks/swap_cost.py        # the demo twice into one folder, about a minute on 2 CPU cores

A rerun holds the earlier run and the new one on disk at once until the swap; the swap itself
is renames and unlinks. Prints the run's size (the extra disk space a rerun needs at its peak),
the time of the whole rerun and of its swap (:func:`ddpm_lens.output.run_folder.swap_in`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import ddpm_lens.output.visualization_run as visualization_run
from ddpm_lens.cli import main as cli


def main() -> None:
    real, swaps = visualization_run.swap_in, []

    def timed_swap(*args, **kwargs):
        tic = time.perf_counter()
        real(*args, **kwargs)
        swaps.append(time.perf_counter() - tic)

    visualization_run.swap_in = timed_swap
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo_output"
        for run in ("first run", "rerun over it"):
            tic = time.perf_counter()
            assert cli(["demo", "--output_dir", str(out), "--no_progress"]) == 0
            total = time.perf_counter() - tic
            files = [p for p in out.rglob("*") if p.is_file()]
            size = sum(p.stat().st_size for p in files)
            print(
                f"{run}: {total:.2f} s, swap {swaps[-1] * 1000:.0f} ms ({swaps[-1] / total:.1%}); "
                f"{len(files)} files, {size / 2**20:.1f} MB held twice at the rerun's peak"
            )


if __name__ == "__main__":
    main()
