"""The one table of per-row statistics: name, definition, title, unit, percentage or not.

Statistics rows (``stats.csv``), the CSV writers, the summary, the plots and the report all
read names, order and wording from :data:`STATISTICS`. A new statistic is one entry here
plus the code that computes it (:mod:`ddpm_lens.analysis.stats`) and its row field
(:mod:`ddpm_lens.analysis.stream`).
"""

from __future__ import annotations

from dataclasses import dataclass

SPARSITY_THRESHOLD = 1e-3  # |x| below this counts as "near zero" (the seed study's definition)


@dataclass(frozen=True)
class Statistic:
    name: str  # the row key and CSV column
    title: str  # headings and plot titles
    axis_label: str  # plot axes
    definition: str  # one sentence, shown in the report and summary.json
    unit: str = ""  # of the stored value; "" = dimensionless
    percent: bool = False  # stored as a fraction, shown in percent
    layer_moment: bool = False  # one of the pooled layer moments: also over the shown channels (shown_*)
    summarized: bool = True  # in summary.csv, the plots and the report
    noisy_only: bool = False  # compares a noisy condition with the clean one: None in clean rows


STATISTICS: tuple[Statistic, ...] = (
    Statistic(
        "mean",
        "Mean",
        "mean activation",
        "mean activation over all channels and positions of the layer",
        layer_moment=True,
    ),
    Statistic(
        "std",
        "Std",
        "std of activations",
        "standard deviation (ddof=0) over all channels and positions",
        layer_moment=True,
    ),
    Statistic("mean_abs", "Mean |x|", "mean |activation|", "mean absolute activation", layer_moment=True),
    Statistic("min", "Min", "min activation", "smallest activation", layer_moment=True, summarized=False),
    Statistic("max", "Max", "max activation", "largest activation", layer_moment=True, summarized=False),
    Statistic(
        "sparsity",
        "Sparsity (|x| < threshold; scale-dependent)",
        "% of |x| below the threshold (scale-dependent)",
        "share of activations with |x| below the threshold: a scale measure on layers without ReLU "
        "(about 2 · threshold · p(0), so it moves with 1/σ); the verdicts use Hoyer sparseness instead",
        unit="fraction",
        percent=True,
        layer_moment=True,
    ),
    Statistic(
        "hoyer",
        "Hoyer sparseness",
        "Hoyer sparseness (0 = dense, 1 = one-hot)",
        "Hoyer (2004) sparseness (√n − ‖x‖₁/‖x‖₂)/(√n − 1) of each channel's map over its n positions, "
        "averaged over all channels (all-zero channels left out; 0 for a constant map, 1 for a one-hot "
        "one; unchanged by scaling any channel, so unequal channel scales do not read as sparsity; "
        "higher = sparser)",
    ),
    Statistic(
        "kurtosis",
        "Excess kurtosis",
        "excess kurtosis",
        "excess kurtosis m₄/m₂² − 3 of each sample's activations over all channels and positions "
        "(0 for a Gaussian; higher = heavier tails, a few large activations)",
    ),
    Statistic(
        "hf_share",
        "High-frequency power share",
        "power share above half Nyquist",
        "share of each map's 2-D power spectrum (mean removed) at radial frequency above half the "
        "Nyquist frequency (0.25 cycles/pixel), averaged over all channels (white noise 0.80, smooth "
        "fields near 0; higher = sharper, more edge-like responses)",
    ),
    Statistic(
        "noise_robustness",
        "Noise robustness",
        "corr(noisy, clean) per channel",
        "mean over all channels of the Pearson r between the model's map on the noisy input at t and "
        "its map on the clean image of the same sample told the same t (so only the noise differs, "
        "not the timestep embedding; 1 = the noise left the features unchanged; higher = less noisy); "
        "needs the clean condition, not defined for it",
        noisy_only=True,
    ),
    Statistic(
        "edge_energy",
        "Edge energy",
        "edge energy (mean sq. gradient)",
        "mean squared forward-difference gradient of the shown maps after 2–98th percentile "
        "normalisation to [0, 1] (0 = flat, 2 = one-pixel checkerboard; higher = sharper edges)",
    ),
    Statistic(
        "autocorr",
        "Spatial autocorrelation",
        "lag-1 spatial autocorrelation",
        "lag-1 spatial autocorrelation of the shown maps, mean of horizontal and vertical "
        "Pearson r (≈0 for white noise, near 1 for smooth structure; higher = more structured)",
    ),
)

BY_NAME = {s.name: s for s in STATISTICS}
LAYER_MOMENTS = tuple(s.name for s in STATISTICS if s.layer_moment)  # pooled from per-channel moments
SUMMARIZED = tuple(s.name for s in STATISTICS if s.summarized)
PERCENT = tuple(s.name for s in STATISTICS if s.percent)
PANEL_STATS = ("mean", "std", "sparsity")  # printed above each panel of a figure, as the seed does
# the order of the report's plots: the hypotheses' statistics first
PLOT_ORDER = ("hoyer", "sparsity", "hf_share", "noise_robustness", "kurtosis", "edge_energy", "autocorr")


def statistic(name: str) -> Statistic:
    """The registry entry of ``name``; a name outside the table gets a plain entry."""
    return BY_NAME.get(name) or Statistic(name, name, name, name)


def row_columns() -> list[str]:
    """The statistics columns of a stats row, in stats.csv's order."""
    moments = list(LAYER_MOMENTS)
    scores = [s.name for s in STATISTICS if not s.layer_moment]
    return [*moments, *(f"shown_{m}" for m in moments), *scores]
