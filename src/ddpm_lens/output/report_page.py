"""The report page: ``index.html``'s context (header facts, hypothesis and summary tables,
CKA, the gallery in the seed's viewing order) rendered through the package template."""

from __future__ import annotations

import math
import re
import shlex
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from ddpm_lens import __version__
from ddpm_lens.analysis import decision_rule as rule
from ddpm_lens.analysis.image_cka import MAIN_PAIR
from ddpm_lens.analysis.stat_registry import PERCENT, STATISTICS
from ddpm_lens.analysis.summary import CONFIDENCE, TEST_NAME, sparsity_scale_correlation

FOCUS_LAYER = "encoder_level_2"  # the seed's layer for steps 2, 3 and 5 of its viewing order
MID_T = 500  # the seed's "mid-diffusion" timestep for step 3
VERDICT_CLASSES = {
    "supported": "ok",
    "contradicted": "bad",
    rule.PARTLY: "warn",
    "inconclusive": "muted",
    "not tested": "muted",
}
RUN_FILES = (
    "README.md",
    "manifest.json",
    "stats.json",
    "stats.csv",
    "cka.json",
    "cka.csv",
    "loss_by_t.json",
    "loss_by_t.csv",
    "summary.json",
    "summary.csv",
    "hypotheses.json",
)
_INPUT_NAME = re.compile(r"input_(clean|noisy_t(\d+))\.png")


def render_page(context: dict) -> str:
    """The report page from the package template, every value HTML-escaped."""
    return render_template("report.html", context)


def render_template(name: str, context: dict, *, safe: tuple[str, ...] = ()) -> str:
    """The package template ``templates/<name>`` (which may extend ``_page.html``, the shared
    frame) rendered with ``context``, every value
    HTML-escaped except the keys in ``safe`` (the package's own CSS), with the pages' ``num`` and
    ``url`` filters; an undefined name is an error, not an empty string."""
    templates = resources.files("ddpm_lens.output").joinpath("templates")
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda n: templates.joinpath(n).read_text(encoding="utf-8")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["num"] = _num
    env.filters["url"] = _url
    return env.get_template(name).render(**{**context, **{k: Markup(context[k]) for k in safe}})


def page_context(
    out: Path,
    *,
    stats,
    manifest,
    cka,
    summary_rows,
    verdicts,
    plot_list,
    labels,
    a,
    b,
    loss=None,
    alpha=rule.ALPHA,
    unit=None,
) -> dict:
    label_a, label_b = labels.get(a, a), labels.get(b, b)
    unit = unit or {"unit": "sample", "checkpoints": {a: 1, b: 1}}
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
        "n_text": _n_sentence(ns, stats, unit),
        "unit": unit,
        "unit_note": _unit_note(unit, stats, label_a, label_b, a, b),
        "alpha": alpha,
        "rule": rule.rule_text(alpha),
        "p_floor": _p_floor(verdicts, alpha) if unit["unit"] == "sample" else None,
        "scale": sparsity_scale_correlation(stats["rows"]),
        "hypotheses": [{**h, "css": VERDICT_CLASSES.get(h["verdict"], "muted")} for h in verdicts],
        "loss_plots": [p for p in plot_list if p["group"] == "loss"],
        "loss_rows": loss or [],
        "stat_plots": [p for p in plot_list if p["group"] not in ("cka", "loss")],
        "stat_groups": list(
            dict.fromkeys(p["group"] for p in plot_list if p["group"] not in ("cka", "loss"))
        ),
        "stat_titles": {s.name: s.title for s in STATISTICS},
        "cka_plots": [p for p in plot_list if p["group"] == "cka"],
        "cka_rows": _cka_table([r for r in cka if r.get("pair", MAIN_PAIR) == MAIN_PAIR], stats["rows"], b=b)
        if cka
        else [],
        "cka_reference": _cka_references(cka or []),
        "definitions": {s.name: s.definition for s in STATISTICS},
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


def _n_sentence(ns: list[int], stats: dict, unit: dict) -> str:
    if not ns:
        return "no paired samples"
    n_text = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"
    figures = stats.get("num_samples")
    tail = f"; figures are drawn for the first {figures} samples" if figures is not None else ""
    if unit["unit"] == "checkpoint":
        k = unit["checkpoints"]
        per = "/".join(str(v) for v in k.values())
        return f"{n_text} checkpoints ({per} per arm) per layer × condition cell{tail}"
    return f"{n_text} paired samples per layer × condition cell{tail}"


def _unit_note(unit: dict, stats: dict, label_a: str, label_b: str, a: str, b: str) -> str:
    """What the verdicts are about: these two networks, or the training recipes."""
    samples = stats.get("stats_samples")
    if unit["unit"] == "checkpoint":
        k = unit["checkpoints"]
        return (
            f"The unit of inference is the checkpoint: {k[a]} {label_a} and {k[b]} {label_b} training runs, "
            f"each summarised by its mean over the same {samples} images, compared with Welch's test. "
            "The verdicts are about the two training recipes, as far as these runs sample them."
        )
    return (
        f"One checkpoint per arm: the unit of inference is the input image ({samples} images). These "
        f"verdicts describe these two networks on these inputs, not curriculum training in general: "
        "another seed of either recipe may differ as much. Pass several checkpoints per arm "
        "(--baseline_ckpt A1 A2 … --curriculum_ckpt B1 B2 …) to test the recipes."
    )


def _p_floor(verdicts, alpha: float) -> str | None:
    """When the sample size alone rules out significance: the lowest p the exact test allows,
    the level Holm asks of it, and the least --stats_samples that could pass."""
    tested = [h for h in verdicts if h["details"] and h["statistic"] and not _is_share(h)]
    if not tested:
        return None
    n = min(c.get("n_nonzero", c["n"]) for h in tested for c in h["details"])
    cells = sorted({len(h["details"]) for h in tested})
    floor = rule.smallest_p(n)
    if floor * cells[0] < alpha:
        return None
    span = f"{cells[0]}" if len(cells) == 1 else f"{cells[0]}–{cells[-1]}"
    text = (
        f"With n = {n} non-zero differences the exact test cannot give p below {floor:.3g}, and Holm over "
        f"{span} cells asks for p < α / cells: no cell can be significant, whatever the data. "
        f"--stats_samples {rule.samples_needed(cells[-1], alpha)} is the least that could change that"
    )
    shares = [h for h in verdicts if h["details"] and _is_share(h)]
    if shares:
        need = rule.samples_needed(len(shares[0]["details"]), alpha, floor=rule.smallest_share_p)
        text += f" ({shares[0]['id']}, which tests a share against {rule.CONSISTENCY_SHARE:g}: {need})"
    return text + "."


def _is_share(h: dict) -> bool:
    return bool(h["details"]) and "agree_share" in h["details"][0]


def _summary_view(r: dict) -> dict:
    """A summary row with display strings (sparsity in %, differences in percentage points)."""
    pct = r["statistic"] in PERCENT
    scale = 100.0 if pct else 1.0

    def value(prefix):
        mean, low, high = (r[f"{prefix}_{k}"] * scale for k in ("mean", "ci_low", "ci_high"))
        unit = ("%" if prefix != "diff" else " pp") if pct else ""
        ci = "" if math.isnan(low) else f"[{_num(low)}, {_num(high)}]"
        return {"raw": mean, "text": f"{_num(mean)}{unit}", "ci": ci}

    return {**r, "view": {p: value(p) for p in ("a", "b", "diff")}}


def _cka_references(cka: list[dict]) -> list[dict]:
    """Same-recipe rows (an arm's first vs second checkpoint) beside the pair's, per layer x condition."""
    main = {(r["layer"], r["condition"]): r for r in cka if r.get("pair", MAIN_PAIR) == MAIN_PAIR}
    out = []
    for r in cka:
        if r.get("pair", MAIN_PAIR) != MAIN_PAIR:
            pair = main.get((r["layer"], r["condition"]), {})
            out.append({**r, "pair_cka": pair.get("cka_debiased")})
    return out


def _cka_table(cka: list[dict], rows, *, b: str) -> list[dict]:
    """CKA rows plus, when channels were matched, b's mean matched correlation over samples and
    its null (the same matching between mismatched images)."""
    matched: dict[tuple, list[float]] = {}
    nulls: dict[tuple, list[float]] = {}
    for r in rows:
        if r.get("model") == b and isinstance(r.get("matched_corr"), (int, float)):
            matched.setdefault((r["layer"], r["condition"]), []).append(float(r["matched_corr"]))
            if isinstance(r.get("matched_corr_null"), (int, float)):
                nulls.setdefault((r["layer"], r["condition"]), []).append(float(r["matched_corr_null"]))
    table = []
    for c in cka:
        corr = matched.get((c.get("layer"), c.get("condition")))
        corr_null = nulls.get((c.get("layer"), c.get("condition")))
        value, null = c.get("cka_debiased"), c.get("cka_null")
        above = value - null if isinstance(value, float) and isinstance(null, float) else None
        table.append(
            {
                **c,
                "above_null": above,
                "matched_corr": sum(corr) / len(corr) if corr else None,
                "matched_null": sum(corr_null) / len(corr_null) if corr_null else None,
                "n_matched": len(corr or []),
            }
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
        rel = _inside(out, r.get("figure")) if r.get("checkpoint", 0) == 0 else None
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
    keys = ("mean", "std", "sparsity", "hoyer", "hf_share", "noise_robustness", "matched_corr")
    cells: dict[str, dict] = {}
    for r in rows:
        if r.get("checkpoint", 0) == 0 and r["layer"] in figures.get(r["sample"], {}).get(r["condition"], {}):
            numbers = {k: r[k] for k in keys if isinstance(r.get(k), (int, float))}
            key = f"{r['sample']}|{r['condition']}|{r['layer']}"
            cells.setdefault(key, {})[labels.get(str(r["model"]), str(r["model"]))] = json_safe(numbers)
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


def provenance(argv: list[str] | None) -> dict:
    """What a results file records first: the command (None when not run from the command line),
    the package version and the UTC time."""
    return {
        "command": "ddpm-lens " + shlex.join(argv) if argv else None,
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def json_safe(value):
    """``value`` with NaN / inf floats as None, so the JSON is strict and portable."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
