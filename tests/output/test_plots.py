"""Tests for ddpm_lens.output.plots: the drawn data equal the rows, PNGs are written atomically."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from ddpm_lens.output import plots


def srow(layer, condition, t, *, a, b, statistic="sparsity", n=5):
    """A summary row; ``a`` / ``b`` are (mean, ci_low, ci_high)."""
    row = {"layer": layer, "condition": condition, "t": t, "statistic": statistic, "a": "baseline"}
    row.update({"b": "curriculum", "n": n})
    for prefix, (mean, low, high) in (("a", a), ("b", b)):
        row.update({f"{prefix}_mean": mean, f"{prefix}_ci_low": low, f"{prefix}_ci_high": high})
    return row


# noisy_t500 comes first in the rows; the plots order conditions by t (clean = 0 first).
ROWS = [
    srow("in_conv", "noisy_t500", 500, a=(0.10, 0.08, 0.12), b=(0.30, 0.25, 0.35)),
    srow("encoder_level_0", "noisy_t500", 500, a=(0.20, 0.18, 0.22), b=(0.40, 0.35, 0.45)),
    srow("in_conv", "clean_t0", 0, a=(0.05, 0.04, 0.06), b=(0.15, 0.10, 0.20)),
    srow("encoder_level_0", "clean_t0", 0, a=(0.06, 0.05, 0.07), b=(0.16, 0.11, 0.21), n=4),
    srow("in_conv", "clean_t0", 0, statistic="mean", a=(1.0, 0.5, 1.5), b=(2.0, 1.0, 3.0)),
]
LABELS = {"baseline": "Baseline", "curriculum": "Curric $x$ <b>"}


def _bars(container) -> np.ndarray:
    """(K, 2) lower and upper ends of an errorbar container's vertical bars."""
    segments = container.lines[2][0].get_segments()
    return np.array([[seg[0][1], seg[1][1]] for seg in segments])


def _is_png(path, size) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and image.size == size


def test_stat_vs_layer_draws_the_rows(tmp_path):
    path = tmp_path / "plots" / "sparsity_by_layer.png"
    fig = plots.stat_vs_layer(ROWS, path, statistic="sparsity", labels=LABELS)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["clean_t0 (n=4–5)", "noisy_t500 (n=5)"]
    # the seed's sparsity moves with 1/sigma on these layers: never shown as plain "sparsity"
    assert "scale-dependent" in fig.get_suptitle() and "scale-dependent" in axes[0].get_ylabel()
    clean = axes[0]
    assert [t.get_text() for t in clean.get_xticklabels()] == ["in_conv", "encoder_level_0"]
    base, curr = clean.containers
    np.testing.assert_allclose(base.lines[0].get_ydata(), [5.0, 6.0])  # sparsity in percent
    np.testing.assert_allclose(curr.lines[0].get_ydata(), [15.0, 16.0])
    np.testing.assert_allclose(_bars(curr), [[10.0, 20.0], [11.0, 21.0]])
    np.testing.assert_allclose(base.lines[0].get_xdata(), [-0.06, 0.94])  # a left of b
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Baseline", r"Curric \$x\$ <b>"]  # "$" stays literal
    assert _is_png(path, (1240, 420))
    assert not list(path.parent.glob(".*.tmp"))


def test_stat_vs_layer_without_interval(tmp_path):
    rows = [
        srow("in_conv", "clean_t0", 0, statistic="std", a=(1.0, math.nan, math.nan), b=(2.0, 1.5, 2.5), n=1)
    ]
    fig = plots.stat_vs_layer(rows, tmp_path / "std.png", statistic="std")
    base, curr = fig.axes[0].containers
    np.testing.assert_allclose(_bars(base), [[1.0, 1.0]])  # n = 1: no bar
    np.testing.assert_allclose(_bars(curr), [[1.5, 2.5]])  # other statistics are not scaled
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["baseline", "curriculum"]


def test_stat_vs_timestep_places_conditions_by_t(tmp_path):
    fig = plots.stat_vs_timestep(ROWS, tmp_path / "t.png", statistic="sparsity", labels=LABELS)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["in_conv (n=5)", "encoder_level_0 (n=4–5)"]
    base, curr = axes[1].containers
    np.testing.assert_allclose(base.lines[0].get_xdata(), [-4.0, 496.0])  # t - 0.008 * 500
    np.testing.assert_allclose(base.lines[0].get_ydata(), [6.0, 20.0])
    np.testing.assert_allclose(_bars(curr), [[11.0, 21.0], [35.0, 45.0]])
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["0", "500"]


def test_stat_plots_reject_bad_rows(tmp_path):
    with pytest.raises(ValueError, match="no summary rows for statistic 'autocorr'"):
        plots.stat_vs_layer(ROWS, tmp_path / "x.png", statistic="autocorr")
    no_t = [{k: v for k, v in r.items() if k != "t"} for r in ROWS]
    with pytest.raises(ValueError, match="needs its timestep"):
        plots.stat_vs_timestep(no_t, tmp_path / "x.png", statistic="sparsity")
    assert not (tmp_path / "x.png").exists()


CKA = [
    {"layer": "in_conv", "condition": "noisy_t100", "t": 100, "n_images": 5, "n_examples": 5 * 64,
     "cka_debiased": 0.5, "cka_biased": 0.6, "cka_ci_low": 0.4, "cka_ci_high": 0.55, "cka_null": 0.1},
    {"layer": "in_conv", "condition": "clean_t0", "t": 0, "n_images": 5, "n_examples": 5 * 64,
     "cka_debiased": 0.9, "cka_biased": 0.95, "cka_ci_low": 0.85, "cka_ci_high": 0.93, "cka_null": 0.3},
    {"layer": "bottleneck", "condition": "clean_t0", "t": 0, "n_images": 5, "n_examples": 5 * 16,
     "cka_debiased": float("nan"), "cka_biased": 0.7, "cka_ci_low": float("nan"), "cka_ci_high": float("nan"),
     "cka_null": 0.2},
]  # fmt: skip


def test_cka_heatmap_shows_cka_with_its_interval_beside_its_null(tmp_path):
    fig = plots.cka_heatmap(CKA, tmp_path / "cka.png", pair=("Baseline", "Curriculum"))
    debiased, null = fig.axes[:2]
    grid = debiased.images[0].get_array()  # (layers, conditions) = in_conv, bottleneck x clean, t100
    np.testing.assert_allclose(grid.filled(-1), [[0.9, 0.5], [-1, -1]])
    assert grid.mask.tolist() == [[False, False], [True, True]]  # NaN and absent cells
    np.testing.assert_allclose(null.images[0].get_array().filled(-1), [[0.3, 0.1], [0.2, -1]])
    texts = [t.get_text() for t in debiased.texts]
    assert texts == ["0.90", "[0.85, 0.93]", "0.50", "[0.40, 0.55]", "n/a", "n/a"]
    assert "null" in null.get_title()
    assert "5 images × spatial positions" in fig.get_suptitle()
    assert _is_png(tmp_path / "cka.png", (860, 230))


def test_cka_vs_timestep_lines_per_layer_and_their_nulls(tmp_path):
    fig = plots.cka_vs_timestep(CKA, tmp_path / "cka_t.png")
    cka, above = fig.axes[:2]
    solid = [line for line in cka.lines if line.get_linestyle() == "-"]
    dashed = [line for line in cka.lines if line.get_linestyle() == "--"]
    np.testing.assert_allclose(solid[0].get_xdata(), [0, 100])
    np.testing.assert_allclose(solid[0].get_ydata(), [0.9, 0.5])
    np.testing.assert_allclose(dashed[0].get_ydata(), [0.3, 0.1])  # in_conv's null
    np.testing.assert_allclose(above.lines[0].get_ydata(), [0.6, 0.4])  # CKA - null
    assert "baseline vs curriculum" in fig.get_suptitle()
    with pytest.raises(ValueError, match="no CKA rows"):
        plots.cka_vs_timestep([], tmp_path / "none.png")


def test_loss_vs_timestep_draws_both_curves_and_the_difference(tmp_path):
    rows = [
        {"t": t, "a_loss": a, "a_ci_low": a - 0.01, "a_ci_high": a + 0.01, "b_loss": b, "b_ci_low": b - 0.01}
        | {
            "b_ci_high": b + 0.01,
            "diff_mean": b - a,
            "diff_ci_low": b - a - 0.005,
            "diff_ci_high": b - a + 0.005,
        }
        | {"p_value": 0.03, "n": 5, "unit": "image"}
        for t, a, b in ((999, 0.02, 0.03), (0, 0.4, 0.3), (500, 0.1, 0.1))
    ]
    fig = plots.loss_vs_timestep(rows, tmp_path / "loss.png", labels=("Baseline", "Curriculum"))
    curves, diff = fig.axes[:2]
    a_line, b_line = curves.lines[:2]
    np.testing.assert_allclose(a_line.get_xdata(), [0, 500, 999])  # sorted by t
    np.testing.assert_allclose(a_line.get_ydata(), [0.4, 0.1, 0.02])
    np.testing.assert_allclose(b_line.get_ydata(), [0.3, 0.1, 0.03])
    np.testing.assert_allclose(diff.lines[0].get_ydata(), [-0.1, 0.0, 0.01])
    assert curves.get_yscale() == "log" and "n = 5 images" in fig.get_suptitle()
    assert [t.get_text() for t in curves.get_legend().get_texts()] == ["Baseline", "Curriculum"]
    with pytest.raises(ValueError, match="no loss rows"):
        plots.loss_vs_timestep([], tmp_path / "none.png")
