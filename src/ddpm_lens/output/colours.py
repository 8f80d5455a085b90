"""Colours of the comparison figures: the 8-bit palette (viridis plus background, frame and
text ramps) and the percentile scaling that turns activation maps into [0, 1]."""

from __future__ import annotations

import functools

import numpy as np

from ddpm_lens.analysis.stats import percentile_range, percentile_scale, scale_to_unit

BACKGROUND = (255, 255, 255)
TEXT = (25, 25, 25)
NOTE_TEXT = (90, 90, 90)
FRAME = (120, 120, 120)

# Comparison figures are composed in 8-bit palette indices (a third of the bytes to paint and to
# compress): viridis in LEVELS steps, the background, the frame, and two text ramps (a colour
# blended over the background at increasing coverage).
LEVELS = 200
BG_INDEX, FRAME_INDEX = LEVELS, LEVELS + 1
RAMP_STEPS = 27
RAMPS = {TEXT: LEVELS + 2, NOTE_TEXT: LEVELS + 2 + RAMP_STEPS}  # colour -> first index
NORM_MODES = ("channel", "model", "shared")
LOW_PCT, HIGH_PCT = 2.0, 98.0  # what the figures use; normalize_maps takes others


@functools.cache
def palette() -> np.ndarray:
    """(256, 3) uint8 colours of the comparison figures' palette indices.

    0 .. LEVELS-1: viridis from dark purple (low) to bright yellow (high); then the
    background, the frame, and the two text colours at 1/n .. n/n coverage over the background.
    """
    import matplotlib

    rgba = matplotlib.colormaps["viridis"](np.linspace(0.0, 1.0, LEVELS))  # (L, 4) float in [0, 1]
    rows = [np.round(rgba[:, :3] * 255), [BACKGROUND], [FRAME]]
    coverage = np.arange(1, RAMP_STEPS + 1)[:, None] / RAMP_STEPS  # (n, 1)
    for colour in RAMPS:
        rows.append(np.round(np.multiply(colour, coverage) + np.multiply(BACKGROUND, 1 - coverage)))
    pal = np.concatenate(rows).astype(np.uint8)
    assert pal.shape == (256, 3)
    pal.flags.writeable = False
    return pal


def normalize_maps(
    maps: np.ndarray,
    *,
    mode: str,
    shared_with: np.ndarray | None = None,
    low_pct: float = LOW_PCT,
    high_pct: float = HIGH_PCT,
) -> tuple[np.ndarray, np.ndarray]:
    """Map activation maps to [0, 1] between two percentiles, clipping outside them.

    Args:
        maps: (K, h, w) float, the maps of one panel.
        mode: ``"channel"`` (each map to its own range, the seed study's choice), ``"model"``
            (one range over the whole panel) or ``"shared"`` (one range over this panel and
            ``shared_with``, so both panels use the same colour scale).
        shared_with: the other panel(s)' maps, any shape (their values are pooled); only
            with ``mode="shared"``.
        low_pct, high_pct: the percentiles mapped to 0 and 1.

    Returns:
        ``(normed, ranges)``: normed is (K, h, w) float32 in [0, 1]; ranges holds the
        (low, high) used, (K, 2) float64 for ``"channel"`` and (2,) otherwise. A map whose
        range is empty (high == low) is thresholded at that value, so a constant map is all 0.
    """
    if mode not in NORM_MODES:
        raise ValueError(f"unknown norm mode {mode!r}; valid modes: {', '.join(NORM_MODES)}")
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (K, h, w), got shape {maps.shape}")
    if (shared_with is None) == (mode == "shared"):
        raise ValueError("shared_with is required with mode='shared' and only allowed with it")
    if not 0 <= low_pct < high_pct <= 100:
        raise ValueError(f"need 0 <= low_pct < high_pct <= 100, got {low_pct} and {high_pct}")
    if maps.size == 0:
        raise ValueError(f"maps is empty (shape {maps.shape})")
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or inf; check the activations before rendering")

    if mode == "channel":
        return percentile_scale(maps, low_pct, high_pct)
    pool = maps.reshape(-1)
    if mode == "shared":
        pool = np.concatenate([pool, np.asarray(shared_with, dtype=maps.dtype).reshape(-1)])
    ranges = percentile_range(pool, low_pct, high_pct)  # (2,)
    return scale_to_unit(maps, ranges[0], ranges[1]), ranges
