"""Per-image conveniences over :mod:`ddpm_lens.analysis.stats` that only the tests use: each
restates one statistic for a single (C, H, W) activation or a (K, H, W) stack of maps, so a
test can check the batched code against the definition."""

import numpy as np

from ddpm_lens.analysis.stat_registry import SPARSITY_THRESHOLD
from ddpm_lens.analysis.stats import (
    _as_float,
    batch_layer_stats,
    channel_summary,
    gradient_energy,
    percentile_scale,
)


def top_variance_channels(act: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` channels of ``act`` (C, H, W) with the largest spatial variance.

    Sorted by variance, largest first; equal variances keep the lower index first.
    ``k`` larger than C returns all C channels. Returns (min(k, C),) int64.
    """
    act = _as_float(act, ndim=3, name="act")
    return channel_summary(act[None]).top_channels(k)[0]


def layer_stats(act: np.ndarray, *, shown, threshold: float = SPARSITY_THRESHOLD) -> dict:
    """Summary statistics of one layer's activation ``act`` (C, H, W).

    Keys ``mean``, ``std`` (population, ddof=0), ``mean_abs``, ``min``, ``max`` and
    ``sparsity`` (fraction in [0, 1] of entries with ``|x| < threshold``) are over all
    channels; the same six with the prefix ``shown_`` are over the channels ``shown``
    (indices into C, e.g. from :func:`top_variance_channels`). Values are Python floats.
    """
    act = _as_float(act, ndim=3, name="act")
    batch = batch_layer_stats(act[None], shown=np.asarray(shown)[None], threshold=threshold)
    return {key: float(value[0]) for key, value in batch.items()}


def percentile_normalize(maps: np.ndarray) -> np.ndarray:
    """Scale each map of ``maps`` (K, H, W) to [0, 1] the way figures display it.

    ``(x - p2) / (p98 - p2)`` clipped to [0, 1], with p2, p98 the map's own 2nd and 98th
    percentiles; where they coincide, the map is thresholded at that value (see
    :func:`scale_to_unit`). Returns (K, H, W) float32.
    """
    return percentile_scale(_as_float(maps, ndim=3, name="maps"))[0]


def edge_energy(maps: np.ndarray) -> np.ndarray:
    """Mean squared spatial gradient of each display-normalised map in ``maps`` (K, H, W).

    With u = :func:`percentile_normalize` (maps) in [0, 1] and forward differences
    ``gx = u[:, :, 1:] - u[:, :, :-1]``, ``gy = u[:, 1:, :] - u[:, :-1, :]``:

        edge_energy = mean(gx**2) + mean(gy**2)        (a missing direction contributes 0)

    In [0, 2]: 0 for a constant map, 2 for a one-pixel checkerboard. Higher = sharper,
    more edge-like responses. Returns float64 (K,).
    """
    return gradient_energy(percentile_normalize(maps))
