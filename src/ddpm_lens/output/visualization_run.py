"""A whole visualizer run on disk: plan, stream, figures, tables, manifest, README, report.

:func:`visualize` is what ``ddpm-lens visualize`` (and ``ddpm-lens demo``) run: the
output folder and the request are checked before any heavy work, every file is written
atomically, and the folder always says whether it holds a whole run
(:mod:`ddpm_lens.output.run_status`). One run at a time holds the folder (a lock naming its
pid). The run is written whole into ``OUT/.ddpm-lens-run-<id>`` and then swapped in
(:func:`ddpm_lens.output.run_folder.swap_in`): files of the earlier run that it does not
rewrite are removed, and nothing that no ddpm-lens run wrote is replaced or removed (a run
that would have to is refused before it starts). A full disk (or a folder that turns
read-only) is a one-line error naming the path and the space needed; the run's files are
taken back and the earlier run stays as it was.
"""

from __future__ import annotations

import errno
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
from ddpm_lens.output.run_folder import (
    REPORT_FILES,
    check_output_dir,
    check_replaceable,
    figure_path,
    missing_dirs,
    owned_files,
    remove_dirs,
    remove_stale_stages,
    stage_dir,
    swap_in,
)
from ddpm_lens.output.run_readme import run_readme
from ddpm_lens.output.run_status import new_run_id
from ddpm_lens.output.run_tables import add_figure_paths, write_cka, write_loss_by_t, write_stats
from ddpm_lens.util.atomic import DISK_FULL, mb, write_text
from ddpm_lens.util.errors import UserError
from ddpm_lens.util.folder_lock import FolderLock

TABLES = ("stats.csv", "stats.json", "cka.csv", "cka.json", "README.md")
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
    report_s: float = 0.0  # wall time of build_report (summary, verdicts, plots, page)
    report_s: float = 0.0  # wall time of build_report (summary, verdicts, plots, page)


def visualize(
    options: VisualizeOptions, *, argv: list[str], prefetch: Prefetch | None = None
) -> VisualizationRun:
    """Run the visualizer as ``options`` say and write its tree to ``options.output_dir``."""
    created = missing_dirs(Path(options.output_dir))
    out = check_output_dir(options.output_dir)
    try:
        with FolderLock(out, flag="--output_dir"):
            return _locked_run(out, options, argv=argv, prefetch=prefetch)
    except BaseException:
        remove_dirs(created)  # the folders this run made, when it leaves them empty
        raise


def _locked_run(
    out: Path, options: VisualizeOptions, *, argv: list[str], prefetch: Prefetch | None
) -> VisualizationRun:
    if options.fid:
        from ddpm_lens.analysis.inception_features import weights_path

        weights_path()  # a missing feature network is reported before any work
    owned = owned_files(out)
    check_replaceable(out, _table_files(options), owned, flag="--output_dir")  # before the models load
    timings = Timings()
    plan = build_plan(options, prefetch=prefetch if options.prefetch else None, timings=timings)
    remove_stale_stages(out)
    check_replaceable(out, _figure_files(plan), owned, flag="--output_dir")
    run_id = new_run_id()
    stage = stage_dir(out, run_id)
    try:
        files, result, figures, report_s = _write_run(stage, plan, argv=argv, timings=timings, run_id=run_id)
        swap_in(out, stage, files)
    except Exception as exc:
        message = _write_error(out, plan, stage, exc) if _is_write_error(exc) else None
        shutil.rmtree(stage, ignore_errors=True)
        if message is None:
            raise
        raise UserError(message) from None
    index = out / "index.html" if options.report else None
    return VisualizationRun(out, plan, result, figures, timings, index, run_id, report_s)


def _write_run(
    stage: Path, plan: Plan, *, argv: list[str], timings: Timings, run_id: str
) -> tuple[list[str], StreamResult, int, float]:
    """The whole run in ``stage``: its files (manifest.json last, not listed), result, figures and
    the report's wall time."""
    stage.mkdir()
    write_manifest(stage, build_manifest(plan, argv=argv, timings=timings, run_id=run_id))
    writer = FigureWriter(stage, plan, timings, run_id=run_id)
    try:
        result = run_stream(plan, timings=timings, sink=writer)
    finally:
        writer.close()
    loss = loss_by_t(plan, timings=timings)
    tic = time.perf_counter()
    add_figure_paths(result.rows, plan.options.num_samples)
    write_stats(stage, plan, result.rows, run_id=run_id)
    write_cka(stage, result.cka, run_id=run_id)
    if loss:
        write_loss_by_t(stage, plan, loss)
    timings.add("write", time.perf_counter() - tic)
    manifest = build_manifest(plan, argv=argv, timings=timings, run_id=run_id)
    write_text(stage / "README.md", run_readme(plan, result, writer.written, manifest))
    if plan.options.fid:
        _write_fid(stage, plan)
    extra = (["fid.json"] if plan.options.fid else []) + (["loss_by_t.csv", "loss_by_t.json"] if loss else [])
    files = sorted(writer.paths) + list(TABLES) + extra
    manifest = build_manifest(plan, argv=argv, timings=timings, run_id=run_id, status="complete", files=files)
    write_manifest(stage, manifest)
    report_s = 0.0
    if plan.options.report:
        from ddpm_lens.output.report import build_report

        tic = time.perf_counter()
        files += [rel for rel in build_report(stage) if rel not in files]
        report_s = time.perf_counter() - tic
    return files, result, writer.written, report_s


def _table_files(opts: VisualizeOptions) -> list[str]:
    """The run's files other than figures (and the report's plots, named as it draws them)."""
    return [
        "manifest.json",
        *TABLES,
        *(["fid.json"] if opts.fid else []),
        *(REPORT_FILES if opts.report else ()),
    ]


def _figure_files(plan: Plan) -> list[str]:
    files = []
    for g in range(plan.options.num_samples):
        files.append(f"sample_{g}/input_clean.png")
        for cond in plan.conditions:
            if cond.noisy:
                files.append(f"sample_{g}/input_noisy_t{cond.t}.png")
            files += [figure_path(g, cond.name, layer) for layer in plan.layers]
    return files


def _expected_files(plan: Plan) -> int:
    conditions = plan.conditions
    per_sample = 1 + sum(c.noisy for c in conditions) + len(conditions) * len(plan.layers)
    return plan.options.num_samples * per_sample + len(TABLES) + 1


def _is_write_error(exc: Exception) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL + _NOT_WRITABLE


def _write_error(out: Path, plan: Plan, stage: Path, exc: OSError) -> str:
    """The one line for a write that failed: which path, and for a full disk how much space."""
    written = {p: p.stat().st_size for p in stage.rglob("*") if p.is_file()} if stage.is_dir() else {}
    size = sum(written.values())
    where = Path(exc.filename) if exc.filename else out
    if where.is_relative_to(stage):  # name the file as the user will find it
        where = out / where.relative_to(stage)
    taken_back = f"removed the {len(written)} files this run wrote; the folder is as it was before"
    if exc.errno in DISK_FULL:
        needed = size * _expected_files(plan) / max(len(written), 1)
        return (
            f"no space left on the device while writing {where}: this run needs about {mb(needed)} "
            f"({mb(size)} in {len(written)} files written before the disk filled, "
            f"{mb(shutil.disk_usage(out).free)} free now); free some space or pass an --output_dir "
            f"on another disk ({taken_back})"
        )
    return f"cannot write {where}: {exc.strerror}; pass an --output_dir you can write to ({taken_back})"


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
