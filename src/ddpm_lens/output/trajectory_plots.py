"""Plots of an across-training study (matplotlib, Agg, no pyplot state), in the style of
:mod:`ddpm_lens.output.plots`: each function draws one figure from the study's long rows,
writes it atomically as PNG and returns the ``Figure``.

- :func:`measure_by_step`: one measure against the checkpoint axis, a panel per (t, layer),
  one line per arm with its 95 % interval as a band;
- :func:`gap_heatmap`: the generalization gap per t x checkpoint, a panel per arm, one
  diverging colour scale shared by every panel (0 is white).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from ddpm_lens.output.evaluation_plots import RUN_COLORS
from ddpm_lens.output.plots import DPI, _figure, _plain, _save


def measure_by_step(
    rows: Sequence[Mapping],
    measure: str,
    path: str | os.PathLike,
    *,
    x_of: Mapping[tuple[str, str], float],
    x_label: str,
    title: str,
    y_label: str = "",
    zero_line: bool = False,
) -> None:
    """``rows`` of ``measure``; ``x_of`` maps (arm, checkpoint) to its place on the x axis."""
    mine = [r for r in rows if r["measure"] == measure]
    if not mine:
        raise ValueError(f"no rows of measure {measure!r}")
    arms = list(dict.fromkeys(r["arm"] for r in mine))
    layers = list(dict.fromkeys(r["layer"] for r in mine))  # forward order, as measured
    panels = list(dict.fromkeys((r["t"], r["layer"]) for r in mine))
    panels.sort(key=lambda p: (-1 if p[0] is None else p[0], layers.index(p[1])))
    ncols = min(len(layers), 6) if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    width, height = max(6.0, 1.0 + 3.0 * ncols), 1.3 + 2.4 * nrows + (1.0 if ncols == 1 else 0.0)
    fig = _plain_figure(width, height)
    fig.subplots_adjust(
        left=0.7 / width,
        right=1 - 0.2 / width,
        bottom=1.0 / height,
        top=1 - 0.6 / height,
        wspace=0.3,
        hspace=0.5,
    )
    handles = {}
    for k, (t, layer) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for i, arm in enumerate(arms):
            cell = sorted(
                (r for r in mine if r["arm"] == arm and r["t"] == t and r["layer"] == layer),
                key=lambda r: x_of[(r["arm"], r["checkpoint"])],
            )
            if not cell:
                continue
            x = np.array([x_of[(r["arm"], r["checkpoint"])] for r in cell], dtype=float)
            y = np.array([_f(r["value"]) for r in cell])
            lo = np.array([_f(r["ci_low"]) for r in cell])
            hi = np.array([_f(r["ci_high"]) for r in cell])
            color = RUN_COLORS[i % len(RUN_COLORS)]
            (line,) = ax.plot(x, y, marker="o", markersize=3, color=color, label=_plain(arm))
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
            handles.setdefault(arm, line)
        if zero_line:
            ax.axhline(0, color="#888888", linewidth=0.8, linestyle="--")
        name = ", ".join(p for p in (layer, None if t is None else f"t = {t}") if p)
        ax.set_title(_plain(name), fontsize=9)
        ax.tick_params(labelsize=7)
        if k // ncols == nrows - 1:
            ax.set_xlabel(x_label, fontsize=8)
        if k % ncols == 0 and y_label:
            ax.set_ylabel(_plain(y_label), fontsize=8)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncols=len(handles), fontsize=9)
    fig.suptitle(_plain(title), fontsize=11)
    return _save(fig, path)


def gap_heatmap(
    rows: Sequence[Mapping], path: str | os.PathLike, *, x_of: Mapping[tuple[str, str], float], x_label: str
) -> None:
    """The ``gap`` rows as arm panels of t (rows) x checkpoint (columns)."""
    gap = [r for r in rows if r["measure"] == "gap"]
    if not gap:
        raise ValueError("no gap rows")
    arms = list(dict.fromkeys(r["arm"] for r in gap))
    ts = sorted({r["t"] for r in gap})
    values = np.array([_f(r["value"]) for r in gap])
    span = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-span or -1.0, vmax=span or 1.0)
    fig = _figure(width=1.5 + 3.2 * len(arms), height=3.6)
    image = None
    for i, arm in enumerate(arms):
        ax = fig.add_subplot(1, len(arms), i + 1)
        cks = sorted({r["checkpoint"] for r in gap if r["arm"] == arm}, key=lambda c: x_of[(arm, c)])
        grid = np.full((len(ts), len(cks)), np.nan)
        for r in gap:
            if r["arm"] == arm:
                grid[ts.index(r["t"]), cks.index(r["checkpoint"])] = _f(r["value"])
        image = ax.imshow(grid, aspect="auto", origin="lower", cmap=colormaps["RdBu_r"], norm=norm)
        ax.set_xticks(range(len(cks)), [_tick(x_of[(arm, c)]) for c in cks], fontsize=7, rotation=90)
        ax.set_yticks(range(len(ts)), [str(t) for t in ts], fontsize=7)
        ax.set_title(_plain(arm), fontsize=10)
        ax.set_xlabel(x_label, fontsize=8)
        if i == 0:
            ax.set_ylabel("t", fontsize=8)
    fig.colorbar(image, ax=fig.axes, label="held-out − training loss", shrink=0.9)
    fig.suptitle("Generalization gap per t and checkpoint (red: held-out worse)", fontsize=11)
    return _save(fig, path)


def _plain_figure(width: float, height: float) -> Figure:
    """A figure without constrained layout: with dozens of panels its layout pass costs more
    than the drawing (measured: 68 of 166 s for ten study figures on a busy machine)."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _tick(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _f(value) -> float:
    return float("nan") if value is None else float(value)
