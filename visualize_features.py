#!/usr/bin/env python3
"""The study's script name, kept so its documented command runs unchanged.

    python visualize_features.py --baseline_ckpt ... --curriculum_ckpt ... [flags]

is ``ddpm-lens visualize`` with the same flags (see ``--help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # also works from a plain checkout

from ddpm_lens.cli import run_and_exit  # noqa: E402

if __name__ == "__main__":
    run_and_exit(["visualize", *sys.argv[1:]])
