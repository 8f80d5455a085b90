import numpy as np
import pytest
from scipy.stats import entropy

from ddpm_lens.analysis.channel_purity import (
    _factor_codes,
    _mutual_information,
    _one_hot,
    _pairing,
    channel_purity,
    channel_responses,
    equal_count_codes,
    modularity,
    purity_difference,
)
from ddpm_lens.util.errors import UserError

NAMES = ["a", "b", "c", "d", "e", "binary"]


def _factors(rng, n):
    """Five continuous factors and one binary one, independent: (n, 6)."""
    f = rng.normal(size=(n, 6))
    f[:, 5] = rng.integers(0, 2, n)
    return f


def _reference_mi(x_codes: np.ndarray, y_codes: np.ndarray) -> float:
    """H(X) + H(Y) - H(X, Y) in bits from two code vectors, via scipy's entropy."""
    _, joint = np.unique(np.stack([x_codes, y_codes], axis=1), axis=0, return_counts=True)
    hx = entropy(np.unique(x_codes, return_counts=True)[1], base=2)
    hy = entropy(np.unique(y_codes, return_counts=True)[1], base=2)
    return hx + hy - entropy(joint, base=2)


def test_modularity_of_constructed_information_rows():
    mi = np.array([[2.0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0.5, 0, 0], [0.5, 1, 0, 0]])
    np.testing.assert_allclose(modularity(mi)[[0, 1, 2, 4, 5]], [1.0, 1 - 1 / 3, 0.0, 1.0, 1 - 0.25 / 3])
    assert np.isnan(modularity(mi)[3])


def test_mutual_information_matches_entropies_on_the_sample_and_on_a_resample():
    rng = np.random.default_rng(0)
    n, bins = 200, 5
    r = rng.normal(size=(n, 3))
    f = np.stack([rng.integers(0, 3, n), rng.normal(size=n) + r[:, 0]], axis=1)
    r[:, 1] += f[:, 0]
    r_codes = equal_count_codes(r, bins)
    g_codes, levels = _factor_codes(f, bins)
    assert levels == [3, bins]
    r_hot, g_hot = _one_hot(r_codes, [bins] * 3), _one_hot(g_codes, levels)
    mi = _mutual_information(r_hot, g_hot, 3, bins, levels)
    expected = [[_reference_mi(r_codes[:, c], g_codes[:, k]) for k in range(2)] for c in range(3)]
    np.testing.assert_allclose(mi, expected, atol=1e-6)
    # A resample with duplicates and a shuffled pairing: the same as the explicit rows.
    rows, other = rng.integers(0, n, n), rng.permutation(n)
    mi = _mutual_information(r_hot, _pairing(g_hot, rows, rows[other]), 3, bins, levels)
    expected = [
        [_reference_mi(r_codes[rows, c], g_codes[rows[other], k]) for k in range(2)] for c in range(3)
    ]
    np.testing.assert_allclose(mi, expected, atol=1e-6)


def test_a_one_factor_channel_reads_pure_and_a_two_factor_mixture_less():
    rng = np.random.default_rng(1)
    n = 512
    f = _factors(rng, n)
    pure = np.tanh(f[:, 0]) + 0.1 * rng.normal(size=n)
    mixed = f[:, 0] + f[:, 1] + 0.1 * rng.normal(size=n)
    on_binary = f[:, 5] + 0.3 * rng.normal(size=n)
    out = channel_purity(np.stack([pure, mixed, on_binary], 1), f, NAMES, bootstrap=0)
    assert out["purity"][0] > 0.97 and out["preferred_name"][0] == "a"
    assert out["purity"][2] > 0.95 and out["preferred_name"][2] == "binary"
    # An equal mix of 2 of F factors reads 1 - 1/(F - 1) = 0.8 with exact information.
    assert 0.65 < out["purity"][1] < 0.9 and out["preferred_name"][1] in ("a", "b")
    assert out["purity"][0] - out["purity"][1] > 0.1
    assert (out["information_p"] <= 1 / 21 + 1e-12).all()  # 20 shuffles: the smallest p there is
    assert (out["excess"] > 0.3).all()


def test_noise_channels_read_their_null_and_a_pure_layer_does_not():
    rng = np.random.default_rng(2)
    n = 256
    f = _factors(rng, n)
    noise = channel_purity(rng.normal(size=(n, 24)), f, NAMES, bootstrap=40, seed=1)
    layer = noise["layer"]
    assert abs(layer["mean_purity"] - layer["mean_null_purity"]) < 0.06
    assert layer["excess_low"] < 0 < layer["excess_high"]
    assert layer["informative_share"] < 0.2
    assert 0.3 < layer["mean_null_purity"] < 0.7  # a no-information channel is far from 0 and 1
    pure = f[:, rng.integers(0, 6, 24)] + 0.2 * rng.normal(size=(n, 24))
    layer = channel_purity(pure, f, NAMES, bootstrap=40, seed=1)["layer"]
    assert layer["excess_low"] > 0.3 and layer["purity_low"] < layer["mean_purity"] < layer["purity_high"]


def test_purity_ignores_channel_scale_shift_and_any_increasing_transform():
    rng = np.random.default_rng(3)
    n = 128
    f = _factors(rng, n)
    r = np.stack([f[:, 0] + f[:, 2] * 0.5, rng.normal(size=n), f[:, 3]], 1) + 0.3 * rng.normal(size=(n, 3))
    base = channel_purity(r, f, NAMES, bootstrap=10)
    for changed in (r * 7.3 + 2, np.exp(r), r * np.array([1e-3, 10.0, 1.0])):
        out = channel_purity(changed, f, NAMES, bootstrap=10)
        for key in ("purity", "null_purity", "mutual_information", "information_p"):
            np.testing.assert_array_equal(out[key], base[key])
        assert out["layer"] == base["layer"]


def test_small_samples_read_a_pure_channel_less_pure():
    # The bias of the other factors' plug-in information grows as 1/N.
    rng = np.random.default_rng(4)
    read = {}
    for n in (32, 1024):
        f = _factors(rng, n)
        read[n] = channel_purity(f[:, [0]] + 0.1 * rng.normal(size=(n, 1)), f, NAMES, bootstrap=0)["purity"]
    assert read[1024][0] > 0.99 and read[32][0] < read[1024][0] - 0.1


def test_a_constant_channel_is_nan_and_left_out_of_the_layer():
    rng = np.random.default_rng(5)
    n = 64
    f = _factors(rng, n)
    r = np.stack([f[:, 0], np.zeros(n), f[:, 1] + f[:, 2]], 1)
    out = channel_purity(r, f, NAMES, bootstrap=5)
    assert np.isnan(out["purity"][1]) and np.isnan(out["excess"][1]) and out["preferred"][1] == -1
    assert out["preferred_name"][1] == "" and out["layer"]["n_constant"] == 1
    assert out["layer"]["mean_purity"] == pytest.approx(np.mean(out["purity"][[0, 2]]))
    dead = channel_purity(np.zeros((n, 2)), f, NAMES, bootstrap=5)["layer"]  # no warnings, no interval
    assert dead["n_constant"] == 2 and np.isnan(dead["mean_purity"]) and np.isnan(dead["excess_low"])


def test_seeded_and_reproducible():
    rng = np.random.default_rng(6)
    f = _factors(rng, 64)
    r = rng.normal(size=(64, 4))
    a, b = (channel_purity(r, f, NAMES, bootstrap=5, seed=3) for _ in range(2))
    np.testing.assert_array_equal(a["null_purity"], b["null_purity"])
    assert a["layer"] == b["layer"]
    assert not np.array_equal(
        channel_purity(r, f, NAMES, bootstrap=5, seed=4)["null_purity"], a["null_purity"]
    )


def test_channel_responses_are_spatial_means():
    acts = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    np.testing.assert_allclose(channel_responses(acts), acts.reshape(2, 3, 4).mean(-1))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        channel_responses(acts[0])


def test_bad_factors_and_too_few_images_are_user_errors():
    rng = np.random.default_rng(7)
    f = _factors(rng, 64)
    r = rng.normal(size=(64, 2))
    constant = f.copy()
    constant[:, 3] = 1.0
    with pytest.raises(UserError, match="factor 'd' has one value on all 64 images.*drop it"):
        channel_purity(r, constant, NAMES)
    with pytest.raises(UserError, match="at least 32 images"):
        channel_purity(r[:20], f[:20], NAMES)
    with pytest.raises(UserError, match="at least 2 factors"):
        channel_purity(r, f[:, :1], NAMES[:1])
    r[3, 1] = np.nan
    with pytest.raises(UserError, match="finite"):
        channel_purity(r, f, NAMES)
    with pytest.raises(ValueError, match="F names"):
        channel_purity(r, f, NAMES[:2])
    with pytest.raises(UserError, match="permutations >= 1"):
        channel_purity(r, f, NAMES, permutations=0)


def test_purity_difference_finds_the_purer_layer_and_nothing_between_equals():
    rng = np.random.default_rng(8)
    n = 256
    f = _factors(rng, n)
    pure = f[:, rng.integers(0, 6, 16)] + 0.3 * rng.normal(size=(n, 16))
    mixed = f[:, rng.integers(0, 6, 16)] + f[:, rng.integers(0, 6, 16)] + 0.3 * rng.normal(size=(n, 16))
    out = purity_difference(mixed, pure, f, NAMES, bootstrap=100)
    assert out["diff"] == pytest.approx(out["excess_b"] - out["excess_a"]) and out["diff"] > 0.03
    assert 0 < out["ci_low"] < out["diff"] < out["ci_high"] and out["p_value"] < 0.05
    back = purity_difference(pure, mixed, f, NAMES, bootstrap=100)
    assert back["diff"] == pytest.approx(-out["diff"]) and back["ci_high"] < 0
    same = purity_difference(pure, pure, f, NAMES, bootstrap=50)
    assert same["diff"] == 0 and same["ci_low"] == same["ci_high"] == 0 and same["p_value"] == 1
    with pytest.raises(ValueError, match="same images"):
        purity_difference(pure, mixed[:100], f, NAMES)
