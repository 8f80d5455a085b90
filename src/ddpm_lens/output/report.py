"""The report of a visualizer run: summary tables, hypothesis verdicts, plots and ``index.html``.

Reads what ``ddpm-lens visualize`` wrote to OUT (``stats.json``, and when present
``cka.json`` and ``manifest.json``) and writes, all atomically::

    OUT/summary.csv, OUT/summary.json   per layer x condition x statistic: both models' mean
                                        over samples with 95 % intervals, the paired
                                        difference, sign agreement, Wilcoxon p
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
import math
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import jinja2

from ddpm_lens.analysis.summary import (
    CONFIDENCE,
    DEFAULT_STATS,
    EDGE_LAYERS,
    TEST_NAME,
    hypotheses,
    summarize,
)
from ddpm_lens.output import plots
from ddpm_lens.output.csv_table import csv_text
from ddpm_lens.output.run_status import check_finished, check_one_run
from ddpm_lens.util.atomic import write_text
from ddpm_lens.util.errors import UserError

SUMMARY_STATS = (*DEFAULT_STATS, "edge_energy", "autocorr")
PLOT_ORDER = ("sparsity", "edge_energy", "autocorr", "mean_abs", "mean", "std")  # hypotheses' stats first
FOCUS_LAYER = "encoder_level_2"  # the seed's layer for steps 2, 3 and 5 of its viewing order
MID_T = 500  # the seed's "mid-diffusion" timestep for step 3
PERCENT_STATS = plots.PERCENT_STATS
STAT_TITLES = {
    "sparsity": "Sparsity",
    "edge_energy": "Edge energy",
    "autocorr": "Spatial autocorrelation",
    "mean_abs": "Mean |x|",
    "mean": "Mean",
    "std": "Std",
}
STAT_DEFINITIONS = {
    "mean": "mean activation over all channels and positions of the layer",
    "std": "standard deviation (ddof=0) over all channels and positions",
    "mean_abs": "mean absolute activation",
    "sparsity": "share of activations with |x| below the threshold",
    "edge_energy": "mean squared forward-difference gradient of the shown maps after 2–98th percentile "
    "normalisation to [0, 1] (0 = flat, 2 = one-pixel checkerboard; higher = sharper edges)",
    "autocorr": "lag-1 spatial autocorrelation of the shown maps, mean of horizontal and vertical "
    "Pearson r (≈0 for white noise, near 1 for smooth structure; higher = more structured)",
}
VERDICT_CLASSES = {
    "supported": "ok",
    "not supported": "bad",
    "mixed": "warn",
    "not tested": "muted",
}
RUN_FILES = (
    "README.md",
    "manifest.json",
    "stats.json",
    "stats.csv",
    "cka.json",
    "cka.csv",
    "summary.json",
    "summary.csv",
    "hypotheses.json",
)
_INPUT_NAME = re.compile(r"input_(clean|noisy_t(\d+))\.png")


def build_report(
    out_dir: str | os.PathLike, *, a: str = "baseline", b: str = "curriculum"
) -> dict[str, Path]:
    """Write the summary, hypotheses, plots and ``index.html`` of the run in ``out_dir``.

    ``a`` and ``b`` are the model keys of stats.json's rows (differences are b - a).
    Returns {path relative to OUT: absolute Path} of every file written, ``index.html`` last.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise UserError(f"OUT {out} is not a folder: pass the --output_dir of ddpm-lens visualize")
    stats = _read_whole_run(out)
    cka = _read_optional(out / "cka.json", want_rows=True)
    manifest = _read_optional(out / "manifest.json", want_rows=False)
    rows = stats["rows"]
    paired = [r for r in rows if r.get("model") in (a, b)]
    present = [s for s in SUMMARY_STATS if paired and all(s in r for r in paired)]
    summary_rows = summarize(rows, stats=present, a=a, b=b)
    verdicts = hypotheses(rows, a=a, b=b)
    labels = _labels(stats)

    written: dict[str, Path] = {}
    written["summary.csv"] = _write(out / "summary.csv", csv_text([_clean(r) for r in summary_rows]))
    written["summary.json"] = _write(
        out / "summary.json",
        _json_text(
            {
                "a": a,
                "b": b,
                "labels": {a: labels.get(a, a), b: labels.get(b, b)},
                "statistics": present,
                "definitions": {s: STAT_DEFINITIONS[s] for s in present},
                "sparsity_threshold": stats.get("threshold"),
                "n_per_cell": sorted({r["n"] for r in summary_rows}),
                "confidence": CONFIDENCE,
                "interval": "Student-t interval of the mean over samples",
                "test": TEST_NAME,
                "rows": summary_rows,
            }
        ),
    )
    written["hypotheses.json"] = _write(
        out / "hypotheses.json",
        _json_text({"a": a, "b": b, "edge_layers": list(EDGE_LAYERS), "hypotheses": verdicts}),
    )
    plot_list = _write_plots(out, summary_rows, cka, labels=labels, a=a, b=b)
    written.update({p["file"]: out / p["file"] for p in plot_list})
    context = _page_context(
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
    )
    written["index.html"] = _write(out / "index.html", render_page(context))
    return written


def _read_whole_run(out: Path) -> dict:
    """stats.json of ``out`` once the folder holds one finished run and nothing of another."""
    manifest = check_finished(out)
    stats = read_stats(out)
    check_one_run(out, manifest, stats)
    return stats


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


def render_page(context: dict) -> str:
    """The report page from the package template, every value HTML-escaped."""
    source = (
        resources.files("ddpm_lens.output").joinpath("templates", "report.html").read_text(encoding="utf-8")
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["num"] = _num
    env.filters["url"] = _url
    return env.from_string(source).render(**context)


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


def _labels(stats: dict) -> dict[str, str]:
    """Model key -> display label (stats.json's parallel ``models`` / ``labels`` lists)."""
    models = stats.get("models") or []
    names = stats.get("labels") or []
    return {str(k): str(v) for k, v in zip(models, names)}


def _write(path: Path, text: str) -> Path:
    write_text(path, text)
    return path


def _clean(value):
    """``value`` with NaN / inf floats as None, so the JSON is strict and portable."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _json_text(data) -> str:
    return json.dumps(_clean(data), indent=1, allow_nan=False, ensure_ascii=False) + "\n"


def _write_plots(out: Path, summary_rows, cka, *, labels, a, b) -> list[dict]:
    """Draw the report's plots under OUT/plots; returns [{"file", "group", "title", "caption"}].

    Each plot costs about a second of matplotlib, so with several cores they are drawn in
    parallel worker processes (spawned: the parent may hold torch's thread pools).
    """
    made, jobs = [], []
    stats_present = list(dict.fromkeys(r["statistic"] for r in summary_rows))
    several_t = len({r.get("t") for r in summary_rows}) > 1 and all(
        r.get("t") is not None for r in summary_rows
    )
    for stat in sorted(stats_present, key=PLOT_ORDER.index):
        title = STAT_TITLES[stat]
        rel = f"plots/{stat}_by_layer.png"
        jobs.append(("stat_vs_layer", (summary_rows, out / rel), {"statistic": stat, "labels": labels}))
        made.append(
            {"file": rel, "group": stat, "title": f"{title} by layer", "caption": STAT_DEFINITIONS[stat]}
        )
        if several_t:
            rel = f"plots/{stat}_by_timestep.png"
            jobs.append(
                ("stat_vs_timestep", (summary_rows, out / rel), {"statistic": stat, "labels": labels})
            )
            made.append({"file": rel, "group": stat, "title": f"{title} by timestep", "caption": ""})
    if cka:
        pair = (labels.get(a, a), labels.get(b, b))
        jobs.append(("cka_heatmap", (cka, out / "plots/cka_heatmap.png"), {"pair": pair}))
        made.append({"file": "plots/cka_heatmap.png", "group": "cka", "title": "CKA by layer and condition"})
        if len({r.get("t") for r in cka}) > 1 and all(r.get("t") is not None for r in cka):
            jobs.append(("cka_vs_timestep", (cka, out / "plots/cka_by_timestep.png"), {"pair": pair}))
            made.append({"file": "plots/cka_by_timestep.png", "group": "cka", "title": "CKA by timestep"})
    workers = min(os.cpu_count() or 1, len(jobs))
    if workers < 2 or len(jobs) < 4:
        for job in jobs:
            _draw(*job)
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in [pool.submit(_draw, *job) for job in jobs]:
                future.result()
    return made


def _draw(name: str, args: tuple, kwargs: dict) -> None:
    getattr(plots, name)(*args, **kwargs)


def _page_context(
    out: Path, *, stats, manifest, cka, summary_rows, verdicts, plot_list, labels, a, b
) -> dict:
    label_a, label_b = labels.get(a, a), labels.get(b, b)
    conditions = _conditions(stats, stats["rows"])
    layers = list(dict.fromkeys([*(stats.get("layers") or []), *(r["layer"] for r in stats["rows"])]))
    gallery = _gallery(out, stats["rows"], conditions=conditions, layers=layers, labels=labels)
    ns = sorted({r["n"] for r in summary_rows})
    return {
        "label_a": label_a,
        "label_b": label_b,
        "a": a,
        "b": b,
        "manifest": manifest or {},
        "models": _models(manifest, stats, a=a, b=b),
        "run": _run_facts(stats, manifest),
        "files": [name for name in RUN_FILES if (out / name).is_file()],
        "n_text": _n_sentence(ns, stats),
        "p_floor": {n: 2.0 / 2**n for n in ns if 2.0 / 2**n >= 0.05},
        "hypotheses": [{**h, "css": VERDICT_CLASSES.get(h["verdict"], "muted")} for h in verdicts],
        "stat_plots": [p for p in plot_list if p["group"] != "cka"],
        "stat_groups": list(dict.fromkeys(p["group"] for p in plot_list if p["group"] != "cka")),
        "stat_titles": STAT_TITLES,
        "cka_plots": [p for p in plot_list if p["group"] == "cka"],
        "cka_rows": _cka_table(cka, stats["rows"], b=b) if cka else [],
        "definitions": STAT_DEFINITIONS,
        "threshold": stats.get("threshold"),
        "summary": [_summary_view(r) for r in summary_rows],
        "summary_stats": list(dict.fromkeys(r["statistic"] for r in summary_rows)),
        "summary_layers": list(dict.fromkeys(r["layer"] for r in summary_rows)),
        "summary_conditions": list(dict.fromkeys(r["condition"] for r in summary_rows)),
        "confidence_pct": round(100 * CONFIDENCE),
        "test_name": TEST_NAME,
        "gallery": gallery,
    }


def _conditions(stats: dict, rows) -> list[dict]:
    """[{"name", "t"}] ordered by t (clean = 0), from stats.json's list and the rows."""
    found = {}
    for c in stats.get("conditions") or []:
        if isinstance(c, dict) and "name" in c:
            found.setdefault(str(c["name"]), c.get("t"))
    for r in rows:
        found.setdefault(r["condition"], r.get("t"))
    names = list(found)
    ordered = sorted(names, key=lambda n: (found[n] is None, found[n] or 0, names.index(n)))
    return [{"name": n, "t": found[n]} for n in ordered]


def _models(manifest: dict | None, stats: dict, *, a: str, b: str) -> list[dict]:
    """The header's model rows: manifest entries (or stats.json's labels) with ``side`` "a"/"b"/""."""
    keys = [str(k) for k in stats.get("models") or []]
    entries = (manifest or {}).get("models")
    if not isinstance(entries, list):
        entries = [{"label": label} for label in stats.get("labels") or keys]
    sides = {a: "a", b: "b"}
    return [
        {**m, "side": sides.get(keys[i], "") if i < len(keys) else ""}
        for i, m in enumerate(entries)
        if isinstance(m, dict)
    ]


def _run_facts(stats: dict, manifest: dict | None) -> list[tuple[str, str]]:
    """(name, value) pairs of the run's settings for the header, as text."""
    m = manifest or {}
    facts = [
        ("timesteps", m.get("timesteps")),
        ("layers", m.get("layers") or stats.get("layers")),
        ("samples with figures", m.get("num_samples", stats.get("num_samples"))),
        ("samples in the statistics", m.get("stats_samples", stats.get("stats_samples"))),
        ("channels shown", m.get("num_channels", stats.get("num_channels"))),
        ("colour normalisation", m.get("norm")),
        ("channel matching", m.get("match_channels")),
        ("sparsity threshold |x| <", stats.get("threshold")),
        ("statistics over", stats.get("stats_over")),
        ("seed", m.get("seed")),
        ("device", m.get("device")),
        ("torch", m.get("torch")),
        ("ddpm-lens", m.get("version")),
        ("git revision", m.get("git_revision")),
        ("created", m.get("created")),
    ]
    return [(name, _text(value)) for name, value in facts if value is not None]


def _text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _n_sentence(ns: list[int], stats: dict) -> str:
    if not ns:
        return "no paired samples"
    n_text = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"
    figures = stats.get("num_samples")
    tail = f"; figures are drawn for the first {figures}" if figures is not None else ""
    return f"{n_text} paired samples per layer × condition cell{tail}"


def _summary_view(r: dict) -> dict:
    """A summary row with display strings (sparsity in %, differences in percentage points)."""
    pct = r["statistic"] in PERCENT_STATS
    scale = 100.0 if pct else 1.0

    def value(prefix):
        mean, low, high = (r[f"{prefix}_{k}"] * scale for k in ("mean", "ci_low", "ci_high"))
        unit = ("%" if prefix != "diff" else " pp") if pct else ""
        ci = "" if math.isnan(low) else f"[{_num(low)}, {_num(high)}]"
        return {"raw": mean, "text": f"{_num(mean)}{unit}", "ci": ci}

    return {**r, "view": {p: value(p) for p in ("a", "b", "diff")}}


def _cka_table(cka: list[dict], rows, *, b: str) -> list[dict]:
    """CKA rows plus, when channels were matched, b's mean matched correlation over samples."""
    matched: dict[tuple, list[float]] = {}
    for r in rows:
        if r.get("model") == b and isinstance(r.get("matched_corr"), (int, float)):
            matched.setdefault((r["layer"], r["condition"]), []).append(float(r["matched_corr"]))
    table = []
    for c in cka:
        corr = matched.get((c.get("layer"), c.get("condition")))
        table.append(
            {**c, "matched_corr": sum(corr) / len(corr) if corr else None, "n_matched": len(corr or [])}
        )
    return table


def _inside(out: Path, rel) -> str | None:
    """``rel`` if it names an existing file inside ``out`` (as a POSIX relative path), else None."""
    if not isinstance(rel, str) or not rel:
        return None
    path = (out / rel).resolve()
    if not path.is_file() or not path.is_relative_to(out.resolve()):
        return None
    return path.relative_to(out.resolve()).as_posix()


def _gallery(out: Path, rows, *, conditions: list[dict], layers: list[str], labels: dict) -> dict:
    """Everything the gallery shows: only figures and inputs that exist on disk.

    ``figures``: {sample: {condition: {layer: path}}}; ``inputs``: see :func:`_inputs`;
    ``clean`` / ``mid``: the conditions of the viewing order's steps 2 and 3 (or None);
    ``focus``: the initial sample / condition / layer; ``cells``: numbers for the viewer.
    """
    figures: dict[int, dict[str, dict[str, str]]] = {}
    for r in rows:
        rel = _inside(out, r.get("figure"))
        if rel is not None:
            figures.setdefault(r["sample"], {}).setdefault(r["condition"], {})[r["layer"]] = rel
    inputs = _inputs(out)
    samples = sorted(set(figures) | set(inputs))
    shown = [c for c in conditions if any(c["name"] in by_condition for by_condition in figures.values())]
    shown_layers = [
        layer
        for layer in layers
        if any(layer in by_layer for f in figures.values() for by_layer in f.values())
    ]
    clean = next((c for c in shown if c["t"] == 0), None)
    noisy = [c for c in shown if c is not clean]
    mid = next((c for c in noisy if c["t"] == MID_T), noisy[len(noisy) // 2] if noisy else None)
    focus_layer = FOCUS_LAYER if FOCUS_LAYER in shown_layers else None
    if focus_layer is None and shown_layers:
        focus_layer = shown_layers[len(shown_layers) // 2]
    focus_condition = mid or clean
    input_kinds = sorted({(i["t"], i["name"]) for found in inputs.values() for i in found})
    return {
        "samples": samples,
        "conditions": shown,
        "layers": shown_layers,
        "figures": figures,
        "inputs": inputs,
        "input_names": [name for _, name in input_kinds],
        "clean": clean,
        "mid": mid,
        "focus": {
            "sample": samples[0] if samples else None,
            "condition": focus_condition["name"] if focus_condition else None,
            "layer": focus_layer,
        },
        "cells": _cell_numbers(rows, figures, labels),
    }


def _inputs(out: Path) -> dict[int, list[dict]]:
    """sample -> its input images ``[{"file", "name", "t"}]``, clean (t = 0) first, then by t."""
    inputs = {}
    for sample_dir in out.glob("sample_*"):
        index = sample_dir.name.removeprefix("sample_")
        if not index.isdigit():
            continue
        found = []
        for f in sample_dir.glob("input_*.png"):
            m = _INPUT_NAME.fullmatch(f.name)
            if m:
                t = 0 if m.group(1) == "clean" else int(m.group(2))
                name = "clean" if m.group(1) == "clean" else f"noisy t={t}"
                found.append({"file": f"{sample_dir.name}/{f.name}", "name": name, "t": t})
        if found:
            inputs[int(index)] = sorted(found, key=lambda x: x["t"])
    return inputs


def _cell_numbers(rows, figures, labels: dict) -> dict[str, dict]:
    """For each figure, "sample|condition|layer" -> model label -> a few of its statistics."""
    keys = ("mean", "std", "sparsity", "edge_energy", "autocorr", "matched_corr")
    cells: dict[str, dict] = {}
    for r in rows:
        if r["layer"] in figures.get(r["sample"], {}).get(r["condition"], {}):
            numbers = {k: r[k] for k in keys if isinstance(r.get(k), (int, float))}
            key = f"{r['sample']}|{r['condition']}|{r['layer']}"
            cells.setdefault(key, {})[labels.get(str(r["model"]), str(r["model"]))] = _clean(numbers)
    return cells


def _num(value) -> str:
    """A number for people: 4 significant digits, "—" for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


def _url(rel: str) -> str:
    """A relative file path as a URL path (each segment percent-encoded)."""
    return quote(rel, safe="/")
