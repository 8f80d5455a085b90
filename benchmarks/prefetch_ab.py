"""Benchmark: what the visualizer's prefetch (analysis/prefetch.py) saves, A/B in one run.

The prefetch hashes both checkpoints on the second core while torch is imported and loads
the second checkpoint during the first model's forward pass. This runs the study's default
job on two full-size CelebA-64 trainer files alternately with and without ``--no_prefetch``
(``--pairs`` times each, alternating to cancel this shared machine's drift) and prints the
median wall time of each and the median of the paired differences.

    python benchmarks/prefetch_ab.py            # ~3 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from visualize_speed import make_checkpoint_pair, measure, ours_command  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=4, help="runs with and without prefetch (default: 4 each)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpts = make_checkpoint_pair(tmp)
        on, off = [], []
        for i in range(args.pairs):
            order = (True, False) if i % 2 == 0 else (False, True)
            for prefetch in order:
                cmd = ours_command(ckpts, tmp / f"run_{i}_{prefetch}", 5)
                wall = measure(cmd if prefetch else [*cmd, "--no_prefetch"])["process_wall_s"]
                (on if prefetch else off).append(wall)
    diffs = [b - a for a, b in zip(on, off)]
    for name, walls in (("with prefetch:   ", on), ("without prefetch:", off)):
        runs = ", ".join(f"{w:.2f}" for w in walls)
        print(f"{name} {runs} s  (median {statistics.median(walls):.2f} s)")
    print(
        f"saving: median of paired differences {statistics.median(diffs):+.2f} s "
        f"(range {min(diffs):+.2f} to {max(diffs):+.2f} s over {len(diffs)} pairs)"
    )


if __name__ == "__main__":
    main()
