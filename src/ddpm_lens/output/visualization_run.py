"""A whole visualizer run on disk: plan, stream, figures, tables, manifest, README, report.

:func:`visualize` is what ``ddpm-lens visualize`` (and ``ddpm-lens demo``) run: the
output folder and the request are checked before any heavy work, every file is written
atomically, and nothing the run did not write is removed.
"""

from __future__ import annotations

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
from ddpm_lens.output.run_folder import check_output_dir
from ddpm_lens.output.run_readme import run_readme
from ddpm_lens.output.run_tables import add_figure_paths, write_cka, write_loss_by_t, write_stats
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
    timings = Timings()
    plan = build_plan(options, prefetch=prefetch if options.prefetch else None, timings=timings)
    writer = FigureWriter(out, plan, timings)
    try:
        result = run_stream(plan, timings=timings, sink=writer)
    finally:
        writer.close()
    loss = loss_by_t(plan, timings=timings)
    tic = time.perf_counter()
    add_figure_paths(result.rows, plan.options.num_samples)
    write_stats(out, plan, result.rows)
    write_cka(out, result.cka)
    if loss:
        write_loss_by_t(out, plan, loss)
    timings.add("write", time.perf_counter() - tic)
    manifest = build_manifest(plan, argv=argv, timings=timings)
    write_manifest(out, manifest)
    write_text(out / "README.md", run_readme(plan, result, writer.written, manifest))
    index = None
    if plan.options.report:
        from ddpm_lens.output.report import build_report

        index = build_report(out)["index.html"]
    return VisualizationRun(out, plan, result, writer.written, timings, index)
