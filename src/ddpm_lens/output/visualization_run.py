"""A whole visualizer run on disk: plan, stream, figures, tables, manifest, README, report.

:func:`visualize` is what ``ddpm-lens visualize`` (and ``ddpm-lens demo``) run: the
output folder and the request are checked before any heavy work, every file is written
atomically, and the folder always says whether it holds a whole run
(:mod:`ddpm_lens.output.run_status`): ``manifest.json`` first with ``"status": "running"``,
last with ``"complete"``. Figures of an earlier run in the folder that this run does not
redraw are removed once its own are written; nothing else the run did not write is touched.
A full disk (or a folder that turns read-only) is a one-line error naming the path and the
space needed, and the run's files are taken back.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ddpm_lens.analysis.denoising_loss import loss_by_t
from ddpm_lens.analysis.options import VisualizeOptions
from ddpm_lens.analysis.plan import Plan, build_plan
from ddpm_lens.analysis.prefetch import Prefetch
from ddpm_lens.analysis.stream import StreamResult, run_stream
from ddpm_lens.analysis.timings import Timings
from ddpm_lens.output.figure_writer import FigureWriter
from ddpm_lens.output.manifest import build_manifest, write_manifest
from ddpm_lens.output.run_folder import Snapshot, check_output_dir, figure_files
from ddpm_lens.output.run_readme import run_readme
from ddpm_lens.output.run_status import new_run_id
from ddpm_lens.output.run_tables import add_figure_paths, write_cka, write_loss_by_t, write_stats
from ddpm_lens.util.atomic import DISK_FULL, mb, write_text
from ddpm_lens.util.errors import UserError

TABLES = ("stats.csv", "stats.json", "cka.csv", "cka.json", "README.md")
REPORT_FILES = ("summary.csv", "summary.json", "hypotheses.json", "index.html")
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


@dataclass
class VisualizationRun:
    out: Path
    plan: Plan
    result: StreamResult
    figures: int
    timings: Timings
    report_index: Path | None
    run_id: str


def visualize(
    options: VisualizeOptions, *, argv: list[str], prefetch: Prefetch | None = None
) -> VisualizationRun:
    """Run the visualizer as ``options`` say and write its tree to ``options.output_dir``."""
    out = check_output_dir(options.output_dir)
    if options.fid:
        from ddpm_lens.analysis.inception_features import weights_path

        weights_path()  # a missing feature network is reported before any work
    timings = Timings()
    plan = build_plan(options, prefetch=prefetch if options.prefetch else None, timings=timings)
    run_id = new_run_id()
    before = Snapshot.take(out)
    try:
        return _write_run(out, plan, argv=argv, timings=timings, run_id=run_id)
    except UserError as exc:  # e.g. NaN activations, found in the first chunk
        _take_back(out, before, run_id, str(exc))
        raise
    except OSError as exc:
        if exc.errno not in DISK_FULL + _NOT_WRITABLE:
            raise
        message = _write_error(out, plan, before, exc)
        _take_back(out, before, run_id, message)
        raise UserError(message) from None


def _write_run(out: Path, plan: Plan, *, argv: list[str], timings: Timings, run_id: str) -> VisualizationRun:
    write_manifest(out, build_manifest(plan, argv=argv, timings=timings, run_id=run_id))
    writer = FigureWriter(out, plan, timings, run_id=run_id)
    try:
        result = run_stream(plan, timings=timings, sink=writer)
    finally:
        writer.close()
    loss = loss_by_t(plan, timings=timings)
    tic = time.perf_counter()
    add_figure_paths(result.rows, plan.options.num_samples)
    write_stats(out, plan, result.rows, run_id=run_id)
    write_cka(out, result.cka, run_id=run_id)
    if loss:
        write_loss_by_t(out, plan, loss)
    timings.add("write", time.perf_counter() - tic)
    manifest = build_manifest(plan, argv=argv, timings=timings, run_id=run_id)
    write_text(out / "README.md", run_readme(plan, result, writer.written, manifest))
    if plan.options.fid:
        _write_fid(out, plan)
    _remove_earlier_figures(out, keep=set(writer.paths), report=plan.options.report)
    extra = (["fid.json"] if plan.options.fid else []) + (["loss_by_t.csv", "loss_by_t.json"] if loss else [])
    files = sorted(writer.paths) + list(TABLES) + extra
    manifest = build_manifest(plan, argv=argv, timings=timings, run_id=run_id, status="complete", files=files)
    write_manifest(out, manifest)
    index = None
    if plan.options.report:
        from ddpm_lens.output.report import build_report

        index = build_report(out)["index.html"]
    return VisualizationRun(out, plan, result, writer.written, timings, index, run_id)


def _remove_earlier_figures(out: Path, *, keep: set[str], report: bool) -> None:
    """Figures of an earlier run that this one did not redraw (more samples, other layers),
    and, when this run writes no report, the earlier run's report: both would describe
    other data beside this run's."""
    stale = [rel for rel in figure_files(out) if rel not in keep]
    if not report:
        stale += [name for name in REPORT_FILES if (out / name).is_file()]
        stale += [p.relative_to(out).as_posix() for p in out.glob("plots/*.png")]
    for rel in stale:
        (out / rel).unlink(missing_ok=True)
    for folder in sorted({Path(rel).parent for rel in stale}, key=lambda p: len(p.parts), reverse=True):
        if folder != Path(".") and not any((out / folder).iterdir()):
            (out / folder).rmdir()


def _expected_files(plan: Plan) -> int:
    conditions = plan.conditions
    per_sample = 1 + sum(c.noisy for c in conditions) + len(conditions) * len(plan.layers)
    return plan.options.num_samples * per_sample + len(TABLES) + 1


def _write_error(out: Path, plan: Plan, before: Snapshot, exc: OSError) -> str:
    """The one line for a write that failed: which path, and for a full disk how much space."""
    written = before.written()
    size = sum(written.values())
    where = exc.filename or out
    taken_back = f"removed the {len(written)} files this run wrote"
    if exc.errno in DISK_FULL:
        needed = size * _expected_files(plan) / max(len(written), 1)
        return (
            f"no space left on the device while writing {where}: this run needs about {mb(needed)} "
            f"({mb(size)} in {len(written)} files written before the disk filled, "
            f"{mb(shutil.disk_usage(out).free)} free now); free some space or pass an --output_dir "
            f"on another disk ({taken_back})"
        )
    return f"cannot write {where}: {exc.strerror}; pass an --output_dir you can write to ({taken_back})"


def _take_back(out: Path, before: Snapshot, run_id: str, message: str) -> None:
    """Remove what this run wrote. If the folder held files before (an earlier run, whose
    manifest this run replaced), a manifest with ``"status": "failed"`` stays, so that the
    folder says it no longer holds a whole run."""
    before.remove_written()
    if before.files:
        failed = {"status": "failed", "run_id": run_id, "error": message}
        with contextlib.suppress(OSError):  # the disk is still full: no manifest at all then
            write_text(out / "manifest.json", json.dumps(failed, indent=2) + "\n")


def _write_fid(out: Path, plan: Plan) -> None:
    """``fid.json``: both models' FID / KID against the same reference (``--fid N``)."""
    import json

    from ddpm_lens.analysis.inception_features import InceptionFeatures
    from ddpm_lens.analysis.pair_sample_quality import score_pair_models
    from ddpm_lens.analysis.reference_cache import default_cache_dir

    network = InceptionFeatures(plan.device)
    scores = score_pair_models(
        plan, plan.options.fid, network=network, cache_dir=default_cache_dir(), progress=plan.options.progress
    )
    scores["checkpoints_sha256"] = {m.key: m.sha256 for m in plan.models}  # what the report checks
    write_text(out / "fid.json", json.dumps(scores, indent=1, allow_nan=False) + "\n")
