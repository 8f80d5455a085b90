"""Benchmark: wall time of `ddpm-lens demo` (the README's main command) from a cold process.

python benchmarks/demo_time.py        # about half a minute on 2 CPU cores
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo_output"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        tic = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ddpm_lens", "demo", "--output_dir", str(out), "--no_progress"],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - tic
        manifest = json.loads((out / "manifest.json").read_text())
        pngs = len(list(out.rglob("*.png")))
    split = ", ".join(f"{k} {v:.2f} s" for k, v in manifest["timings_s"].items())
    print(f"machine: {os.cpu_count()} CPU cores")
    print(
        f"ddpm-lens demo: {wall:.1f} s wall from process start ({pngs} PNGs incl. plots); visualizer split: "
        f"{split} (render/write summed over threads); the rest is start-up and the report"
    )


if __name__ == "__main__":
    main()
