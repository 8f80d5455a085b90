"""``manifest.json``: what is needed to trace and regenerate a run (command, options,
versions, seeds, checkpoint hashes, configs, timings), and whether the run is complete
(``status``, ``run_id``, ``files``: see :mod:`ddpm_lens.output.run_status`)."""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from ddpm_lens import __version__
from ddpm_lens.analysis.plan import Plan
from ddpm_lens.analysis.timings import Timings
from ddpm_lens.util.atomic import write_text


def git_revision() -> str | None:
    """The package checkout's git commit, or None when not installed from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def build_manifest(
    plan: Plan,
    *,
    argv: list[str],
    timings: Timings,
    run_id: str,
    status: str = "running",
    files: list[str] | None = None,
) -> dict:
    """The manifest; ``status`` "running" until the run's last file is written, then
    "complete" with ``files``, every file the run wrote (relative paths)."""
    import torch

    opts = plan.options
    return {
        "status": status,
        "run_id": run_id,
        "command": "ddpm-lens " + shlex.join(argv),
        "argv": list(argv),
        "version": __version__,
        "git_revision": git_revision(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": opts.seed,
        "device": str(plan.device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "models": [m.describe() for m in plan.models],
        "configs": {m.id: m.config.to_dict() for m in plan.models},
        "conditions": [{"name": c.name, "t": c.t} for c in plan.conditions],
        "timesteps": [c.t for c in plan.conditions if c.noisy],
        "layers": plan.layers,
        "num_samples": opts.num_samples,
        "stats_samples": opts.stats_samples,
        "num_channels": opts.num_channels,
        "grid_size": opts.grid_size,
        "norm": opts.norm,
        "threshold": opts.threshold,
        "match_channels": opts.match_channels,
        "options": opts.to_dict(),
        "timings_s": timings.as_dict(),
        **({"files": files} if files is not None else {}),
    }


def write_manifest(out: Path, manifest: dict) -> None:
    write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
