"""What is needed to trace and regenerate a run: command, versions, seeds, inputs."""

from __future__ import annotations

import platform
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from ddpm_lens import __version__


def git_revision() -> str | None:
    """The package checkout's git commit, or None when not installed from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def build_manifest(plan, *, argv: list[str], norm: str, match_channels: bool, grid_size: int) -> dict:
    import torch

    return {
        "command": "ddpm-lens " + shlex.join(argv),
        "argv": list(argv),
        "version": __version__,
        "git_revision": git_revision(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": plan.seed,
        "device": str(plan.device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "models": [m.describe() for m in plan.models],
        "configs": {m.key: m.config.to_dict() for m in plan.models},
        "conditions": [{"name": c.name, "t": c.t} for c in plan.conditions],
        "timesteps": [c.t for c in plan.conditions if c.noisy],
        "layers": plan.layers,
        "num_samples": plan.num_samples,
        "stats_samples": plan.stats_samples,
        "num_channels": plan.num_channels,
        "grid_size": grid_size,
        "norm": norm,
        "threshold": plan.threshold,
        "match_channels": match_channels,
        "timings_s": plan.timings.as_dict(),
    }
