"""Scale-free and structure measures of a layer's activations, the ones the verdicts use.

Pure functions on numpy arrays (N, C, H, W), float32 or float64, NCHW or channels-last
memory; sums accumulate in float64 (or pairwise, for the kurtosis's float32 rows); each
returns float64 (N,) (one value per image).

- :func:`hoyer` (Hoyer 2004 sparseness) of each channel's map, averaged over all channels,
  and :func:`excess_kurtosis` of each image's activations over all channels and positions.
  Both are invariant to scaling x -> c x (Hoyer also to a scale per channel), unlike the
  seed's sparsity (share of |x| < 1e-3), which for a residual-stream layer without ReLU
  reads about 2e-3 p(0) and so moves with 1/sigma.
- :func:`high_frequency_share` (H3, "sharper edge responses"): the share of each map's
  2-D power spectrum (mean removed) at radial frequency above half the Nyquist frequency,
  averaged over channels. White noise: 1 - pi/16 = 0.80; smooth fields: near 0. On a noisy
  input it mostly reads the noise a layer passes through (a sharp square 0.05, the same
  square + noise of sd 0.5 0.47), so H3 reads it on the clean input only.
- :func:`noise_robustness` (H4, "less noisy, more structured"): per image, the mean over
  channels of the Pearson correlation between a channel's map on the noisy input at t and on
  the clean image told the same t: 1 = the noise left the features unchanged.

The two structure measures use different inputs (one condition's spectrum; a noisy/clean
pair of inputs), so neither is a function of the other, unlike the edge energy and the
lag-1 autocorrelation of the seed (``stats.py``), which on normalised maps are nearly
2 Var [(1 - r_x) + (1 - r_y)] of each other.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

HALF_NYQUIST = 0.25  # cycles per pixel: the H3 cut between low and high spatial frequencies


def hoyer(x: np.ndarray) -> np.ndarray:
    """Hoyer sparseness of each channel's map, averaged over each image's channels: (N, C, H, W) -> (N,).

    Per channel, (sqrt(n) - ||x||_1 / ||x||_2) / (sqrt(n) - 1) over its n = H*W positions:
    1 for a one-hot map, 0 for a constant one; all-zero channels are left out (undefined),
    and an image whose every channel is zero reads 0. An (N, n) array is one channel per
    image. Invariant to x -> c x, and to scaling each channel by its own c_k: pooled over
    channels, unequal channel scales alone (dense Gaussian channels, log-sd 1) read as
    sparse, so the average is per channel.
    """
    x = np.asarray(x)
    flat = x[:, None] if x.ndim == 2 else _as_maps(x).reshape(*x.shape[:2], -1)  # (N, C, M)
    l1 = np.abs(flat).sum(axis=-1, dtype=np.float64)
    l2 = np.sqrt(np.square(flat, dtype=np.float64).sum(axis=-1))
    return channel_mean(hoyer_from_norms(l1, l2, flat.shape[-1], empty=np.nan))


def hoyer_from_norms(l1: np.ndarray, l2: np.ndarray, n: int, *, empty: float = 0.0) -> np.ndarray:
    """Hoyer sparseness from L1 and L2 norms over n entries each; ``empty`` where ||x||_2 = 0."""
    l1, l2 = np.asarray(l1, dtype=np.float64), np.asarray(l2, dtype=np.float64)
    if n < 2:
        return np.where(l2 > 0, 0.0, empty)
    root = np.sqrt(n)
    ratio = np.divide(l1, l2, out=np.full_like(l1, root), where=l2 > 0)
    return np.where(l2 > 0, np.clip((root - ratio) / (root - 1.0), 0.0, 1.0), empty)


def hoyer_from_moments(mean_abs: np.ndarray, mean: np.ndarray, var: np.ndarray, size: int) -> np.ndarray:
    """:func:`hoyer` from per image and channel moments (N, C) over ``size`` = H*W positions each
    (a :class:`~ddpm_lens.analysis.stats.ChannelSummary`'s), without reading the activations:
    per channel ||x||_1 = size * mean_abs and ||x||_2^2 = size * (var + mean^2)."""
    l1 = size * np.asarray(mean_abs, dtype=np.float64)
    l2 = np.sqrt(size * (np.asarray(var, dtype=np.float64) + np.square(mean)))
    return channel_mean(hoyer_from_norms(l1, l2, size, empty=np.nan))


def excess_kurtosis(x: np.ndarray) -> np.ndarray:
    """Excess kurtosis m4 / m2^2 - 3 (population moments, as ``scipy.stats.kurtosis`` with
    its defaults) of each image of ``x`` (N, ...) over all its entries; 0 for a constant image."""
    flat = _flat(x)
    mean = flat.mean(axis=1, dtype=np.float64)
    d = np.subtract(flat, mean[:, None].astype(flat.dtype))  # (N, n) in the input's dtype
    # numpy sums a contiguous row pairwise, so float32 sums stay accurate (~1e-7) and skip a cast
    np.square(d, out=d)
    m2 = d.sum(axis=1).astype(np.float64) / flat.shape[1]
    np.square(d, out=d)
    m4 = d.sum(axis=1).astype(np.float64) / flat.shape[1]
    return np.divide(m4, m2 * m2, out=np.full_like(m2, 3.0), where=m2 > 0) - 3.0


def high_frequency_share(acts: np.ndarray, *, var: np.ndarray | None = None) -> np.ndarray:
    """(N, C, H, W) -> (N,): :func:`map_high_frequency_share` averaged over each image's
    channels, constant channels left out (0 when every channel is constant)."""
    return channel_mean(map_high_frequency_share(acts, var=var))


def map_high_frequency_share(acts: np.ndarray, *, var: np.ndarray | None = None) -> np.ndarray:
    """(N, C, H, W) -> (N, C): the share of each map's power above half Nyquist; NaN for a constant map.

    With F the 2-D DFT of the map minus its mean and (f_y, f_x) = (j / H, k / W) cycles per
    pixel, the share is sum |F|^2 over sqrt(f_x^2 + f_y^2) > 0.25, divided by sum |F|^2
    over all frequencies. Parseval gives the denominator, H W sum (x - mean)^2 = (H W)^2 var,
    so only the low-frequency disc is transformed: two small real DFT matrix products
    (|k| <= W/4, then |j| <= H/4), several times faster than a full FFT of every map. The
    mean needs no subtracting: it only enters the (0, 0) term, which is left out.
    ``var`` (N, C), per map, may be passed when already known (population variance).
    """
    acts = _as_maps(acts)
    n, c, h, w = acts.shape
    x = np.moveaxis(acts, 1, -1)  # (N, H, W, C): a view of channels-last memory
    if var is None:
        var = x.reshape(n, h * w, c).var(axis=1, dtype=np.float64)
    kx, ky = w // 4, h // 4
    cos_x, sin_x = (m.astype(x.dtype) for m in _dft_rows(w, kx, full=False))  # (kx+1, W)
    cos_y, sin_y = (m.astype(x.dtype) for m in _dft_rows(h, ky, full=True))  # (2ky+1, H)
    rows = np.matmul(np.concatenate([cos_x, sin_x]), x.reshape(n * h, w, c))  # (N*H, 2(kx+1), C)
    rows = rows.reshape(n, h, 2 * (kx + 1) * c)
    a, b = np.matmul(cos_y, rows), np.matmul(sin_y, rows)  # (N, 2ky+1, 2(kx+1) C)
    half = (kx + 1) * c
    real = a[..., :half] - b[..., half:]  # cos_y (Re) - sin_y (Im) of the row transform
    imag = a[..., half:] + b[..., :half]
    power = (real * real + imag * imag).reshape(n, 2 * ky + 1, (kx + 1), c)
    low = np.einsum("njkc,jk->nc", power, _low_weights(h, w).astype(x.dtype), dtype=np.float64)
    total = (h * w) ** 2 * np.asarray(var, dtype=np.float64)
    share = np.divide(total - low, total, out=np.full_like(total, np.nan), where=total > 0)
    return np.clip(share, 0.0, 1.0, out=share, where=np.isfinite(share))


def noise_robustness(
    noisy: np.ndarray,
    clean: np.ndarray,
    *,
    stats: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(N, C, H, W) twice -> (N,): the mean over channels of Pearson r between ``noisy[i, c]``
    and ``clean[i, c]`` over positions, channels constant in either left out (0 when all are).

    1 when the noise did not change the maps (up to a per-channel affine map), about 0 when
    they are unrelated. ``stats`` = (noisy mean, noisy var, clean mean, clean var), (N, C)
    each, may be passed when already known.
    """
    noisy, clean = _as_maps(noisy), _as_maps(clean)
    if noisy.shape != clean.shape:
        raise ValueError(f"noisy and clean must have the same shape, got {noisy.shape} and {clean.shape}")
    n, c, h, w = noisy.shape
    xn = np.moveaxis(noisy, 1, -1).reshape(n, h * w, c)  # (N, M, C) views of channels-last memory
    xc = np.moveaxis(clean, 1, -1).reshape(n, h * w, c)
    if stats is None:
        stats = (
            xn.mean(axis=1, dtype=np.float64),
            xn.var(axis=1, dtype=np.float64),
            xc.mean(axis=1, dtype=np.float64),
            xc.var(axis=1, dtype=np.float64),
        )
    mean_n, var_n, mean_c, var_c = (np.asarray(s, dtype=np.float64) for s in stats)
    centred = np.subtract(xc, mean_c[:, None, :].astype(xc.dtype))  # (N, M, C)
    residual = centred.sum(axis=1, dtype=np.float64)  # ~0: what rounding the mean left
    np.multiply(centred, xn, out=centred)
    # sum (xn - mean_n)(xc - mean_c) = sum xn (xc - mean_c) - mean_n sum (xc - mean_c)
    cov = (centred.sum(axis=1, dtype=np.float64) - mean_n * residual) / (h * w)
    scale = np.sqrt(var_n * var_c)
    defined = (var_n > 0) & (var_c > 0) & (scale > 0)
    r = np.divide(cov, scale, out=np.full_like(cov, np.nan), where=defined)
    return channel_mean(np.clip(r, -1.0, 1.0, out=r, where=defined))


def channel_mean(values: np.ndarray) -> np.ndarray:
    """(N, C) -> (N,): the mean over the finite entries of each row, 0 where there are none."""
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.zeros(len(values)), where=count > 0)


@lru_cache(maxsize=32)
def _dft_rows(n: int, kmax: int, *, full: bool) -> tuple[np.ndarray, np.ndarray]:
    """cos and -sin of 2 pi k m / n for m < n and k in 0..kmax (or -kmax..kmax): the real and
    imaginary parts of the DFT's rows at those frequencies, float64 (K, n)."""
    ks = np.arange(-kmax, kmax + 1) if full else np.arange(kmax + 1)
    angle = 2 * np.pi * np.outer(ks, np.arange(n)) / n
    return np.cos(angle), -np.sin(angle)


@lru_cache(maxsize=32)
def _low_weights(h: int, w: int) -> np.ndarray:
    """(2ky+1, kx+1) float64: how often each computed frequency (j, k) counts in the low disc.

    A real map's spectrum is conjugate-symmetric, so each k > 0 stands for k and -k (weight
    2); the disc is sqrt((j/H)^2 + (k/W)^2) <= 1/4, without the (removed) mean at (0, 0).
    """
    kx, ky = w // 4, h // 4
    j = np.arange(-ky, ky + 1)[:, None] / h
    k = np.arange(kx + 1)[None, :] / w
    inside = j**2 + k**2 <= HALF_NYQUIST**2 + 1e-12
    weights = np.where(inside, np.where(k > 0, 2.0, 1.0), 0.0)
    weights[ky, 0] = 0.0  # the mean
    return weights


def _as_maps(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"activations must be (N, C, H, W), got shape {x.shape}")
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _flat(x) -> np.ndarray:
    """(N, ...) -> (N, n) float32/float64, a view where the memory allows (channels-last included)."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if x.ndim == 4 and not x.flags.c_contiguous:
        x = np.moveaxis(x, 1, -1)  # NHWC memory read as (N, H, W, C): contiguous, so no copy
    return x.reshape(len(x), -1)
