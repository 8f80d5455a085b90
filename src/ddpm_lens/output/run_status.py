"""Whether a run folder holds one whole visualizer run, and nothing of another.

The visualizer writes ``manifest.json`` first, with ``"status": "running"`` and a fresh
``run_id``, and rewrites it last with ``"status": "complete"`` and the ``files`` it wrote.
``stats.json``, ``cka.json`` and every figure (a PNG ``tEXt`` chunk, :data:`RUN_ID_KEY`)
carry the same id. The run is written beside the earlier one and moved in whole
(:func:`ddpm_lens.output.run_folder.swap_in`, which says ``"running"`` while it moves), so a run
killed half-way leaves a manifest that says so, and figures or tables of another run in the
same folder are told apart by their id.
``ddpm-lens report`` asks :func:`check_finished` and :func:`check_one_run` before it reads one.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from ddpm_lens.output.png import read_png_text
from ddpm_lens.output.run_folder import RUN_ID_KEY, figure_files
from ddpm_lens.util.errors import UserError

__all__ = ["RUN_ID_KEY", "check_finished", "check_one_run", "new_run_id"]
_RERUN = "rerun ddpm-lens visualize into this folder"


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def check_finished(out: Path) -> dict | None:
    """The manifest of ``out`` (None without one) once it says the run finished; else a
    UserError naming the run and its status. A manifest without ``status`` (a run of
    ddpm-lens 0.1) or none at all (hand-made tables) is taken as it is."""
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # absent or unreadable: the report says what it can without it
    if not isinstance(manifest, dict) or "status" not in manifest:
        return None
    if manifest["status"] != "complete":
        why = f": {manifest['error']}" if manifest.get("error") else ""
        raise UserError(
            f"{out} holds an incomplete run (run {manifest.get('run_id')}, status '{manifest['status']}'"
            f"{why}): it was interrupted, failed or is still running; {_RERUN}"
        )
    return manifest


def check_one_run(out: Path, manifest: dict | None, stats: dict) -> None:
    """A UserError unless every file the finished run lists is there and ``stats``, cka.json
    and every figure in ``out`` carry the manifest's run id (names what is missing or mixed)."""
    if manifest is None:
        return
    run, listed = manifest.get("run_id"), list(manifest.get("files") or [])
    missing = [rel for rel in listed if not (out / rel).is_file()]
    if missing:
        raise UserError(
            f"run {run} in {out} is missing {len(missing)} of its {len(listed)} files, e.g. {missing[0]}; "
            f"{_RERUN}"
        )
    others = [] if stats.get("run_id") == run else [f"stats.json (run {stats.get('run_id')})"]
    try:
        cka_run = json.loads((out / "cka.json").read_text(encoding="utf-8")).get("run_id")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        cka_run = run  # absent or broken: the report reads it and says so
    if cka_run != run:
        others.append(f"cka.json (run {cka_run})")
    for rel in figure_files(out):
        other = read_png_text(out / rel).get(RUN_ID_KEY)
        if other != run:
            others.append(f"{rel} (run {other})")
    if others:
        raise UserError(
            f"{out} mixes runs: manifest.json is run {run} but {others[0]} and {len(others) - 1} more "
            f"files belong to another; {_RERUN}, or into an empty one"
        )
