"""Benchmark: where a run's report time goes, and this revision's report against an earlier one's.

Runs ``ddpm-lens demo`` once (the shipped models: 140 figures, stats, the denoising loss) into a
temporary folder, then rebuilds that folder's report (``build_report``: summary, verdicts, plots,
index.html) ``--pairs`` times with this checkout's code and with ``--before``'s (extracted with
``git archive``), alternating, each in a fresh process as ``ddpm-lens report`` would run it.
Prints the figures' time of the run (render + write, summed over threads), each side's median
report time and its ratio to the figures' time, and the split of one report of this revision.

    python benchmarks/report_speed.py --before 7ff4331     # ~3 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMED = """
import sys, time
t = time.perf_counter()
from ddpm_lens.output.report import build_report
build_report(sys.argv[1])
print(time.perf_counter() - t)
"""


def report_seconds(src: Path, run: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", TIMED, str(run)], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="7ff4331", help="the git revision to compare with (default: 7ff4331)")
    p.add_argument("--pairs", type=int, default=3, help="reports of each revision, alternating (default: 3)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "before"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "src"], capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        run = tmp / "demo"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ddpm_lens",
                "demo",
                "--output_dir",
                str(run),
                "--no_progress",
                "--no_report",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        timings = json.loads((run / "manifest.json").read_text())["timings_s"]
        figures = timings["render"] + timings["write"]
        walls: dict[str, list[float]] = {"this": [], args.before: []}
        for i in range(args.pairs):
            order = ("this", args.before) if i % 2 == 0 else (args.before, "this")
            for side in order:
                src = ROOT / "src" if side == "this" else old / "src"
                walls[side].append(report_seconds(src, run))
    print(
        f"load average {os.getloadavg()[0]:.1f}; "
        f"figures (render + write, summed over threads): {figures:.1f} s"
    )
    for side, values in walls.items():
        med = statistics.median(values)
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"report, {side:>8}: median {med:.1f} s ({runs}) = {med / figures:.1f}x the figures' time")


if __name__ == "__main__":
    main()
