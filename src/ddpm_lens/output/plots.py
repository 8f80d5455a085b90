"""Report plots: layer statistics and CKA as PNG files (matplotlib, Agg, no pyplot state).

Each function takes plain rows, draws one figure on its own ``Figure`` + Agg canvas,
writes it atomically to ``path`` (PNG) and returns the ``Figure`` (for inspection).

- :func:`stat_vs_layer` / :func:`stat_vs_timestep` read :func:`ddpm_lens.analysis.summary.summarize`
  rows: per layer x condition, each model's mean over samples and its 95 % interval.
- :func:`cka_heatmap` / :func:`cka_vs_timestep` read the visualizer's CKA rows of one pair
  (``layer``, ``condition``, ``t``, ``n_images``, ``cka_debiased`` with ``cka_ci_low`` /
  ``cka_ci_high``, ``cka_null``): CKA always beside its mismatched-image null.
- :func:`loss_vs_timestep` reads ``loss_by_t`` rows: both models' denoising loss against t
  and their difference, each with its 95 % band.

Conditions are placed by their diffusion timestep ``t`` (the clean input is t = 0).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ddpm_lens.analysis.stat_registry import PERCENT
from ddpm_lens.analysis.stat_registry import statistic as statistic_entry
from ddpm_lens.util.atomic import atomic_path

DPI = 100
MODEL_COLORS = ("#1f77b4", "#ff7f0e")  # a, b
CKA_PANELS = (
    ("cka_debiased", "debiased CKA (unbiased HSIC), 95 % CI"),
    ("cka_null", "null: mismatched images"),
)
INTERVAL_NOTE = "points: mean over samples; bars: 95 % t-interval"


def stat_vs_layer(
    summary_rows: Sequence[Mapping], path: str | os.PathLike, *, statistic: str, labels: Mapping | None = None
) -> Figure:
    """``statistic`` against layer: one panel per condition, one line per model.

    ``labels`` maps the rows' model keys (``a``, ``b``) to display names.
    """
    rows = _rows_for(summary_rows, statistic)
    layers = _ordered(r["layer"] for r in rows)
    conditions = _conditions(rows)
    ncols = min(len(conditions), 2)
    nrows = math.ceil(len(conditions) / ncols)
    fig = _figure(width=6.2 * ncols, height=0.6 + 3.6 * nrows)
    axes = _panels(fig, len(conditions), ncols, sharey=True)
    x = np.arange(len(layers), dtype=np.float64)
    for ax, condition in zip(axes, conditions):
        cell = {r["layer"]: r for r in rows if r["condition"] == condition}
        series = [cell.get(layer) for layer in layers]
        handles = [
            _errorbar(ax, x + (k - 0.5) * 0.12, series, prefix, statistic, color=MODEL_COLORS[k])
            for k, prefix in enumerate(("a", "b"))
        ]
        ax.set_title(f"{condition} ({_n_text(cell.values())})", fontsize=11)
        ax.set_xticks(x, [_plain(layer) for layer in layers], rotation=30, ha="right", fontsize=9)
        ax.set_xlim(-0.5, len(layers) - 0.5)
        ax.set_xlabel("layer")
        ax.grid(True, alpha=0.3)
    for ax in axes[::ncols]:
        ax.set_ylabel(_plain(statistic_entry(statistic).axis_label))
    _legend(fig, handles, rows, labels)
    fig.suptitle(f"{_plain(statistic_entry(statistic).axis_label)} by layer — {INTERVAL_NOTE}", fontsize=12)
    return _save(fig, path)


def stat_vs_timestep(
    summary_rows: Sequence[Mapping], path: str | os.PathLike, *, statistic: str, labels: Mapping | None = None
) -> Figure:
    """``statistic`` against diffusion timestep: one panel per layer, one line per model."""
    rows = _rows_for(summary_rows, statistic)
    _require_t(rows, "summary")
    layers = _ordered(r["layer"] for r in rows)
    ncols = min(len(layers), 3)
    nrows = math.ceil(len(layers) / ncols)
    fig = _figure(width=4.2 * ncols, height=0.6 + 3.0 * nrows)
    axes = _panels(fig, len(layers), ncols, sharey=False)
    ts = sorted({r["t"] for r in rows})
    offset = 0.008 * (max(ts) - min(ts) or 1)
    for ax, layer in zip(axes, layers):
        cell = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["t"])
        x = np.array([r["t"] for r in cell], dtype=np.float64)
        handles = [
            _errorbar(ax, x + (2 * k - 1) * offset, cell, prefix, statistic, color=MODEL_COLORS[k])
            for k, prefix in enumerate(("a", "b"))
        ]
        ax.set_title(f"{_plain(layer)} ({_n_text(cell)})", fontsize=11)
        ax.set_xticks(ts, [str(t) for t in ts], fontsize=9)
        ax.set_xlabel("timestep t (clean = 0)")
        ax.grid(True, alpha=0.3)
    for ax in axes[::ncols]:
        ax.set_ylabel(_plain(statistic_entry(statistic).axis_label))
    _legend(fig, handles, rows, labels)
    fig.suptitle(
        f"{_plain(statistic_entry(statistic).axis_label)} by timestep — {INTERVAL_NOTE}", fontsize=12
    )
    return _save(fig, path)


def cka_heatmap(
    cka_rows: Sequence[Mapping],
    path: str | os.PathLike,
    *,
    pair: tuple[str, str] = ("baseline", "curriculum"),
) -> Figure:
    """Debiased linear CKA of layer x condition (with its interval) beside its mismatched-image
    null, values annotated. ``pair`` names the two models. Cells without a value are grey."""
    rows = _cka_rows(cka_rows)
    layers = _ordered(r["layer"] for r in rows)
    conditions = _conditions(rows)
    index = {(r["layer"], r["condition"]): r for r in rows}
    width = 1.6 + 2 * (1.6 + 0.95 * len(conditions))
    fig = _figure(width=width, height=1.3 + 0.5 * len(layers))
    axes = fig.subplots(1, 2, sharey=True)
    image = None
    for ax, (key, name) in zip(axes, CKA_PANELS):
        grid = np.full((len(layers), len(conditions)), np.nan)  # (L, C)
        for i, layer in enumerate(layers):
            for j, condition in enumerate(conditions):
                grid[i, j] = _float(index.get((layer, condition), {}).get(key))
        image = ax.imshow(
            np.ma.masked_invalid(grid), cmap=_viridis_with_grey(), vmin=0.0, vmax=1.0, aspect="auto"
        )
        for (i, j), value in np.ndenumerate(grid):
            text = "n/a" if math.isnan(value) else f"{value:.2f}"
            color = "black" if math.isnan(value) or value > 0.6 else "white"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="bottom" if key == "cka_debiased" else "center",
                fontsize=9,
                color=color,
            )
            row = index.get((layers[i], conditions[j]), {})
            low, high = _float(row.get("cka_ci_low")), _float(row.get("cka_ci_high"))
            if key == "cka_debiased" and not math.isnan(value) and not math.isnan(low):
                ax.text(j, i, f"[{low:.2f}, {high:.2f}]", ha="center", va="top", fontsize=7, color=color)
        ax.set_xticks(range(len(conditions)), [_plain(c) for c in conditions], rotation=30, ha="right")
        ax.set_yticks(range(len(layers)), [_plain(layer) for layer in layers])
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("condition")
    axes[0].set_ylabel("layer")
    fig.colorbar(image, ax=list(axes), label="linear CKA", shrink=0.9)
    fig.suptitle(
        f"Linear CKA, {_plain(pair[0])} vs {_plain(pair[1])} ({_cka_n_text(rows)})",
        fontsize=12,
    )
    return _save(fig, path)


def cka_vs_timestep(
    cka_rows: Sequence[Mapping],
    path: str | os.PathLike,
    *,
    pair: tuple[str, str] = ("baseline", "curriculum"),
) -> Figure:
    """Debiased CKA against timestep, one line per layer with its interval and its null
    (dashed); the second panel is CKA minus its null."""
    rows = _cka_rows(cka_rows)
    _require_t(rows, "CKA")
    layers = _ordered(r["layer"] for r in rows)
    ts = sorted({r["t"] for r in rows})
    fig = _figure(width=12.0, height=4.4)
    axes = fig.subplots(1, 2)
    colors = _layer_colors(len(layers))
    for layer, color in zip(layers, colors):
        cell = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["t"])
        t = np.array([r["t"] for r in cell], dtype=np.float64)
        value = np.array([_float(r.get("cka_debiased")) for r in cell])
        low = np.array([_float(r.get("cka_ci_low")) for r in cell])
        high = np.array([_float(r.get("cka_ci_high")) for r in cell])
        null = np.array([_float(r.get("cka_null")) for r in cell])
        yerr = np.nan_to_num(np.stack([value - low, high - value]), nan=0.0)
        axes[0].errorbar(t, value, yerr=yerr, marker="o", color=color, capsize=3, label=_plain(layer))
        axes[0].plot(t, null, linestyle="--", color=color, linewidth=1.0)
        axes[1].plot(t, value - null, marker="o", color=color, label=_plain(layer))
    axes[0].set_title("debiased CKA (bars: 95 % CI over images); dashed: null", fontsize=11)
    axes[0].set_ylim(-0.05, 1.05)
    axes[0].set_ylabel("linear CKA")
    axes[1].set_title("CKA − null (mismatched images)", fontsize=11)
    axes[1].axhline(0.0, color="black", linewidth=0.8)
    for ax in axes:
        ax.set_xticks(ts, [str(t) for t in ts])
        ax.set_xlabel("timestep t (clean = 0)")
        ax.grid(True, alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", title="layer", fontsize=9)
    fig.suptitle(
        f"Linear CKA by timestep, {_plain(pair[0])} vs {_plain(pair[1])} ({_cka_n_text(rows)})",
        fontsize=12,
    )
    return _save(fig, path)


def loss_vs_timestep(
    loss_rows: Sequence[Mapping],
    path: str | os.PathLike,
    *,
    labels: Sequence[str] = ("baseline", "curriculum"),
) -> Figure:
    """Both models' denoising loss against t with 95 % bands (log scale), and the difference b - a
    with its band; ``labels`` name a and b."""
    rows = sorted(loss_rows, key=lambda r: r["t"])
    if not rows:
        raise ValueError("no loss rows to plot")
    t = np.array([r["t"] for r in rows], dtype=np.float64)
    fig = _figure(width=12.0, height=4.2)
    axes = fig.subplots(1, 2)
    for k, prefix in enumerate(("a", "b")):
        mean = np.array([_float(r[f"{prefix}_loss"]) for r in rows])
        low = np.array([_float(r[f"{prefix}_ci_low"]) for r in rows])
        high = np.array([_float(r[f"{prefix}_ci_high"]) for r in rows])
        axes[0].plot(t, mean, marker="o", markersize=3, color=MODEL_COLORS[k], label=_plain(labels[k]))
        axes[0].fill_between(t, low, high, color=MODEL_COLORS[k], alpha=0.2, linewidth=0)
    if all(_float(r["a_loss"]) > 0 and _float(r["b_loss"]) > 0 for r in rows):
        axes[0].set_yscale("log")
    axes[0].set_ylabel("denoising loss")
    axes[0].set_title("each model's loss (band: 95 % CI)", fontsize=11)
    axes[0].legend(fontsize=9)
    diff = np.array([_float(r["diff_mean"]) for r in rows])
    axes[1].plot(t, diff, marker="o", markersize=3, color="black")
    axes[1].fill_between(
        t,
        [_float(r["diff_ci_low"]) for r in rows],
        [_float(r["diff_ci_high"]) for r in rows],
        color="grey",
        alpha=0.3,
        linewidth=0,
    )
    axes[1].axhline(0.0, color=MODEL_COLORS[0], linewidth=0.8)
    axes[1].set_title(
        f"{_plain(labels[1])} − {_plain(labels[0])} (band: 95 % CI; below 0: lower loss)", fontsize=11
    )
    for ax in axes:
        ax.set_xlabel("timestep t")
        ax.grid(True, alpha=0.3)
    unit = rows[0].get("unit", "image")
    n = rows[0].get("n")
    fig.suptitle(
        f"Denoising loss by timestep (n = {n} {unit}s{' in both arms' if unit == 'checkpoint' else ''})",
        fontsize=12,
    )
    return _save(fig, path)


def _figure(*, width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panels(fig: Figure, n: int, ncols: int, *, sharey: bool) -> list:
    """``n`` axes filling a grid of ``ncols`` columns row by row (no empty axes)."""
    nrows = math.ceil(n / ncols)
    axes = [fig.add_subplot(nrows, ncols, 1)]
    for k in range(2, n + 1):
        axes.append(fig.add_subplot(nrows, ncols, k, sharey=axes[0] if sharey else None))
    return axes


def _save(fig: Figure, path: str | os.PathLike) -> Figure:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return fig


def _plain(text) -> str:
    """``text`` as literal matplotlib text: ``$`` would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def _rows_for(summary_rows, statistic: str) -> list[Mapping]:
    rows = [r for r in summary_rows if r.get("statistic") == statistic]
    if not rows:
        raise ValueError(f"no summary rows for statistic '{statistic}'")
    return rows


def _cka_rows(cka_rows) -> list[Mapping]:
    rows = list(cka_rows)
    if not rows:
        raise ValueError("no CKA rows to plot")
    return rows


def _require_t(rows, what: str) -> None:
    if any(r.get("t") is None for r in rows):
        raise ValueError(f"every {what} row needs its timestep 't' to be plotted against it")


def _ordered(values) -> list:
    """Distinct values in order of first appearance."""
    return list(dict.fromkeys(values))


def _conditions(rows) -> list:
    """Condition names ordered by timestep (rows without ``t`` last, in order of appearance)."""
    first_t = {}
    for r in rows:
        first_t.setdefault(r["condition"], r.get("t"))
    names = list(first_t)
    return sorted(names, key=lambda c: (first_t[c] is None, first_t[c] or 0, names.index(c)))


def _scale(statistic: str) -> float:
    return 100.0 if statistic in PERCENT else 1.0


def _errorbar(ax, x: np.ndarray, series, prefix: str, statistic: str, *, color: str):
    """One model's means with asymmetric interval bars; ``series`` rows may be None (gap)."""
    scale = _scale(statistic)
    mean = np.array([_float(r and r[f"{prefix}_mean"]) for r in series]) * scale
    low = np.array([_float(r and r[f"{prefix}_ci_low"]) for r in series]) * scale
    high = np.array([_float(r and r[f"{prefix}_ci_high"]) for r in series]) * scale
    yerr = np.nan_to_num(np.stack([mean - low, high - mean]), nan=0.0)  # (2, L); no bar when n = 1
    return ax.errorbar(x, mean, yerr=yerr, color=color, marker="o", markersize=5, capsize=3, linewidth=1.6)


def _legend(fig: Figure, handles, rows, labels: Mapping | None) -> None:
    """Figure legend naming models a and b (``labels`` maps model keys to display names)."""
    labels = labels or {}
    names = [_plain(labels.get(rows[0][key], rows[0][key])) for key in ("a", "b")]
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=10)


def _n_text(rows) -> str:
    """The samples behind the cells: "n=5", or "n=3–5" when the counts differ."""
    ns = sorted({int(r["n"]) for r in rows if r})
    return f"n={ns[0]}–{ns[-1]}" if len(ns) > 1 else f"n={ns[0]}"


def _cka_n_text(rows) -> str:
    """The images behind the CKA values, e.g. "1000 images × spatial positions"."""
    samples = sorted(
        {
            int(r.get("n_images", r.get("n_samples")))
            for r in rows
            if r.get("n_images", r.get("n_samples")) is not None
        }
    )
    if not samples:
        return "number of images not recorded"
    text = f"{samples[0]}–{samples[-1]}" if len(samples) > 1 else str(samples[0])
    return f"{text} images × spatial positions"


def _float(value) -> float:
    return float("nan") if value is None else float(value)


def _viridis_with_grey():
    return colormaps["viridis"].with_extremes(bad="#d9d9d9")


def _layer_colors(n: int) -> list:
    """``n`` viridis colours from dark (first layer) to light, skipping the palest yellow."""
    return [colormaps["viridis"](0.9 * i / max(n - 1, 1)) for i in range(n)]
