import math

import numpy as np
import pytest
from stats_reference import edge_energy, layer_stats, percentile_normalize, top_variance_channels

from ddpm_lens.analysis.stats import (
    batch_layer_stats,
    channel_summary,
    gradient_energy,
    percentile_scale,
    spatial_autocorrelation,
)


def test_top_variance_orders_by_variance_and_breaks_ties_by_index():
    act = np.zeros((5, 2, 2), dtype=np.float32)
    act[1] = [[1, -1], [1, -1]]  # var 1
    act[2] = [[2, -2], [2, -2]]  # var 4
    act[3] = [[-1, 1], [-1, 1]]  # var 1, ties with channel 1
    act[4] = [[3, -3], [3, -3]]  # var 9; channel 0 is constant (var 0)
    assert top_variance_channels(act, 3).tolist() == [4, 2, 1]
    assert top_variance_channels(act, 10).tolist() == [4, 2, 1, 3, 0]
    assert top_variance_channels(act, 0).tolist() == []


def test_layer_stats_matches_hand_computed_values():
    act = np.array([[[0, 2], [4, 6]], [[-2, 0], [0, -8]]], dtype=np.float32)  # (2, 2, 2)
    s = layer_stats(act, shown=[0])
    # all 8 values: 0 2 4 6 -2 0 0 -8 -> sum 2, sum of squares 124, sum |x| 22, three zeros
    assert s["mean"] == pytest.approx(0.25)
    assert s["std"] == pytest.approx(math.sqrt(124 / 8 - 0.25**2))
    assert s["mean_abs"] == pytest.approx(2.75)
    assert (s["min"], s["max"]) == (-8.0, 6.0)
    assert s["sparsity"] == pytest.approx(3 / 8)
    # shown channel 0: 0 2 4 6 -> mean 3, variance (9 + 1 + 1 + 9) / 4 = 5, one zero
    assert s["shown_mean"] == pytest.approx(3.0)
    assert s["shown_std"] == pytest.approx(math.sqrt(5))
    assert s["shown_mean_abs"] == pytest.approx(3.0)
    assert (s["shown_min"], s["shown_max"]) == (0.0, 6.0)
    assert s["shown_sparsity"] == pytest.approx(0.25)
    assert all(type(v) is float for v in s.values())


def test_sparsity_counts_strictly_below_the_threshold():
    act = np.array([0.0009, -0.0009, 0.001, -0.001, 0.002, 0.0, 1e-4, 5.0]).reshape(2, 2, 2)
    assert layer_stats(act, shown=[0, 1])["sparsity"] == pytest.approx(4 / 8)
    assert layer_stats(act, shown=[0, 1], threshold=0.01)["sparsity"] == pytest.approx(7 / 8)


def test_batch_stats_equal_float64_reference_and_per_sample_stats():
    rng = np.random.default_rng(0)
    # a large offset checks that the float32 variance does not cancel catastrophically
    acts = (100.0 + rng.normal(size=(3, 6, 5, 4))).astype(np.float32)  # (N, C, H, W)
    shown = np.array([[0, 5], [2, 1], [4, 4]])  # (N, K), per image
    batch = batch_layer_stats(acts, shown=shown)
    ref = acts.astype(np.float64).reshape(3, -1)
    np.testing.assert_allclose(batch["mean"], ref.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(batch["std"], ref.std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(batch["mean_abs"], np.abs(ref).mean(axis=1), rtol=1e-12)
    for i in range(3):
        single = layer_stats(acts[i], shown=shown[i])
        picked = acts[i, shown[i]].astype(np.float64)
        assert single["shown_std"] == pytest.approx(picked.std(), rel=1e-5)
        assert single["shown_max"] == picked.max()
        for key, value in single.items():
            assert batch[key][i] == pytest.approx(value, rel=1e-12)


def test_batch_stats_without_shown_and_with_one_shared_index_set():
    acts = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    assert sorted(batch_layer_stats(acts)) == sorted(["mean", "std", "mean_abs", "min", "max", "sparsity"])
    shared = batch_layer_stats(acts, shown=[2])
    np.testing.assert_allclose(shared["shown_mean"], [9.5, 21.5])  # channel 2: 8..11 and 20..23
    with pytest.raises(ValueError, match="shown"):
        batch_layer_stats(acts, shown=np.zeros((3, 1), dtype=int))


def test_percentile_normalize_uses_2_98_range_and_thresholds_a_collapsed_one():
    ramp = np.arange(100, dtype=np.float64).reshape(1, 10, 10)
    u = percentile_normalize(ramp)
    lo, hi = np.percentile(ramp, [2, 98])
    assert u.dtype == np.float32
    assert u[0, 0, 0] == 0.0 and u[0, -1, -1] == 1.0
    assert u[0, 5, 0] == pytest.approx((50 - lo) / (hi - lo), rel=1e-6)
    spiky = np.zeros((1, 10, 10))
    spiky[0, 0, 0], spiky[0, 0, 1] = 2.0, -4.0  # 98 % zeros: 2nd and 98th percentiles are both 0
    assert np.percentile(spiky, 2) == np.percentile(spiky, 98) == 0.0
    expected = (spiky > 0).astype(np.float32)  # the limit of the ramp: above the value 1, else 0
    np.testing.assert_array_equal(percentile_normalize(spiky), expected)
    assert not np.any(percentile_normalize(np.full((1, 3, 3), 7.0)))


def test_percentile_scale_returns_the_ranges_it_used():
    maps = np.random.default_rng(0).normal(size=(3, 8, 8)).astype(np.float32)
    normed, ranges = percentile_scale(maps)
    np.testing.assert_allclose(ranges, np.percentile(maps.reshape(3, -1), [2, 98], axis=1).T, rtol=1e-6)
    np.testing.assert_array_equal(normed, percentile_normalize(maps))
    np.testing.assert_array_equal(gradient_energy(normed), edge_energy(maps))


def test_edge_energy_hand_values_constant_checkerboard_and_ramp():
    step = np.zeros((1, 4, 4))
    step[0, :, 2:] = 1.0  # one vertical edge: 4 of the 12 horizontal differences are 1
    assert edge_energy(step)[0] == pytest.approx(1 / 3)
    checker = (np.indices((8, 8)).sum(axis=0) % 2).astype(np.float32)[None]
    ramp = np.tile(np.arange(8, dtype=np.float32), (8, 1))[None]
    scores = edge_energy(np.concatenate([np.full((1, 8, 8), 3.0), checker, ramp]))
    assert scores[0] == 0.0
    assert scores[1] == pytest.approx(2.0)
    assert scores[2] < 0.05 < scores[1]
    # normalisation makes the score independent of the map's offset and scale
    assert edge_energy(5 + 3 * step)[0] == pytest.approx(1 / 3)
    assert edge_energy(np.ones((1, 1, 1)))[0] == 0.0


def test_spatial_autocorrelation_hand_values_and_limits():
    # 1x4 map [0, 1, 0, 2]: only horizontal pairs, r = -1 / sqrt(2/3 * 2) = -sqrt(3)/2
    line = np.array([[[0.0, 1.0, 0.0, 2.0]]])
    assert spatial_autocorrelation(line)[0] == pytest.approx(-math.sqrt(3) / 2)
    # rows constant: the vertical pairs are defined (r = 1); the horizontal left side is constant
    rows = np.array([[[0.0, 0.0], [1.0, 1.0]]])
    assert spatial_autocorrelation(rows)[0] == pytest.approx(1.0)
    checker = (np.indices((6, 6)).sum(axis=0) % 2).astype(np.float64)[None]
    assert spatial_autocorrelation(checker)[0] == pytest.approx(-1.0)
    constant_and_tiny = [np.full((1, 5, 5), 0.1), np.ones((1, 1, 1))]
    assert [spatial_autocorrelation(m)[0] for m in constant_and_tiny] == [0.0, 0.0]


def test_spatial_autocorrelation_noise_near_zero_smooth_near_one():
    noise = np.random.default_rng(1).normal(size=(3, 64, 64)).astype(np.float32)
    assert np.all(np.abs(spatial_autocorrelation(noise)) < 0.05)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    smooth = np.stack([xx + yy, np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) / 0.05)])
    assert np.all(spatial_autocorrelation(smooth) > 0.9)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="act must have 3 dimensions"):
        top_variance_channels(np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match="k must be"):
        top_variance_channels(np.zeros((2, 2, 2)), -1)


def test_channel_summary_is_the_same_for_nchw_and_channels_last_memory():
    rng = np.random.default_rng(3)
    nchw = (
        rng.normal(size=(2, 6, 5, 4)) * [[[[1.0]], [[0.1]], [[3.0]], [[0.0]], [[2.0]], [[1e-4]]]] + 7.0
    ).astype(np.float32)
    nhwc = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # same values, NHWC memory
    assert not nhwc.flags.c_contiguous
    a, b = channel_summary(nchw), channel_summary(nhwc)
    for field in ("mean", "var", "mean_abs", "small", "min", "max"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    ref = nchw.astype(np.float64).reshape(2, 6, -1)
    np.testing.assert_allclose(a.var, ref.var(axis=2), rtol=1e-5, atol=1e-12)
    assert a.top_channels(2).tolist() == [[2, 4], [2, 4]]
    # pooled over a subset == computed directly on that subset
    pooled = a.pooled(np.array([[0, 2], [5, 1]]))
    np.testing.assert_allclose(pooled["std"], [ref[0, [0, 2]].std(), ref[1, [5, 1]].std()], rtol=1e-6)
    np.testing.assert_allclose(pooled["mean"], [ref[0, [0, 2]].mean(), ref[1, [5, 1]].mean()], rtol=1e-12)
