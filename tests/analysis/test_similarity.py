import numpy as np
import pytest

from ddpm_lens.analysis.similarity import CKAAccumulator, linear_cka, match_channels


def gram_linear_cka(X, Y, debiased):
    """Reference for tests, O(n^2) memory: CKA straight from the n x n Gram matrices."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n = X.shape[0]
    ones = np.ones(n)

    def hsic(K, L):
        if not debiased:
            H = np.eye(n) - 1.0 / n
            return np.trace(H @ K @ H @ H @ L @ H)
        K, L = K.copy(), L.copy()
        np.fill_diagonal(K, 0.0)
        np.fill_diagonal(L, 0.0)
        return (
            np.trace(K @ L)
            + (ones @ K @ ones) * (ones @ L @ ones) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (ones @ K @ L @ ones)
        ) / (n * (n - 3))

    K, L = X @ X.T, Y @ Y.T
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def related_pair(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 7)) + 3.0  # uncentred on purpose
    Y = X[:, :3] @ rng.normal(size=(3, 5)) + 2.0 * rng.normal(size=(n, 5)) - 5.0
    return X, Y


@pytest.mark.parametrize("debiased", [True, False])
def test_feature_space_matches_gram_reference(debiased):
    X, Y = related_pair()
    expected = gram_linear_cka(X, Y, debiased)
    assert 0.2 < expected < 0.9  # a non-trivial value
    assert linear_cka(X, Y, debiased=debiased) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("debiased", [True, False])
def test_cka_of_a_representation_with_itself_is_one(debiased):
    X, _ = related_pair()
    assert linear_cka(X, X, debiased=debiased) == pytest.approx(1.0, rel=1e-10)


@pytest.mark.parametrize("debiased", [True, False])
def test_invariant_to_orthogonal_transform_isotropic_scaling_and_shift(debiased):
    X, Y = related_pair(seed=3)
    Q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(7, 7)))
    base = linear_cka(X, Y, debiased=debiased)
    assert linear_cka(X @ Q, 3.5 * Y, debiased=debiased) == pytest.approx(base, rel=1e-9)
    assert linear_cka(X + 1e4, Y - 2e3, debiased=debiased) == pytest.approx(base, rel=1e-8)
    # anisotropic scaling is not an invariance: the value must move
    assert abs(linear_cka(X * np.arange(1, 8), Y, debiased=debiased) - base) > 1e-3


def test_debiased_removes_the_bias_for_independent_features():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(500, 64)), rng.normal(size=(500, 64))
    # measured: debiased about +-0.004, biased about 0.11 (roughly q / (n + p)) over 8 seeds
    assert abs(linear_cka(X, Y, debiased=True)) < 0.05
    assert linear_cka(X, Y, debiased=False) > 0.08


@pytest.mark.parametrize("debiased", [True, False])
def test_accumulator_is_independent_of_batching(debiased):
    X, Y = related_pair(seed=5)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    one_shot = linear_cka(X32, Y32, debiased=debiased)
    for sizes in ([1, 39], [13, 13, 14], [3, 0, 37], [20, 20]):
        acc = CKAAccumulator(7, 5)
        start = 0
        for size in sizes:
            acc.update(X32[start : start + size], Y32[start : start + size])
            start += size
        assert acc.n == 40
        assert acc.result(debiased=debiased) == pytest.approx(one_shot, rel=1e-9)


def test_debiased_needs_four_rows_and_shapes_are_checked():
    X, Y = related_pair()
    with pytest.raises(ValueError, match="at least 4 rows"):
        linear_cka(X[:3], Y[:3])
    assert np.isfinite(linear_cka(X[:3], Y[:3], debiased=False))
    with pytest.raises(ValueError, match="same b"):
        CKAAccumulator(7, 5).update(X, Y[:10])
    with pytest.raises(ValueError, match="columns"):
        CKAAccumulator(6, 5).update(X, Y)


@pytest.mark.parametrize("debiased", [True, False])
def test_constant_representation_gives_nan(debiased):
    X, _ = related_pair()
    assert np.isnan(linear_cka(X, np.ones((40, 2)), debiased=debiased))


def test_match_channels_recovers_a_known_assignment():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 8))  # (n, K) shown baseline channels
    b = rng.normal(size=(2000, 20))  # (n, C) all curriculum channels
    targets = rng.permutation(20)[:8]
    b[:, targets] = a + 0.05 * rng.normal(size=(2000, 8))
    match = match_channels(a, b)
    assert match["assignment"].tolist() == targets.tolist()
    assert np.all(match["correlation"] > 0.99)
    assert match["mean_correlation"] == pytest.approx(match["correlation"].mean())


def test_match_channels_accepts_maps_and_handles_constant_channels():
    rng = np.random.default_rng(1)
    b = rng.normal(size=(2, 6, 4, 4))  # (N, C, H, W)
    b[:, 5] = 2.0  # a constant channel
    perm = np.array([3, 0, 5, 1])
    a = b[:, perm]  # (N, K, H, W)
    match = match_channels(a, b)
    assert match["assignment"][[0, 1, 3]].tolist() == [3, 0, 1]
    np.testing.assert_allclose(match["correlation"], [1.0, 1.0, 0.0, 1.0], atol=1e-12)
    single = match_channels(a[0], b[0])  # (K, H, W) vs (C, H, W): one image
    assert single["assignment"][[0, 1, 3]].tolist() == [3, 0, 1]
    with pytest.raises(ValueError, match="one-to-one"):
        match_channels(b, a)


def test_correlation_accumulator_matches_one_shot_and_feeds_assignment():
    from ddpm_lens.analysis.similarity import CorrelationAccumulator, assign_channels

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)) + 5.0
    perm = rng.permutation(9)[:6]
    order = np.argsort(np.r_[perm, np.setdiff1d(range(9), perm)])  # X's column i lands at perm[i]
    Y = np.concatenate([X, rng.normal(size=(300, 3))], axis=1)[:, order] + 0.05 * rng.normal(size=(300, 9))
    free = np.setdiff1d(range(9), perm)[0]
    Y[:, free] = 1.0  # a constant channel: correlation 0, never NaN
    acc = CorrelationAccumulator(6, 9)
    for chunk in np.array_split(np.arange(300), 7):
        acc.update(X[chunk], Y[chunk])
    expected = np.array(
        [
            [np.corrcoef(X[:, i], Y[:, j])[0, 1] if Y[:, j].std() > 0 else 0.0 for j in range(9)]
            for i in range(6)
        ]
    )
    np.testing.assert_allclose(acc.result(), expected, atol=1e-10)
    result = assign_channels(acc.result())
    np.testing.assert_array_equal(result["assignment"], perm)
    assert result["mean_correlation"] > 0.99


def test_accumulator_takes_channels_last_row_blocks_as_they_are():
    rng = np.random.default_rng(5)
    nhwc = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)  # (n, H, W, C)
    other = rng.normal(size=(3, 4, 5, 2)).astype(np.float32)
    blocks, flat = CKAAccumulator(6, 2), CKAAccumulator(6, 2)
    blocks.update(nhwc.reshape(3, 20, 6), other.reshape(3, 20, 2))  # (n, H*W, C) views
    flat.update(nhwc.reshape(-1, 6), other.reshape(-1, 2))
    assert blocks.n == flat.n == 60
    for debiased in (True, False):
        assert blocks.result(debiased=debiased) == pytest.approx(flat.result(debiased=debiased), rel=1e-12)
    with pytest.raises(ValueError, match="same b"):
        blocks.update(nhwc.reshape(3, 20, 6), other.reshape(60, 2))
