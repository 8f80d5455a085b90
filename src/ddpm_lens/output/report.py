"""The report of a visualizer run: summary tables, hypothesis verdicts, plots and ``index.html``.

Reads what ``ddpm-lens visualize`` wrote to OUT (``stats.json``, and when present
``cka.json`` and ``manifest.json``) and writes, all atomically::

    OUT/summary.csv, OUT/summary.json   per layer x condition x statistic: both models' mean
                                        with 95 % intervals, the difference, effect size,
                                        p and Holm-adjusted p (the decision rule's tests)
    OUT/hypotheses.json                 the seed study's expectations H1-H4 with verdicts
    OUT/plots/*.png                     statistic vs layer / vs timestep, CKA heatmap and curves
    OUT/index.html                      one self-contained page (no server, no network)

Only the standard library, numpy/scipy (via :mod:`ddpm_lens.analysis.summary`), matplotlib and
Jinja2: no torch, and nothing here is imported by training code. Run it as
``ddpm-lens report OUT`` or::

    from ddpm_lens.output.report import build_report
    written = build_report("feature_visualizations")   # {"index.html": Path(...), ...}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ddpm_lens.analysis import decision_rule as rule
from ddpm_lens.analysis.hypotheses import EDGE_LAYERS, hypotheses
from ddpm_lens.analysis.stat_registry import BY_NAME, SUMMARIZED
from ddpm_lens.analysis.summary import (
    CONFIDENCE,
    TEST_NAME,
    inference_unit,
    sparsity_scale_correlation,
    summarize,
)
from ddpm_lens.output.csv_table import csv_text
from ddpm_lens.output.report_page import json_safe, page_context, render_page
from ddpm_lens.output.report_plots import plot_jobs, start_plots
from ddpm_lens.output.run_folder import REPORT_FILES, check_replaceable, owned_files
from ddpm_lens.output.run_status import check_finished, check_one_run, new_run_id
from ddpm_lens.util.atomic import write_text
from ddpm_lens.util.errors import UserError
from ddpm_lens.util.folder_lock import FolderLock

SUMMARY_STATS = SUMMARIZED  # the registry's summarised statistics, in its order


def build_report(
    out_dir: str | os.PathLike, *, a: str = "baseline", b: str = "curriculum", alpha: float | None = None
) -> dict[str, Path]:
    """Write the summary, hypotheses, plots and ``index.html`` of the run in ``out_dir``.

    ``a`` and ``b`` are the model keys of stats.json's rows (differences are b - a);
    ``alpha`` the decision rule's level (default: the run's ``--alpha``, else 0.05).
    Returns {path relative to OUT: absolute Path} of every file written, ``index.html`` last.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise UserError(f"OUT {out} is not a folder: pass the --output_dir of ddpm-lens visualize")
    with FolderLock(out, flag="OUT"):
        return _build(out, a=a, b=b, alpha=alpha)


def _build(out: Path, *, a: str, b: str, alpha: float | None) -> dict[str, Path]:
    stats = _read_whole_run(out)
    cka = _read_optional(out / "cka.json", want_rows=True)
    manifest = _read_optional(out / "manifest.json", want_rows=False)
    loss = _read_optional(out / "loss_by_t.json", want_rows=True)
    rows = stats["rows"]
    paired = [r for r in rows if r.get("model") in (a, b)]
    present = [s for s in SUMMARY_STATS if paired and all(s in r for r in paired)]
    alpha = _alpha(alpha, manifest)
    unit = inference_unit(rows, a, b)
    summary_rows = summarize(rows, stats=present, a=a, b=b)
    labels = _labels(stats)
    plot_list, plot_draws = plot_jobs(out, summary_rows, cka, labels=labels, a=a, b=b, loss=loss)
    files = [*REPORT_FILES, *(p["file"] for p in plot_list)]
    check_replaceable(out, files, owned_files(out), flag="OUT")
    # the plots (most of the report's time) are drawn by worker processes while the verdicts,
    # tables and page are computed here
    plots = start_plots(plot_list, plot_draws)
    try:
        return _write_report(
            out, plots, stats=stats, cka=cka, manifest=manifest, loss=loss, rows=rows, present=present,
            alpha=alpha, unit=unit, summary_rows=summary_rows, labels=labels, a=a, b=b, files=files,
        )  # fmt: skip
    finally:
        plots.wait()


def _write_report(
    out, plots, *, stats, cka, manifest, loss, rows, present, alpha, unit, summary_rows, labels, a, b, files
) -> dict[str, Path]:
    verdicts = hypotheses(rows, a=a, b=b, alpha=alpha)

    written: dict[str, Path] = {}
    written["summary.csv"] = _write(out / "summary.csv", csv_text([json_safe(r) for r in summary_rows]))
    written["summary.json"] = _write(
        out / "summary.json",
        _json_text(
            {
                "a": a,
                "b": b,
                "labels": {a: labels.get(a, a), b: labels.get(b, b)},
                "statistics": present,
                "definitions": {s: BY_NAME[s].definition for s in present},
                "sparsity_threshold": stats.get("threshold"),
                "n_per_cell": sorted({r["n"] for r in summary_rows}),
                "unit": unit,
                "confidence": CONFIDENCE,
                "interval": "Student-t interval of the mean over the units (samples or checkpoint means)",
                "test": TEST_NAME if unit["unit"] == "sample" else rule.UNPAIRED_TEST,
                "p_adjusted": "Holm across the layer × condition cells of each statistic",
                "effect_size": "paired d_z (samples) or Cohen's d with the pooled sd (checkpoints)",
                "decision_rule": rule.rule_text(alpha),
                "sparsity_vs_inverse_std": sparsity_scale_correlation(rows),
                "rows": summary_rows,
                "run_id": (manifest or {}).get("run_id") or new_run_id(),
                "files": files,  # what this report wrote: a rerun may replace or remove them
            }
        ),
    )
    written["hypotheses.json"] = _write(
        out / "hypotheses.json",
        _json_text(
            {
                "a": a,
                "b": b,
                "edge_layers": list(EDGE_LAYERS),
                "alpha": alpha,
                "unit": unit,
                "decision_rule": rule.rule_text(alpha),
                "hypotheses": verdicts,
            }
        ),
    )
    plot_list = plots.wait()
    written.update({p["file"]: out / p["file"] for p in plot_list})
    context = page_context(
        out,
        stats=stats,
        manifest=manifest,
        cka=cka,
        summary_rows=summary_rows,
        verdicts=verdicts,
        plot_list=plot_list,
        labels=labels,
        a=a,
        b=b,
        loss=loss,
        alpha=alpha,
        unit=unit,
    )
    context["fid"] = _sample_quality(out, manifest)
    page = render_page(context)
    plots.wait()  # the page names the plots: write it once they exist
    written["index.html"] = _write(out / "index.html", page)
    return written


def _read_whole_run(out: Path) -> dict:
    """stats.json of ``out`` once the folder holds one finished run and nothing of another."""
    manifest = check_finished(out)
    stats = read_stats(out)
    check_one_run(out, manifest, stats)
    return stats


def _sample_quality(out: Path, manifest: dict | None) -> dict | None:
    """``fid.json`` (``visualize --fid N``) when it scores this run's two checkpoints, else None."""
    fid = _read_optional(out / "fid.json", want_rows=False)
    models = (manifest or {}).get("models") or []
    if not fid or not isinstance(fid.get("models"), list):
        return None
    ours = {m.get("key"): m.get("sha256") for m in models if isinstance(m, dict)}
    theirs = fid.get("checkpoints_sha256") or {}
    return fid if not ours or ours == theirs else None  # a stale file from another pair is not shown


def read_stats(out: Path) -> dict:
    """stats.json of ``out``, checked for the keys the report needs; UserError otherwise."""
    path = out / "stats.json"
    hint = "run ddpm-lens visualize first"
    if not path.is_file():
        raise UserError(f"OUT has no stats.json ({path}): {hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"OUT has no stats.json: {path} is unreadable ({exc}); {hint}") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    required = ("sample", "condition", "layer", "model")
    if not isinstance(rows, list) or not rows:
        raise UserError(f"OUT has no stats.json: {path} has no 'rows' list; {hint}")
    bad = next((r for r in rows if not isinstance(r, dict) or any(k not in r for k in required)), None)
    if bad is not None:
        raise UserError(f"OUT has no stats.json: a row of {path} lacks one of {list(required)}; {hint}")
    return data


def _read_optional(path: Path, *, want_rows: bool):
    """A JSON file the visualizer may not have written: None when absent, UserError if broken."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is unreadable ({exc}): delete it or run ddpm-lens visualize again") from None
    if not isinstance(data, dict) or (want_rows and not isinstance(data.get("rows"), list)):
        raise UserError(f"{path} is not what ddpm-lens visualize writes: delete it or run visualize again")
    return data["rows"] if want_rows else data


def _alpha(alpha: float | None, manifest: dict | None) -> float:
    """The decision rule's level: given, else the run's --alpha, else the default."""
    if alpha is None:
        alpha = ((manifest or {}).get("options") or {}).get("alpha", rule.ALPHA)
    if not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise UserError(f"alpha must be between 0 and 1, got {alpha!r}")
    return float(alpha)


def _labels(stats: dict) -> dict[str, str]:
    """Model key -> display label (stats.json's parallel ``models`` / ``labels`` lists)."""
    models = stats.get("models") or []
    names = stats.get("labels") or []
    return {str(k): str(v) for k, v in zip(models, names)}


def _write(path: Path, text: str) -> Path:
    write_text(path, text)
    return path


def _json_text(data) -> str:
    return json.dumps(json_safe(data), indent=1, allow_nan=False, ensure_ascii=False) + "\n"
