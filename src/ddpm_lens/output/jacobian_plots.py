"""Plots of ``ddpm-lens jacobian`` (matplotlib, Agg, no pyplot state), in the style of
:mod:`ddpm_lens.output.plots`: each function draws one figure, writes it atomically, returns it.

- :func:`spectrum_plot`: σ_k against k on log-log axes at one t, one line per model, the mean over
  images with its 95 % t-interval band (the unit of inference is the image);
- :func:`effdim_plot`: trace and participation ratio against t, or against the checkpoint's epoch;
- :func:`eigenvector_grid`: the first image's top singular vectors, one row per model, columns by
  rank; rows after the first are matched to the first model's vectors (see ``match_vectors``).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import CenteredNorm

from ddpm_lens.output.evaluation_plots import RUN_COLORS
from ddpm_lens.output.plots import _figure, _plain, _save

INTERVAL_NOTE = "mean over images; band / bars: 95 % t-interval over images"
EFFDIM = (("trace", "trace  Σλ  (tr J)"), ("participation_ratio", "participation ratio  (Σλ)²/Σλ²"))


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its 95 % t-interval (low, high); the interval collapses to the mean for one value."""
    from scipy import stats

    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    m = float(a.mean())
    if a.size < 2:
        return m, m, m
    half = float(stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return m, m - half, m + half


def spectrum_plot(
    spectra: Sequence[Mapping], models: Sequence[Mapping], t: int, path: str | os.PathLike, *, title: str = ""
):
    fig = _figure(width=6.4, height=4.6)
    ax = fig.add_subplot(1, 1, 1)
    for color, model in zip(_colors(models), models):
        by_rank = defaultdict(list)
        for r in spectra:
            if r["model"] == model["index"] and r["t"] == t:
                by_rank[r["rank"]].append(r["sigma"])
        ranks = sorted(by_rank)
        stats_ = [mean_ci(by_rank[k]) for k in ranks]
        mean = np.array([s[0] for s in stats_])
        ax.plot(ranks, mean, color=color, label=_plain(_model_label(model, models)))
        ax.fill_between(
            ranks, [s[1] for s in stats_], [s[2] for s in stats_], color=color, alpha=0.2, linewidth=0
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rank k")
    ax.set_ylabel("singular value σ_k of J")
    ax.set_title(_plain(title or f"Jacobian spectrum at t = {t}"), fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.005, INTERVAL_NOTE, fontsize=7, color="#555")
    return _save(fig, path)


def effdim_plot(
    summary: Sequence[Mapping], models: Sequence[Mapping], path: str | os.PathLike, *, against: str
):
    """``against`` "t": one line per model; "epoch": one line per arm and t, x = the checkpoint's
    epoch (a U-ViT folder's step; else its order)."""
    fig = _figure(width=11.0, height=4.2)
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    ts = sorted({r["t"] for r in summary})
    arms = list(dict.fromkeys(m["arm"] for m in models))
    for ax, (metric, name) in zip(axes, EFFDIM):
        if against == "t":
            for color, model in zip(_colors(models), models):
                pts = [
                    mean_ci([r[metric] for r in summary if r["model"] == model["index"] and r["t"] == t])
                    for t in ts
                ]
                _bars(ax, ts, pts, color, _model_label(model, models))
            ax.set_xlabel("t")
        else:
            for i, arm in enumerate(arms):
                ckpts = [m for m in models if m["arm"] == arm]
                xs = [_when(m, j) for j, m in enumerate(ckpts)]
                for j, t in enumerate(ts):
                    pts = [
                        mean_ci([r[metric] for r in summary if r["model"] == m["index"] and r["t"] == t])
                        for m in ckpts
                    ]
                    label = arm if len(ts) == 1 else f"{arm}, t={t}"
                    _bars(
                        ax,
                        xs,
                        pts,
                        RUN_COLORS[i % len(RUN_COLORS)],
                        label,
                        style=("-", "--", ":", "-.")[j % 4],
                    )
            ax.set_xlabel("checkpoint epoch (U-ViT: step; order where the name gives none)")
        ax.set_title(name, fontsize=11)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.text(0.01, 0.005, INTERVAL_NOTE, fontsize=7, color="#555")
    return _save(fig, path)


def eigenvector_grid(
    rows: Sequence[tuple[str, np.ndarray, Sequence[str]]],
    shape: Sequence[int],
    ranks: Sequence[int],
    path: str | os.PathLike,
    *,
    title: str,
):
    """``rows``: (model label, vectors (k, n) already matched and signed, caption per shown rank)."""
    ncols = len(ranks)
    fig = _figure(width=1.15 * ncols + 1.2, height=1.35 * len(rows) + 0.6)
    c = shape[0]
    for i, (label, vectors, captions) in enumerate(rows):
        for j, rank in enumerate(ranks):
            ax = fig.add_subplot(len(rows), ncols, i * ncols + j + 1)
            v = np.asarray(vectors[rank - 1]).reshape(shape)
            if c == 1:  # the study's look: red positive, blue negative, centred on 0
                ax.imshow(v[0], cmap="RdBu_r", norm=CenteredNorm())
            else:
                ax.imshow(np.clip(0.5 + v.transpose(1, 2, 0) / (2 * np.abs(v).max() + 1e-30), 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(_plain(captions[j]), fontsize=6)
            if j == 0:
                ax.set_ylabel(_plain(label), fontsize=7)
    fig.suptitle(_plain(title), fontsize=10)
    return _save(fig, path)


def _bars(ax, xs, pts, color, label, style="-"):
    mean = [p[0] for p in pts]
    err = [[p[0] - p[1] for p in pts], [p[2] - p[0] for p in pts]]
    ax.errorbar(
        xs,
        mean,
        yerr=err,
        color=color,
        marker="o",
        markersize=4,
        linestyle=style,
        capsize=3,
        label=_plain(label),
    )


def _colors(models):
    return [RUN_COLORS[i % len(RUN_COLORS)] for i in range(len(models))]


def _model_label(model: Mapping, models: Sequence[Mapping]) -> str:
    same_arm = sum(1 for m in models if m["arm"] == model["arm"])
    if same_arm == 1:
        return model["arm"]
    if model["epoch"] is not None:
        return f"{model['arm']} @ {model['epoch']}"
    if model.get("step") is not None:
        return f"{model['arm']} @ step {model['step']}"
    return f"{model['arm']} #{model['index']}"


def _when(model: Mapping, order: int) -> int:
    """A checkpoint's place on the x axis: its epoch, else its step (U-ViT folders), else its order."""
    for key in ("epoch", "step"):
        if model.get(key) is not None:
            return model[key]
    return order
