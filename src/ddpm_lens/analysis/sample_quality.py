"""Sample-quality metrics on feature vectors: FID, KID and improved precision / recall.

Pure functions of two feature matrices (n, d), float64 inside, plain floats out. The
features normally are the 2048-d Inception pool features of
:mod:`ddpm_lens.analysis.inception_features`, but nothing here depends on where they come from.

- **FID** (Heusel et al. 2017): the Fréchet distance of two Gaussians fitted to the features,
  ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``. The trace of the square root is
  the sum of the square roots of the eigenvalues of S_a S_b (real and >= 0 in exact
  arithmetic: the product is similar to S_a^(1/2) S_b S_a^(1/2)), which is several times
  faster than the square root itself at 2048-d; when those eigenvalues are not as they should
  be (an imaginary part or a negative real part above 1e-6 of the largest; rounding on a
  near-singular product), the checked fallback is ``scipy.linalg.sqrtm`` as pytorch-fid
  computes it: if it is not finite, ``eps * I`` is added to both covariances; a small
  imaginary residue (diagonal within 1e-3) is dropped, a large one is an error. FID is biased
  upwards at small n: compare values at the same n only.
- **KID** (Bińkowski et al. 2018): the unbiased MMD^2 estimate with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over ``subsets`` random subsets of ``m`` images of each
  set drawn without replacement, ``m = min(n_a, n_b, subset_size)``; mean and (population) std
  over the subsets. Unbiased: about 0 for two samples of one distribution, and it can be
  slightly negative.
- **Precision / recall** (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
  around its points with radius the distance to the point's k-th nearest neighbour in the same
  set (itself excluded); precision is the share of generated points inside the real manifold,
  recall the share of real points inside the generated one. The paper uses VGG-16 features;
  with Inception features the numbers are not comparable to the paper's.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from ddpm_lens.util.errors import UserError

FID_EPS = 1e-6  # pytorch-fid's offset for a singular product of covariances
IMAG_TOLERANCE = 1e-3  # pytorch-fid's bound on the imaginary part of the square root's diagonal
EIG_TOLERANCE = 1e-6  # eigenvalues of S_a S_b: imaginary or negative parts beyond this x the largest -> sqrtm
KID_SUBSETS = 100  # torch-fidelity's and clean-fid's defaults
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3  # Kynkäänniemi et al.'s k
_GRAM_LIMIT = 6000  # KID: above this many images in all, kernels are computed per subset
_ROW_BLOCK = 1024  # precision / recall: query rows per distance block


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of ``features`` (n, d), in float64."""
    f = _matrix(features, "features")
    bad = int((~np.isfinite(f)).any(axis=1).sum())
    if bad:
        raise UserError(
            f"the features of {bad} image{'s' if bad > 1 else ''} hold NaN or inf: check the images (a "
            "model's samples: its weights or its precision)"
        )
    if f.shape[0] < 2:
        raise UserError(f"a covariance needs at least 2 images, got {f.shape[0]}: use more images")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray, *, eps: float = FID_EPS
) -> float:
    """The Fréchet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b)."""
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    sigma_a, sigma_b = np.atleast_2d(np.asarray(sigma_a, np.float64)), np.atleast_2d(sigma_b)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != 2 * mu_a.shape:
        raise ValueError(
            f"mismatched statistics: means {mu_a.shape} and {mu_b.shape}, "
            f"covariances {sigma_a.shape} and {sigma_b.shape}"
        )
    if not all(np.isfinite(s).all() for s in (mu_a, sigma_a, mu_b, sigma_b)):
        # scipy's sqrtm may never return on a NaN matrix
        raise UserError("the feature statistics hold NaN or inf: check the images they come from")
    trace = trace_sqrt_product(sigma_a, sigma_b)
    if trace is None:
        trace = _trace_sqrtm(sigma_a, sigma_b, eps)
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace)


def trace_sqrt_product(
    sigma_a: np.ndarray, sigma_b: np.ndarray, *, tol: float = EIG_TOLERANCE
) -> float | None:
    """tr (S_a S_b)^(1/2) as the sum of sqrt of the eigenvalues of S_a S_b, or None when they
    fail the check (an imaginary or negative part above ``tol`` times the largest |eigenvalue|,
    or not finite): then :func:`frechet_distance` falls back to ``sqrtm``. Negative rounding
    residues within the tolerance count as 0."""
    lam = np.linalg.eigvals(sigma_a @ sigma_b)
    if not np.isfinite(lam).all():
        return None
    scale = float(np.abs(lam).max()) if lam.size else 0.0
    if scale == 0.0:
        return 0.0
    if np.abs(lam.imag).max() > tol * scale or lam.real.min() < -tol * scale:
        return None
    return float(np.sqrt(np.clip(lam.real, 0.0, None)).sum())


def _trace_sqrtm(sigma_a: np.ndarray, sigma_b: np.ndarray, eps: float) -> float:
    """tr (S_a S_b)^(1/2) from ``scipy.linalg.sqrtm``, as pytorch-fid computes it."""
    with warnings.catch_warnings():
        # singular for fewer images than dimensions; what matters is checked below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma_a @ sigma_b)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma_a.shape[0]) * eps
            covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > IMAG_TOLERANCE:
            raise UserError(
                f"the Fréchet distance is unreliable: the covariances' square root has an imaginary "
                f"part of {imag:.3g} on its diagonal; use more images"
            )
        covmean = covmean.real
    return float(np.trace(covmean))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets (n_a, d) and (n_b, d)."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def kernel_inception_distance(
    a: np.ndarray,
    b: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: (mean, std) over ``subsets`` of the unbiased MMD^2 of ``a`` (n_a, d) and ``b`` (n_b, d).

    The std is the subset sd (population, over the subsets): how much the draw of subsets moves
    the estimate, not a standard error of KID. It is 0 only when every subset is both whole
    sets (n_a = n_b <= ``subset_size``); with unequal sizes the larger set is subsampled.

    Each subset takes ``m = min(n_a, n_b, subset_size)`` rows of each set without replacement
    (a seeded ``numpy.random.default_rng(seed)``). Per subset, with k the cubic kernel,

        MMD^2 = [sum_{i != j} k(a_i, a_j) + sum_{i != j} k(b_i, b_j)] / (m (m - 1))
                - 2 sum_{i, j} k(a_i, b_j) / m^2
    """
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    m = min(a.shape[0], b.shape[0], subset_size)
    if m < 2:
        raise UserError(f"KID needs at least 2 images in each set, got {a.shape[0]} and {b.shape[0]}")
    rng = np.random.default_rng(seed)
    picks = [
        (rng.choice(a.shape[0], m, replace=False), rng.choice(b.shape[0], m, replace=False))
        for _ in range(subsets)
    ]
    d = a.shape[1]
    if a.shape[0] + b.shape[0] <= _GRAM_LIMIT:
        k_aa, k_bb, k_ab = _cubic(a, a, d), _cubic(b, b, d), _cubic(a, b, d)  # whole sets, once
        blocks = ((k_aa[np.ix_(i, i)], k_bb[np.ix_(j, j)], k_ab[np.ix_(i, j)]) for i, j in picks)
    else:
        blocks = ((_cubic(a[i], a[i], d), _cubic(b[j], b[j], d), _cubic(a[i], b[j], d)) for i, j in picks)
    values = np.array([_mmd2_unbiased(*block) for block in blocks])
    return float(values.mean()), float(values.std())


def _cubic(x: np.ndarray, y: np.ndarray, d: int) -> np.ndarray:
    """The polynomial kernel (x.y / d + 1)^3 between the rows of x and y."""
    return (x @ y.T / d + 1.0) ** 3


def _mmd2_unbiased(k_aa: np.ndarray, k_bb: np.ndarray, k_ab: np.ndarray) -> float:
    m = k_aa.shape[0]
    within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(within - 2.0 * k_ab.sum() / m**2)


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """Improved (precision, recall) of ``fake`` (n_f, d) against ``real`` (n_r, d)."""
    real, fake = _matrix(real, "real"), _matrix(fake, "fake")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise UserError(
            f"precision/recall with k={k} needs more than {k} images in each set, "
            f"got {real.shape[0]} and {fake.shape[0]}"
        )
    real_radii = manifold_radii(real, k=k)
    fake_radii = manifold_radii(fake, k=k)
    precision = inside_manifold(fake, real, real_radii).mean()
    recall = inside_manifold(real, fake, fake_radii).mean()
    return float(precision), float(recall)


def manifold_radii(points: np.ndarray, *, k: int = PR_NEIGHBOURS) -> np.ndarray:
    """(n,) distance from each point to its k-th nearest other point of the same set."""
    points = _matrix(points, "points")
    radii = np.empty(points.shape[0])
    for start in range(0, points.shape[0], _ROW_BLOCK):
        d2 = _squared_distances(points[start : start + _ROW_BLOCK], points)  # (b, n), self at 0
        radii[start : start + _ROW_BLOCK] = np.partition(d2, k, axis=1)[:, k]  # index 0 is the point itself
    return np.sqrt(radii)


def inside_manifold(queries: np.ndarray, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(n_q,) bool: whether each query lies within ``radii[i]`` of some ``points[i]``."""
    queries, points = _matrix(queries, "queries"), _matrix(points, "points")
    r2 = np.asarray(radii, np.float64) ** 2
    inside = np.empty(queries.shape[0], dtype=bool)
    for start in range(0, queries.shape[0], _ROW_BLOCK):
        d2 = _squared_distances(queries[start : start + _ROW_BLOCK], points)  # (b, n)
        inside[start : start + _ROW_BLOCK] = (d2 <= r2[None, :]).any(axis=1)
    return inside


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n_x, n_y) squared Euclidean distances, clamped at 0 against rounding."""
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d2, 0.0)


def _matrix(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a matrix (n, d), got shape {x.shape}")
    return x
