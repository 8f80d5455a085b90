"""Statistics of activation maps: per-layer summaries, channel ranking, structure scores.

Pure functions on numpy arrays (callers convert tensors with ``.numpy()``); every
reduction accumulates in float64. Shapes use C for channels, H, W for the spatial grid,
N for a batch of images and K for a set of selected maps.

- :func:`channel_summary` gives per image and channel moments in one sweep; its
  :meth:`ChannelSummary.top_channels` picks the channels a figure shows and
  :func:`batch_layer_stats` pools the layer statistics (the registry's layer moments) over
  all channels and over the shown ones.
- :func:`gradient_energy` (edge energy) and :func:`spatial_autocorrelation` score how sharp
  and how structured the maps are; :func:`percentile_scale` is the display scaling that the
  figures and the edge score share.
"""

from dataclasses import dataclass

import numpy as np

from ddpm_lens.analysis.stat_registry import LAYER_MOMENTS, SPARSITY_THRESHOLD

PERCENTILE_RANGE = (2.0, 98.0)  # display range of a map, in percentiles of its own values


@dataclass(frozen=True)
class ChannelSummary:
    """Per image and channel moments of activations (N, C, H, W), each (N, C).

    Every statistic of a layer, over all its channels or over any subset of them, follows
    from these without reading the activations again: pooled over K channels of M = H*W
    values each, the mean is the mean of the channel means and the variance is the mean
    of the channel variances plus the variance of the channel means (the exact decomposition
    for equal counts). :func:`channel_summary` computes them in one sweep.
    """

    size: int  # M = H*W values per channel
    mean: np.ndarray  # float64
    var: np.ndarray  # float64, population (ddof=0)
    mean_abs: np.ndarray  # float64
    small: np.ndarray  # int64, how many |x| < threshold
    min: np.ndarray  # float64
    max: np.ndarray  # float64

    def top_channels(self, k: int) -> np.ndarray:
        """(N, min(k, C)) int64: channels by variance, largest first, ties to the lower index."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        return np.argsort(-self.var, axis=1, kind="stable")[:, : min(k, self.var.shape[1])].astype(np.int64)

    def pooled(self, channels: np.ndarray | None = None) -> dict:
        """The registry's layer moments (``LAYER_MOMENTS``) per image, (N,) float64 each, over all channels
        or over ``channels`` (N, K) (one index set per image)."""
        fields = ("mean", "var", "mean_abs", "small", "min", "max")
        if channels is None:
            mean, var, mean_abs, small, lo, hi = (getattr(self, f) for f in fields)
        else:
            mean, var, mean_abs, small, lo, hi = (
                np.take_along_axis(getattr(self, f), channels, axis=1) for f in fields
            )
        pooled_mean = mean.mean(axis=1)
        spread = np.square(mean - pooled_mean[:, None]).mean(axis=1)
        pooled = {
            "mean": pooled_mean,
            "std": np.sqrt(np.maximum(var.mean(axis=1) + spread, 0.0)),
            "mean_abs": mean_abs.mean(axis=1),
            "min": lo.min(axis=1),
            "max": hi.max(axis=1),
            "sparsity": small.sum(axis=1) / (small.shape[1] * self.size),
        }
        return {name: pooled[name] for name in LAYER_MOMENTS}


def channel_summary(acts: np.ndarray, threshold: float = SPARSITY_THRESHOLD) -> ChannelSummary:
    """The :class:`ChannelSummary` of ``acts`` (N, C, H, W), float32 or float64.

    Reads the activations as (N, H*W, C), a view for both NCHW and NHWC (channels-last)
    memory, so each pass is one streaming sweep with channels innermost; sums accumulate in
    float64. The variance is taken about each channel's mean (two passes), free of the
    cancellation of E[x^2] - E[x]^2. Memory: one temporary the size of ``acts``.
    """
    acts = _as_float(acts, ndim=4, name="acts")
    n, c, h, w = acts.shape
    x = np.moveaxis(acts, 1, -1).reshape(n, h * w, c)  # (N, M, C)
    m = h * w
    scratch = np.abs(x)
    mean_abs = scratch.sum(axis=1, dtype=np.float64) / m
    small = np.count_nonzero(np.less(scratch, threshold, out=np.empty(x.shape, dtype=bool)), axis=1)
    mean = x.sum(axis=1, dtype=np.float64) / m
    np.subtract(x, mean[:, None, :].astype(x.dtype), out=scratch)
    residual = scratch.sum(axis=1, dtype=np.float64) / m  # ~0: what rounding the mean left
    np.square(scratch, out=scratch)
    var = scratch.sum(axis=1, dtype=np.float64) / m - residual**2
    return ChannelSummary(
        size=m,
        mean=mean,
        var=np.maximum(var, 0.0),
        mean_abs=mean_abs,
        small=small.astype(np.int64),
        min=x.min(axis=1).astype(np.float64),
        max=x.max(axis=1).astype(np.float64),
    )


def batch_layer_stats(
    acts: np.ndarray | None = None,
    *,
    shown=None,
    threshold: float = SPARSITY_THRESHOLD,
    summary: ChannelSummary | None = None,
) -> dict:
    """The pooled layer statistics of each image of ``acts`` (N, C, H, W).

    Keys ``mean``, ``std`` (population, ddof=0), ``mean_abs``, ``min``, ``max`` and
    ``sparsity`` (fraction of entries with ``|x| < threshold``) are over all channels; the
    same with the prefix ``shown_`` are over the channels ``shown``.

    ``shown`` is None (dataset-scale statistics: only the all-channel keys), one index
    set (K,) used for every image, or one per image (N, K). Returns a dict of float64
    arrays (N,). A caller that already has the :func:`channel_summary` of ``acts`` (made
    with the same threshold) passes it as ``summary`` instead of ``acts``.
    """
    if summary is None:
        summary = channel_summary(acts, threshold)
    out = summary.pooled()
    if shown is None:
        return out
    n, c = summary.mean.shape
    idx = np.asarray(shown)
    if idx.ndim == 1:
        idx = np.broadcast_to(idx, (n, idx.shape[0]))
    if idx.ndim != 2 or idx.shape[0] != n or idx.shape[1] == 0:
        raise ValueError(f"shown must be (K,) or (N, K) with K >= 1 and N={n}, got {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"shown must hold integer channel indices, got dtype {idx.dtype}")
    if idx.min() < -c or idx.max() >= c:
        raise ValueError(f"shown holds channel indices outside [0, {c})")
    out.update({"shown_" + key: value for key, value in summary.pooled(idx).items()})
    return out


def percentile_range(values: np.ndarray, low_pct: float, high_pct: float) -> np.ndarray:
    """(..., N) -> (..., 2) float64: the low and high percentiles along the last axis.

    ``np.percentile``'s default definition (linear interpolation between order statistics),
    computed from one SIMD sort, which beats its partitioning on these small rows.
    """
    ordered = np.sort(values, axis=-1)
    n = ordered.shape[-1]
    pos = np.array([low_pct, high_pct], dtype=np.float64) / 100 * (n - 1)
    below = np.floor(pos).astype(np.intp)
    above = np.minimum(below + 1, n - 1)
    a = ordered[..., below].astype(np.float64)
    b = ordered[..., above].astype(np.float64)
    return a + (b - a) * (pos - below)


def scale_to_unit(maps: np.ndarray, low, high) -> np.ndarray:
    """``(maps - low) / (high - low)`` clipped to [0, 1], as float32; low/high broadcast.

    Where high == low (more than 96 % of a map sharing one value, for the 2nd-98th
    percentile range) the map is thresholded at that value, the limit of the ramp: above it
    1, else 0. A constant map is therefore all 0, never NaN. Figures and structure scores
    both scale maps through this one function.
    """
    low = np.asarray(low, dtype=np.float32)
    high = np.asarray(high, dtype=np.float32)
    span = high - low
    flat = span <= 0
    inv = 1 / np.where(flat, np.float32(1), span)
    out = np.subtract(maps, low, dtype=np.float32)
    out *= np.where(flat, np.float32(0), inv)
    np.clip(out, 0, 1, out=out)
    if flat.any():
        out[np.broadcast_to(flat, out.shape) & (maps > high)] = 1
    return out


def percentile_scale(
    maps: np.ndarray, low_pct: float = PERCENTILE_RANGE[0], high_pct: float = PERCENTILE_RANGE[1]
) -> tuple[np.ndarray, np.ndarray]:
    """Each map of ``maps`` (K, H, W) scaled to [0, 1] between its own percentiles.

    Returns ``(normed, ranges)``: normed (K, H, W) float32 from :func:`scale_to_unit`,
    ranges (K, 2) float64 the (low, high) percentile values used.
    """
    flat = maps.reshape(maps.shape[0], -1)  # (K, H*W), in the input's dtype: sorting float32 is faster
    ranges = percentile_range(flat, low_pct, high_pct)
    return scale_to_unit(maps, ranges[:, 0, None, None], ranges[:, 1, None, None]), ranges


def gradient_energy(u: np.ndarray) -> np.ndarray:
    """:func:`edge_energy` of maps ``u`` (K, H, W) already scaled to [0, 1]; float64 (K,)."""
    energy = np.zeros(u.shape[0])
    for d in (u[:, :, 1:] - u[:, :, :-1], u[:, 1:, :] - u[:, :-1, :]):
        if d.size:
            energy += np.einsum("kij,kij->k", d, d, dtype=np.float64) / (d.shape[1] * d.shape[2])
    return energy


def spatial_autocorrelation(maps: np.ndarray) -> np.ndarray:
    """Lag-1 spatial autocorrelation of each map in ``maps`` (K, H, W).

    r_x = Pearson correlation between ``m[:, :-1]`` and ``m[:, 1:]`` (each pixel and its
    right neighbour, over all such pairs), r_y likewise with the pixel below. The score is
    the mean of r_x and r_y over the directions where the correlation is defined (both
    sides non-constant); 0 where neither is (a constant map, a 1x1 map). About 0 for
    white noise, near 1 for smooth structure, negative for a checkerboard.
    Higher = more spatially structured, less noisy. Returns float64 (K,).
    """
    maps = _as_float(maps, ndim=3, name="maps")  # float32 stays float32; sums accumulate in float64
    total = np.zeros(maps.shape[0])
    count = np.zeros(maps.shape[0])
    for a, b in ((maps[:, :, :-1], maps[:, :, 1:]), (maps[:, :-1, :], maps[:, 1:, :])):  # views
        if a.size == 0:
            continue
        r, defined = _pearson_maps(a, b)
        total += np.where(defined, r, 0.0)
        count += defined
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _pearson_maps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r between paired maps a, b (K, h, w) over pixels, and where it is defined."""
    # Exact constancy test: a mean subtracted from equal floats can leave rounding noise.
    defined = (np.ptp(a, axis=(1, 2)) > 0) & (np.ptp(b, axis=(1, 2)) > 0)
    ca = a - a.mean(axis=(1, 2), keepdims=True)
    cb = b - b.mean(axis=(1, 2), keepdims=True)
    denom = np.sqrt(np.einsum("kij,kij->k", ca, ca) * np.einsum("kij,kij->k", cb, cb))
    r = np.divide(
        np.einsum("kij,kij->k", ca, cb), denom, out=np.zeros_like(denom), where=defined & (denom > 0)
    )
    return np.clip(r, -1.0, 1.0), defined


def _as_float(x, *, ndim: int, name: str) -> np.ndarray:
    """``x`` as a float32/float64 array with ``ndim`` dimensions (other dtypes become float64)."""
    x = np.asarray(x)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x
