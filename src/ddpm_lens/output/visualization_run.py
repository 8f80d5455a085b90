"""A whole visualizer run on disk: plan, stream, figures, tables, manifest, README, report.

:func:`visualize` is what ``ddpm-lens visualize`` (and ``ddpm-lens demo``) run: the
output folder and the request are checked before any heavy work, every file is written
atomically, and nothing the run did not write is removed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ddpm_lens.analysis.options import VisualizeOptions
from ddpm_lens.analysis.plan import Plan, build_plan
from ddpm_lens.analysis.prefetch import Prefetch
from ddpm_lens.analysis.stream import StreamResult, run_stream
from ddpm_lens.analysis.timings import Timings
from ddpm_lens.output.figure_writer import FigureWriter
from ddpm_lens.output.manifest import build_manifest, write_manifest
from ddpm_lens.output.run_folder import check_output_dir
from ddpm_lens.output.run_readme import run_readme
from ddpm_lens.output.run_tables import add_figure_paths, write_cka, write_stats
from ddpm_lens.util.atomic import write_text


@dataclass
class VisualizationRun:
    out: Path
    plan: Plan
    result: StreamResult
    figures: int
    timings: Timings
    report_index: Path | None


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
    writer = FigureWriter(out, plan, timings)
    try:
        result = run_stream(plan, timings=timings, sink=writer)
    finally:
        writer.close()
    tic = time.perf_counter()
    add_figure_paths(result.rows, plan.options.num_samples)
    write_stats(out, plan, result.rows)
    write_cka(out, result.cka)
    timings.add("write", time.perf_counter() - tic)
    manifest = build_manifest(plan, argv=argv, timings=timings)
    write_manifest(out, manifest)
    write_text(out / "README.md", run_readme(plan, result, writer.written, manifest))
    if plan.options.fid:
        _write_fid(out, plan)
    index = None
    if plan.options.report:
        from ddpm_lens.output.report import build_report

        index = build_report(out)["index.html"]
    return VisualizationRun(out, plan, result, writer.written, timings, index)


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
