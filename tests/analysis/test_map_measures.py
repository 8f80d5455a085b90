import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from stats_reference import edge_energy

from ddpm_lens.analysis.map_measures import (
    excess_kurtosis,
    high_frequency_share,
    hoyer,
    hoyer_from_moments,
    map_high_frequency_share,
    noise_robustness,
)
from ddpm_lens.analysis.stats import channel_summary, spatial_autocorrelation


def nhwc(x):
    """The same values in channels-last memory, as the models' activations come."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)).transpose(0, 3, 1, 2)


def test_hoyer_hand_values_and_scale_invariance():
    one_hot = np.zeros((1, 3, 4, 4))
    one_hot[0, 1, 2, 3] = -2.5
    assert hoyer(one_hot)[0] == pytest.approx(1.0)
    assert hoyer(np.full((1, 3, 4, 4), 0.7))[0] == pytest.approx(0.0, abs=1e-12)
    assert hoyer(np.zeros((1, 2, 2, 2)))[0] == 0.0  # undefined: 0 by convention
    # two equal non-zero entries of n = 4: (2 - sqrt(2)) / (2 - 1)
    assert hoyer(np.array([[1.0, 0.0, -1.0, 0.0]]))[0] == pytest.approx(2 - math.sqrt(2))
    x = np.random.default_rng(0).normal(size=(3, 4, 5, 5)).astype(np.float32)
    base = hoyer(x)
    assert np.all((base > 0) & (base < 1))
    for c in (1e-4, 3.0, -7.0, 1e4):
        np.testing.assert_allclose(hoyer(c * x), base, rtol=1e-5)
    x[1] *= np.random.default_rng(1).random(x[1].shape) < 0.2  # 80 % zeros: sparser
    assert hoyer(x)[1] > base[1] + 0.2


def test_hoyer_reads_unequal_dense_channels_as_dense_and_zeros_as_sparse():
    # dense Gaussian channels whose scales spread with log-sd 1: pooled over channels this read
    # 0.52 (as sparse as 90 % zeros reads dense), per channel it stays a Gaussian's ~0.2
    rng = np.random.default_rng(3)
    scales = np.exp(rng.normal(0.0, 1.0, size=64))[None, :, None, None]
    dense = rng.normal(size=(2, 64, 16, 16)) * scales
    zeros = rng.normal(size=(2, 64, 16, 16)) * (rng.random((2, 64, 16, 16)) < 0.1)
    gaussian = 1 - math.sqrt(2 / math.pi)  # sqrt(n) - E|x| sqrt(n) / sqrt(E x^2), over sqrt(n), n large
    np.testing.assert_allclose(hoyer(dense), gaussian, atol=0.03)
    assert np.all(hoyer(zeros) > hoyer(dense) + 0.4)
    s = channel_summary(nhwc(dense.astype(np.float32)))
    np.testing.assert_allclose(hoyer_from_moments(s.mean_abs, s.mean, s.var, s.size), hoyer(dense), rtol=1e-5)


def test_hoyer_from_channel_moments_equals_the_direct_value():
    scales = np.array([1, 0.1, 3, 0, 2, 1e-3])[None, :, None, None]  # a constant channel included
    x = (np.random.default_rng(2).normal(size=(4, 6, 5, 3)) * scales + 0.5).astype(np.float32)
    s = channel_summary(nhwc(x))
    np.testing.assert_allclose(hoyer_from_moments(s.mean_abs, s.mean, s.var, s.size), hoyer(x), rtol=1e-6)


def test_excess_kurtosis_matches_scipy_on_any_memory_layout():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(size=(5, 6, 7)), rng.laplace(size=(5, 6, 7)), rng.uniform(size=(5, 6, 7)) + 40])
    expected = [scipy_stats.kurtosis(v.ravel()) for v in x]  # fisher=True, bias=True
    np.testing.assert_allclose(excess_kurtosis(x), expected, rtol=1e-10)
    np.testing.assert_allclose(excess_kurtosis(nhwc(x.astype(np.float32))), expected, rtol=1e-4)
    k = excess_kurtosis(x)
    assert abs(k[0]) < 0.5 and k[1] > 1.5 and k[2] == pytest.approx(-1.2, abs=0.2)
    assert excess_kurtosis(np.full((1, 2, 3, 3), 4.0))[0] == 0.0
    np.testing.assert_allclose(excess_kurtosis(5.0 * x), k, rtol=1e-10)  # scale-free


def fft_share(m):
    """Reference: the high-frequency share of one map straight from the full 2-D FFT."""
    h, w = m.shape
    power = np.abs(np.fft.fft2(m - m.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    return power[np.hypot(fx, fy) > 0.25].sum() / power.sum()


@pytest.mark.parametrize("shape", [(16, 16), (8, 12), (7, 5), (4, 4), (2, 2)])
def test_high_frequency_share_equals_the_full_fft(shape):
    rng = np.random.default_rng(sum(shape))
    maps = rng.normal(size=(2, 3, *shape)).cumsum(axis=-1) + 5.0  # some structure, an offset
    expected = np.array([[fft_share(m) for m in image] for image in maps])
    np.testing.assert_allclose(map_high_frequency_share(maps), expected, rtol=1e-9, atol=1e-12)
    got32 = map_high_frequency_share(nhwc(maps.astype(np.float32)))
    np.testing.assert_allclose(got32, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(high_frequency_share(maps), expected.mean(axis=1), rtol=1e-9)


def smooth_field(rng, n, size=32, width=4.0):
    """n independent Gaussian random fields, smoothed with a Gaussian of ``width`` pixels."""
    f = np.fft.fftfreq(size)
    kernel = np.exp(-2 * (np.pi * width) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    noise = rng.normal(size=(n, size, size))
    field = np.real(np.fft.ifft2(np.fft.fft2(noise) * kernel))
    return field / field.std(axis=(1, 2), keepdims=True)


def test_high_frequency_share_orders_noise_edges_and_smooth_fields():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(1, 8, 32, 32))
    smooth = smooth_field(rng, 8)[None]
    edges = np.zeros((1, 8, 32, 32))
    for c in range(8):  # one step edge per map, at a random column, left or right brighter
        edges[0, c, :, rng.integers(4, 28) :] = rng.choice([-1.0, 1.0])
    checker = (np.indices((32, 32)).sum(axis=0) % 2)[None, None].astype(float)
    s_noise, s_smooth, s_edges, s_checker = (
        high_frequency_share(m)[0] for m in (noise, smooth, edges, checker)
    )
    assert s_noise == pytest.approx(1 - math.pi / 16, abs=0.03)  # the grid outside the disc
    assert s_smooth < 0.01
    assert s_smooth < s_edges < s_noise
    assert s_checker == pytest.approx(1.0)
    # constant maps have no spectrum: NaN per map, left out of the channel mean
    mixed = np.concatenate([noise[:, :2], np.full((1, 2, 32, 32), 3.0)], axis=1)
    per_map = map_high_frequency_share(mixed)
    assert np.isnan(per_map[0, 2:]).all()
    assert high_frequency_share(mixed)[0] == pytest.approx(per_map[0, :2].mean())
    assert high_frequency_share(np.ones((1, 2, 4, 4)))[0] == 0.0
    np.testing.assert_allclose(high_frequency_share(7 * noise + 2), s_noise, rtol=1e-9)  # affine-free


def test_noise_robustness_hand_values():
    rng = np.random.default_rng(0)
    clean = smooth_field(rng, 6)[None]  # (1, 6, 32, 32), unit variance maps
    assert noise_robustness(clean, clean)[0] == pytest.approx(1.0)
    scaled = 3.0 * clean - 2.0 + np.arange(6)[None, :, None, None]  # per-channel affine
    assert noise_robustness(nhwc(scaled.astype(np.float32)), clean.astype(np.float32))[0] == pytest.approx(
        1.0, abs=1e-6
    )
    sigma = 0.5
    white = rng.normal(size=clean.shape)
    expected = 1 / math.sqrt(1 + sigma**2)
    assert noise_robustness(clean + sigma * white, clean)[0] == pytest.approx(expected, abs=0.02)
    assert abs(noise_robustness(white, clean)[0]) < 0.05
    assert noise_robustness(-clean, clean)[0] == pytest.approx(-1.0)
    dead = clean.copy()
    dead[0, 0] = 1.0  # a constant channel is left out
    assert noise_robustness(dead, clean)[0] == pytest.approx(1.0)
    assert noise_robustness(np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 4))).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="same shape"):
        noise_robustness(clean, clean[:, :2])


def test_the_h3_and_h4_measures_vary_independently_unlike_edge_energy_and_autocorr():
    """Random fields on a grid of smoothness x noise level (the two factors uncorrelated by
    design): the high-frequency share follows the smoothness alone and the noise robustness
    the noise level alone, while the seed's edge energy and autocorrelation are nearly one
    number."""
    rng = np.random.default_rng(0)
    widths, sigmas = (g.ravel() for g in np.meshgrid(np.linspace(0.3, 3.0, 6), np.linspace(0.1, 2.0, 6)))
    hf, robust, edge, auto = [], [], [], []
    for width, sigma in zip(widths, sigmas):
        clean = smooth_field(rng, 4, width=width)[None]  # (1, 4, 32, 32)
        # the "noise" is a field of the same spectrum, so it adds no high frequencies of its own
        noisy = (clean + sigma * smooth_field(rng, 4, width=width)[None]) / math.sqrt(1 + sigma**2)
        hf.append(high_frequency_share(noisy)[0])
        robust.append(noise_robustness(noisy, clean)[0])
        edge.append(edge_energy(noisy[0]).mean())
        auto.append(spatial_autocorrelation(noisy[0]).mean())
    rho = lambda u, v: scipy_stats.spearmanr(u, v)[0]  # noqa: E731
    assert rho(hf, widths) < -0.95 and abs(rho(hf, sigmas)) < 0.3
    assert rho(robust, sigmas) < -0.95 and abs(rho(robust, widths)) < 0.3
    assert abs(rho(hf, robust)) < 0.3
    assert rho(edge, auto) < -0.95  # the seed's two scores: one measure with opposite signs
