"""Plots of sample quality across training (matplotlib, Agg, no pyplot state), in the style of
:mod:`ddpm_lens.output.plots`: each function draws one figure, writes it atomically as PNG
and returns the ``Figure``.

- :func:`quality_by_epoch`: FID, KID, precision, recall and the held-out loss against epoch
  (against step for U-ViT runs, whose checkpoints have none), one line per run (the best
  checkpoint of each run ringed);
- :func:`loss_by_timestep`: one run's held-out denoising loss against t, one line per checkpoint
  (viridis from the first checkpoint, dark, to the last, light);
- :func:`last_loss_by_timestep`: the same for each run's last checkpoint, one line per run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ddpm_lens.output.evaluation_table import TABLE_METRICS, best_rows
from ddpm_lens.output.plots import _figure, _plain, _save

PANELS = (
    ("fid", "FID"),
    ("kid_mean", "KID × 10³"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("loss_mean", "held-out loss (mean over t)"),
)
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def quality_by_epoch(rows: Sequence[Mapping], path: str | os.PathLike, *, title: str = "") -> Figure:
    panels = [(m, name) for m, name in PANELS if any(r.get(m) is not None for r in rows)]
    runs = list(dict.fromkeys(r["run"] for r in rows))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(width=4.6 * ncols, height=0.9 + 3.2 * nrows)
    handles = []
    for k, (metric, name) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        scale = TABLE_METRICS[metric][1]
        best = best_rows(rows, metric)
        for i, run in enumerate(runs):
            cell = [r for r in rows if r["run"] == run]
            x = [_x(r, j) for j, r in enumerate(cell)]
            y = [_value(r.get(metric)) * scale for r in cell]
            color = RUN_COLORS[i % len(RUN_COLORS)]
            (line,) = ax.plot(x, y, marker="o", markersize=4, color=color, label=_plain(run))
            if run in best:
                b = best[run]
                ax.scatter(
                    [_x(b, cell.index(b))], [b[metric] * scale], s=110, facecolors="none", edgecolors=color
                )
            if k == 0:
                handles.append(line)
        ax.set_title(name, fontsize=11)
        ax.set_xlabel(
            "step" if all(r.get("epoch") is None and r.get("step") is not None for r in rows) else "epoch"
        )
        epochs = sorted({_x(r, j) for run in runs for j, r in enumerate(r for r in rows if r["run"] == run)})
        if len(epochs) <= 12:
            ax.set_xticks(epochs, [f"{e:g}" for e in epochs])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncols=min(len(runs), 4))
    fig.suptitle(_plain(title or "Sample quality by epoch (rings: each run's best)"), fontsize=12)
    return _save(fig, path)


def loss_by_timestep(loss_rows: Sequence[Mapping], path: str | os.PathLike, *, run: str) -> Figure:
    rows = [r for r in loss_rows if r["run"] == run]
    if not rows:
        raise ValueError(f"no held-out loss rows for run {run!r}")
    checkpoints = list(dict.fromkeys(r["checkpoint"] for r in rows))
    colors = [colormaps["viridis"](0.9 * i / max(len(checkpoints) - 1, 1)) for i in range(len(checkpoints))]
    fig = _figure(width=7.2, height=4.4)
    ax = fig.add_subplot(1, 1, 1)
    for ckpt, color in zip(checkpoints, colors):
        cell = _checkpoint_curve(rows, ckpt)
        epoch = cell[0].get("epoch")
        _loss_line(ax, cell, color=color, label=f"epoch {epoch}" if epoch is not None else ckpt)
    _loss_axes(ax, rows)
    ax.legend(fontsize=8, ncols=2 if len(checkpoints) > 8 else 1, title="checkpoint")
    fig.suptitle(_plain(f"Held-out loss by timestep — {run}"), fontsize=12)
    return _save(fig, path)


def last_loss_by_timestep(loss_rows: Sequence[Mapping], path: str | os.PathLike) -> Figure:
    """Each run's last checkpoint's held-out loss against t, one line per run (the runs compared)."""
    runs = list(dict.fromkeys(r["run"] for r in loss_rows))
    fig = _figure(width=7.2, height=4.4)
    ax = fig.add_subplot(1, 1, 1)
    for i, run in enumerate(runs):
        rows = [r for r in loss_rows if r["run"] == run]
        last = rows[-1]["checkpoint"]
        cell = _checkpoint_curve(rows, last)
        epoch = cell[0].get("epoch")
        label = f"{run} (epoch {epoch})" if epoch is not None else f"{run} ({last})"
        _loss_line(ax, cell, color=RUN_COLORS[i % len(RUN_COLORS)], label=_plain(label))
    _loss_axes(ax, loss_rows)
    ax.legend(fontsize=9)
    fig.suptitle("Held-out loss by timestep, each run's last checkpoint", fontsize=12)
    return _save(fig, path)


def _checkpoint_curve(rows: Sequence[Mapping], checkpoint: str) -> list[Mapping]:
    """One checkpoint's held-out loss rows, in order of t."""
    return sorted((r for r in rows if r["checkpoint"] == checkpoint), key=lambda r: r["t"])


def _loss_line(ax, cell: Sequence[Mapping], *, color, label: str) -> None:
    ax.plot(
        [r["t"] for r in cell], [r["loss"] for r in cell], marker="o", markersize=3, color=color, label=label
    )


def _loss_axes(ax, rows: Sequence[Mapping]) -> None:
    """Held-out loss against t: log scale when every loss is positive, labels, grid."""
    if all(r["loss"] > 0 for r in rows):
        ax.set_yscale("log")
    ax.set_xlabel("timestep t")
    ax.set_ylabel("held-out denoising loss (MSE)")
    ax.grid(True, alpha=0.3, which="both")


def _x(row: Mapping, index: int) -> float:
    """The epoch, else the step (U-ViT's ``<step>.ckpt/`` folders have no epoch), else the order."""
    for key in ("epoch", "step"):
        if row.get(key) is not None:
            return float(row[key])
    return float(index)


def _value(v) -> float:
    return float("nan") if v is None else float(v)
