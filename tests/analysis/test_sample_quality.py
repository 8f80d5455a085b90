import numpy as np
import pytest

from ddpm_lens.analysis import sample_quality
from ddpm_lens.analysis.sample_quality import (
    feature_statistics,
    fid_from_features,
    frechet_distance,
    kernel_inception_distance,
    manifold_radii,
    precision_recall,
)
from ddpm_lens.util.errors import UserError


def gaussian(n, mean, cov, seed):
    return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n)


def random_cov(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def symmetric_frechet(mu1, s1, mu2, s2):
    """Reference: tr((S1^1/2 S2 S1^1/2)^1/2) through eigendecompositions of symmetric matrices."""
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(inner.clip(0)).sum())


def test_fid_of_a_set_with_itself_is_zero():
    x = gaussian(300, np.zeros(8), random_cov(8, 0), seed=1)
    assert abs(fid_from_features(x, x)) < 1e-8


def test_frechet_distance_matches_an_independent_formula_on_known_gaussians():
    mu1, mu2 = np.arange(6.0), np.arange(6.0)[::-1] * 0.5
    s1, s2 = random_cov(6, 1), random_cov(6, 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(symmetric_frechet(mu1, s1, mu2, s2), rel=1e-9)


def test_the_eigenvalue_trace_is_used_and_agrees_with_sqrtm(monkeypatch):
    # full-rank and singular (fewer images than dimensions) covariances of unequal spectra
    rng = np.random.default_rng(11)
    cases = [(random_cov(64, 12), random_cov(64, 13))]
    for n in (40, 300):
        f, g = rng.normal(size=(n, 64)) * np.linspace(0.1, 3, 64), rng.normal(size=(n, 64))
        cases.append((np.cov(f, rowvar=False), np.cov(g, rowvar=False)))
    for s1, s2 in cases:
        by_eig = sample_quality.trace_sqrt_product(s1, s2)
        assert by_eig == pytest.approx(sample_quality._trace_sqrtm(s1, s2, 1e-6), rel=1e-7)

    def refuse(*args, **kwargs):
        raise AssertionError("sqrtm called although the eigenvalues passed their check")

    monkeypatch.setattr(sample_quality.linalg, "sqrtm", refuse)
    mu1, mu2 = np.zeros(64), np.full(64, 0.1)
    s1, s2 = cases[0]
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(symmetric_frechet(mu1, s1, mu2, s2), rel=1e-9)


def test_eigenvalues_that_fail_their_check_fall_back_to_sqrtm(monkeypatch):
    s1, s2, mu = random_cov(6, 1), random_cov(6, 2), np.zeros(6)
    expected = symmetric_frechet(mu, s1, mu, s2)
    complex_eigs = np.linalg.eigvals(s1 @ s2) + 0.1j  # as rounding might leave on a bad product
    monkeypatch.setattr(sample_quality.np.linalg, "eigvals", lambda m: complex_eigs)
    assert sample_quality.trace_sqrt_product(s1, s2) is None
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_two_gaussians_samples_approaches_the_closed_form():
    # diagonal covariances: FD = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    var1, var2 = np.array([1.0, 4.0, 0.25, 9.0]), np.array([2.0, 1.0, 1.0, 4.0])
    mu1, mu2 = np.zeros(4), np.array([1.0, -2.0, 0.5, 0.0])
    exact = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    a = gaussian(40_000, mu1, np.diag(var1), seed=3)
    b = gaussian(40_000, mu2, np.diag(var2), seed=4)
    assert fid_from_features(a, b) == pytest.approx(exact, rel=0.02)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(exact, rel=1e-12)


def test_fid_is_symmetric_and_grows_with_a_shift():
    a = gaussian(400, np.zeros(5), random_cov(5, 5), seed=6)
    b = gaussian(300, np.full(5, 0.3), random_cov(5, 7), seed=8)
    assert fid_from_features(a, b) == pytest.approx(fid_from_features(b, a), rel=1e-9)
    assert fid_from_features(a, b + 1.0) > fid_from_features(a, b) > 0


def test_rank_deficient_covariances_give_a_finite_fid():
    # fewer images than dimensions, as with a few hundred 2048-d Inception features
    a, b = (np.abs(np.random.default_rng(s).normal(size=(20, 64))) for s in (0, 1))
    assert np.isfinite(fid_from_features(a, b)) and fid_from_features(a, b) > 0


def test_statistics_need_two_images():
    with pytest.raises(UserError, match="at least 2"):
        feature_statistics(np.zeros((1, 3)))


def brute_force_mmd2(a, b):
    d = a.shape[1]
    k = lambda x, y: (x @ y / d + 1) ** 3  # noqa: E731
    m = len(a)
    within = sum(k(a[i], a[j]) + k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return within - 2 * sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / m**2


def test_kid_with_the_whole_sets_is_the_unbiased_mmd2():
    a = gaussian(12, np.zeros(3), np.eye(3), seed=0)
    b = gaussian(12, np.ones(3), np.eye(3), seed=1)
    mean, std = kernel_inception_distance(a, b, subsets=3, subset_size=50)  # m = 12: every subset is all
    assert mean == pytest.approx(brute_force_mmd2(a, b), rel=1e-10) and std == pytest.approx(0, abs=1e-12)


def test_kid_subset_sd_is_0_only_when_both_sets_are_whole_in_every_subset():
    # equal sets of at most subset_size images: every subset is both whole sets, sd 0; unequal
    # sizes under subset_size: m = the smaller n, so the larger set's subsets vary, sd > 0
    a = gaussian(12, np.zeros(3), np.eye(3), seed=0)
    b = gaussian(20, np.ones(3), np.eye(3), seed=1)
    assert kernel_inception_distance(a, b[:12], subsets=5, subset_size=1000)[1] == pytest.approx(0, abs=1e-12)
    assert kernel_inception_distance(a, b, subsets=5, subset_size=1000)[1] > 1e-3


def test_kid_is_about_zero_for_one_distribution_and_positive_for_a_shift():
    cov = random_cov(16, 9)
    a = gaussian(600, np.zeros(16), cov, seed=10)
    b = gaussian(600, np.zeros(16), cov, seed=11)
    same, same_std = kernel_inception_distance(a, b, subsets=20, subset_size=300)
    shifted, shifted_std = kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=300)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 10 * max(abs(same), shifted_std)


def test_kid_subsets_from_kernels_of_the_whole_sets_equal_kernels_per_subset(monkeypatch):
    a = gaussian(80, np.zeros(4), np.eye(4), seed=12)
    b = gaussian(70, np.full(4, 0.2), np.eye(4), seed=13)
    whole = kernel_inception_distance(a, b, subsets=5, subset_size=30, seed=4)
    monkeypatch.setattr(sample_quality, "_GRAM_LIMIT", 0)
    per_subset = kernel_inception_distance(a, b, subsets=5, subset_size=30, seed=4)
    assert whole == pytest.approx(per_subset, rel=1e-10)


def on_a_line(xs, d=5):
    """Points at the given coordinates of the first axis of R^d."""
    out = np.zeros((len(xs), d))
    out[:, 0] = xs
    return out


def test_manifold_radius_is_the_distance_to_the_kth_other_point():
    radii = manifold_radii(on_a_line([0, 1, 2, 3, 4, 5, 6]), k=3)
    assert radii.tolist() == pytest.approx([3, 2, 2, 2, 2, 2, 3])


def test_precision_and_recall_on_constructed_sets():
    real = on_a_line(range(10))  # radii 3 at the ends ... 2 inside
    fake = on_a_line([0.5, 1.5, 2.5, 3.5, 1000, 1001, 1002, 1003])  # half near the real points, half far
    precision, recall = precision_recall(real, fake, k=3)
    # fake radii 3, 2, 2, 3: the fake manifold covers [-2.5, 6.5], i.e. real points 0..6
    assert (precision, recall) == pytest.approx((0.5, 0.7))
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, on_a_line(np.arange(10) + 500.0)) == (0.0, 0.0)


def test_precision_recall_needs_more_images_than_neighbours():
    with pytest.raises(UserError, match="more than 3"):
        precision_recall(on_a_line(range(3)), on_a_line(range(10)))


@pytest.mark.parametrize("where", ["mu", "sigma"])
def test_non_finite_statistics_are_an_error_not_a_hang(where):
    # scipy's sqrtm never returned on a NaN matrix: `fid` on a diverged model hung
    mu, sigma = np.zeros(4), random_cov(4, 0)
    bad = {"mu": mu.copy(), "sigma": sigma.copy()}
    bad[where].flat[1] = np.nan
    with pytest.raises(UserError, match="NaN or inf"):
        frechet_distance(bad["mu"], bad["sigma"], mu, sigma)
    with pytest.raises(UserError, match="NaN or inf"):
        frechet_distance(mu, sigma, bad["mu"], bad["sigma"])


def test_features_with_nan_are_refused_before_any_statistic():
    f = np.random.default_rng(0).normal(size=(10, 3))
    f[4, 1] = np.inf
    with pytest.raises(UserError, match=r"features of 1 image hold NaN or inf"):
        feature_statistics(f)
