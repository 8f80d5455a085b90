"""k >= 2 arms side by side in one figure: a panel per arm, one layer, one input.

The two-model figure's pieces, for any number of arms: each arm's panel shows its
``num_channels`` highest-variance channels on that input (the rule every panel of the
visualizer uses, :meth:`~ddpm_lens.analysis.stats.ChannelSummary.top_channels`), with μ, σ
and sparsity over all its channels, drawn by :func:`ddpm_lens.output.render.comparison_indices`
(which lays out any number of panels in a row). With ``match_channels`` every arm after the
first shows, in each cell, its channel matched one-to-one (Hungarian assignment on Pearson
correlations over the given inputs' positions, as ``--match_channels`` does) to the first
arm's channel in that cell. With two arms the figure is the visualizer's own, pixel for pixel.

For callers that hold several arms' activations on the same inputs (e.g. the checkpoints of
an across-training study)::

    figures = arm_figures([("Baseline", a), ("C", b), ("CS", c)], titles=[...], match_channels=True)
    png.write_png(path, figures[0], palette=render.palette())
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ddpm_lens.analysis.pair_accumulators import example_rows
from ddpm_lens.analysis.similarity import CorrelationAccumulator, assign_channels
from ddpm_lens.analysis.stat_registry import SPARSITY_THRESHOLD
from ddpm_lens.analysis.stats import batch_layer_stats, channel_summary
from ddpm_lens.analysis.stream import shown_maps
from ddpm_lens.output import render
from ddpm_lens.util.errors import UserError


def arm_panels(
    arms: Sequence[tuple[str, np.ndarray]],
    *,
    num_channels: int = 64,
    match_channels: bool = False,
    threshold: float = SPARSITY_THRESHOLD,
) -> tuple[list[list[render.Panel]], np.ndarray | None]:
    """Each input's panels, one per arm in the order given, and with ``match_channels`` the mean
    matched correlation of every later arm per input ((N, k - 1), else None).

    ``arms``: (label, activations (N, C, H, W)) of one layer under one condition, the same N
    inputs in the same order for every arm (channel counts may differ; with
    ``match_channels`` the spatial sizes must agree and each later arm needs at least as many
    channels as the first shows).
    """
    labels = [label for label, _ in arms]
    if len(arms) < 2 or len(set(labels)) != len(labels):
        raise UserError(f"draw at least two arms with distinct labels, got {labels}")
    acts = [np.asarray(a) for _, a in arms]
    if any(a.ndim != 4 for a in acts) or len({len(a) for a in acts}) != 1:
        shapes = ", ".join(f"{label} {a.shape}" for label, a in zip(labels, acts))
        raise UserError(f"every arm needs activations (N, C, H, W) of the same N inputs, got {shapes}")
    chosen, stats = [], []
    for a in acts:
        summary = channel_summary(a, threshold)
        idx = summary.top_channels(num_channels)  # (N, K)
        chosen.append(idx)
        stats.append(batch_layer_stats(shown=idx, summary=summary))
    matched = None
    if match_channels:
        chosen[1:], matched = _match_to_first(acts, chosen, labels)
    panels = []
    for i in range(len(acts[0])):
        row = []
        for label, a, idx, s in zip(labels, acts, chosen, stats):
            picked, normed = shown_maps(a[i][None], idx[i][None])
            values = {name: float(v[i]) for name, v in s.items()}
            row.append(render.Panel(label, picked[0], values, channels=idx[i].tolist(), normed=normed[0]))
        panels.append(row)
    return panels, matched


def _match_to_first(
    acts: list[np.ndarray], chosen: list[np.ndarray], labels: list[str]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Every later arm's shown channels as the one-to-one assignment to the first arm's."""
    first = example_rows(acts[0])  # (N, H*W, C)
    out, means = [], []
    for label, a in zip(labels[1:], acts[1:]):
        if a.shape[-2:] != acts[0].shape[-2:] or a.shape[1] < chosen[0].shape[1]:
            raise UserError(
                f"cannot match {label}'s channels to {labels[0]}'s: {a.shape[1]} channels of "
                f"{a.shape[2]}x{a.shape[3]} against {chosen[0].shape[1]} shown of "
                f"{acts[0].shape[2]}x{acts[0].shape[3]}; draw without match_channels"
            )
        rows = example_rows(a)
        acc = CorrelationAccumulator(first.shape[-1], rows.shape[-1])
        acc.update(first.reshape(-1, first.shape[-1]), rows.reshape(-1, rows.shape[-1]))
        corr = acc.result()  # (C_first, C_arm)
        results = [assign_channels(corr[shown]) for shown in chosen[0]]
        out.append(np.stack([r["assignment"] for r in results]))
        means.append([r["mean_correlation"] for r in results])
    return out, np.array(means).T


def match_note(labels: Sequence[str], correlations: Sequence[float]) -> str:
    """The grey line under the title of a matched figure: which arms follow whose channels."""
    if len(labels) == 2:
        return f"{labels[1]} channels matched one-to-one to {labels[0]}'s (mean r={correlations[0]:.2f})"
    rs = ", ".join(f"{r:.2f}" for r in correlations)
    return f"{', '.join(labels[1:])} channels matched one-to-one to {labels[0]}'s (mean r={rs})"


def arm_figures(
    arms: Sequence[tuple[str, np.ndarray]],
    *,
    titles: Sequence[str],
    num_channels: int = 64,
    grid_size: int = 8,
    norm: str = "channel",
    match_channels: bool = False,
    threshold: float = SPARSITY_THRESHOLD,
) -> list[np.ndarray]:
    """One figure per input, k panels side by side, as (H, W) palette indices
    (:func:`~ddpm_lens.output.render.palette`); ``titles`` one per input, e.g.
    ``"encoder_level_2 | noisy_t500 | Sample 0"``. Arguments as :func:`arm_panels` and
    :func:`~ddpm_lens.output.render.comparison_indices`."""
    panels, matched = arm_panels(
        arms, num_channels=num_channels, match_channels=match_channels, threshold=threshold
    )
    if len(titles) != len(panels):
        raise ValueError(f"{len(titles)} titles for {len(panels)} inputs")
    labels = [label for label, _ in arms]
    return [
        render.comparison_indices(
            row,
            title=title,
            grid_size=grid_size,
            norm=norm,
            note=match_note(labels, matched[i]) if matched is not None else None,
        )
        for i, (row, title) in enumerate(zip(panels, titles))
    ]
