"""Similarity of two models' representations: linear CKA and one-to-one channel matching.

Rows are examples (images x spatial positions, so n reaches tens of thousands), columns
are channels. Linear CKA (Kornblith et al., 2019) is computed entirely in feature space
from sums the :class:`CKAAccumulator` collects batch by batch, so memory is O(p^2 + q^2 +
pq) plus one batch, never an n x n Gram matrix.

Feature-space form of the unbiased HSIC estimator (Song et al., 2012), with x_i, y_i the
rows of X (n, p), Y (n, q), K = X X^T, L = Y Y^T, K~, L~ with zeroed diagonals,
k_i = ||x_i||^2, l_i = ||y_i||^2, sx = sum_i x_i, sy = sum_i y_i:

    tr(K~ L~)   = ||X^T Y||_F^2 - sum_i k_i l_i
    1^T K~ 1    = ||sx||^2 - sum_i k_i
    1^T K~ L~ 1 = sum_i (x_i.sx - k_i)(y_i.sy - l_i)
                = sx^T (X^T Y) sy - (sum_i k_i y_i).sy - (sum_i l_i x_i).sx + sum_i k_i l_i
    HSIC_u      = [tr(K~ L~) + 1^T K~ 1 * 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3))

and the same with Y := X (or X := Y) for HSIC_u(K, K) and HSIC_u(L, L).
"""

import numpy as np


def linear_cka(X: np.ndarray, Y: np.ndarray, *, debiased: bool = True) -> float:
    """Linear CKA between X (n, p) and Y (n, q), rows paired.

    ``debiased=True`` uses the unbiased HSIC estimator (needs n >= 4); ``False`` the plain
    estimator ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) on column-centred data, which
    reads well above 0 for unrelated features when n is not much larger than p, q.
    NaN when a representation has no variance (or, debiased, a non-positive self-HSIC).
    """
    X = np.asarray(X)
    Y = np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"X and Y must be (n, p) and (n, q), got {X.shape} and {Y.shape}")
    acc = CKAAccumulator(X.shape[1], Y.shape[1])
    acc.update(X, Y)
    return acc.result(debiased=debiased)


class CKAAccumulator:
    """Streaming linear CKA: feed paired row batches with :meth:`update`, read :meth:`result`.

    Keeps float64 sufficient statistics of the rows seen so far; the result does not
    depend on how the rows were split into batches. Rows are shifted by the first batch's
    column means before anything is summed (both estimators are invariant to a constant
    shift of either representation), which keeps the sums well conditioned.
    """

    def __init__(self, p: int, q: int):
        self.p, self.q = p, q
        self.n = 0
        self._shift_x = self._shift_y = None  # (p,), (q,) set by the first update
        self._xty = np.zeros((p, q))  # sum_i x_i y_i^T
        self._xtx = np.zeros((p, p))  # sum_i x_i x_i^T
        self._yty = np.zeros((q, q))  # sum_i y_i y_i^T
        self._sx = np.zeros(p)  # sum_i x_i
        self._sy = np.zeros(q)  # sum_i y_i
        self._k_x = np.zeros(p)  # sum_i k_i x_i
        self._k_y = np.zeros(q)  # sum_i k_i y_i
        self._l_x = np.zeros(p)  # sum_i l_i x_i
        self._l_y = np.zeros(q)  # sum_i l_i y_i
        self._sk = self._sl = 0.0  # sum_i k_i, sum_i l_i
        self._skk = self._sll = self._skl = 0.0  # sum_i k_i^2, sum_i l_i^2, sum_i k_i l_i

    def update(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Add paired rows X (b, p) and Y (b, q).

        Any leading shape works, e.g. (n, H*W, p) views of channels-last activations: the
        rows are all leading positions, read once while being shifted into float64.
        """
        X, Y = np.asarray(X), np.asarray(Y)
        if X.ndim < 2 or X.shape[:-1] != Y.shape[:-1]:
            raise ValueError(
                f"X and Y must be (b, p) and (b, q) with the same b, got {X.shape} and {Y.shape}"
            )
        if X.shape[-1] != self.p or Y.shape[-1] != self.q:
            raise ValueError(f"expected {self.p} and {self.q} columns, got {X.shape[-1]} and {Y.shape[-1]}")
        if X.size == 0:
            return
        if self._shift_x is None:
            axes = tuple(range(X.ndim - 1))
            self._shift_x = X.mean(axis=axes, dtype=np.float64)
            self._shift_y = Y.mean(axis=axes, dtype=np.float64)
        X = _shifted_rows(X, self._shift_x)
        Y = _shifted_rows(Y, self._shift_y)
        k = np.einsum("ij,ij->i", X, X)  # (b,)
        l = np.einsum("ij,ij->i", Y, Y)  # (b,)
        self.n += X.shape[0]
        self._xty += X.T @ Y
        self._xtx += X.T @ X
        self._yty += Y.T @ Y
        self._sx += X.sum(axis=0)
        self._sy += Y.sum(axis=0)
        self._k_x += k @ X
        self._k_y += k @ Y
        self._l_x += l @ X
        self._l_y += l @ Y
        self._sk += k.sum()
        self._sl += l.sum()
        self._skk += k @ k
        self._sll += l @ l
        self._skl += k @ l

    def result(self, *, debiased: bool = True) -> float:
        """CKA of all rows seen so far (see :func:`linear_cka`)."""
        if debiased:
            if self.n < 4:
                raise ValueError(f"debiased CKA needs at least 4 rows, got {self.n}; pass more examples")
            xy = self._hsic_u(
                self._xty, self._sx, self._sy, self._k_y, self._l_x, self._sk, self._sl, self._skl
            )
            xx = self._hsic_u(
                self._xtx, self._sx, self._sx, self._k_x, self._k_x, self._sk, self._sk, self._skk
            )
            yy = self._hsic_u(
                self._yty, self._sy, self._sy, self._l_y, self._l_y, self._sl, self._sl, self._sll
            )
        else:
            if self.n == 0:
                raise ValueError("CKA of no rows; call update() with data first")
            xy = centred_frobenius_sq(self._xty, self._sx, self._sy, self.n)
            xx = centred_frobenius_sq(self._xtx, self._sx, self._sx, self.n)
            yy = centred_frobenius_sq(self._yty, self._sy, self._sy, self.n)
        if xx <= 0 or yy <= 0:
            return float("nan")
        return float(xy / np.sqrt(xx * yy))

    def _hsic_u(self, cross, sa, sb, ka_b, kb_a, s_ka, s_kb, s_ka_kb) -> float:
        """Unbiased HSIC from feature-space sums (formulas in the module docstring).

        cross = sum_i a_i b_i^T; sa, sb = sum_i a_i, sum_i b_i; ka_b = sum_i ||a_i||^2 b_i;
        kb_a = sum_i ||b_i||^2 a_i; s_ka, s_kb = sum_i ||a_i||^2, sum_i ||b_i||^2;
        s_ka_kb = sum_i ||a_i||^2 ||b_i||^2.
        """
        n = self.n
        trace = np.sum(cross * cross) - s_ka_kb  # tr(K~ L~)
        ones_k = sa @ sa - s_ka  # 1^T K~ 1
        ones_l = sb @ sb - s_kb  # 1^T L~ 1
        ones_kl = sa @ cross @ sb - ka_b @ sb - kb_a @ sa + s_ka_kb  # 1^T K~ L~ 1
        return (trace + ones_k * ones_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * ones_kl) / (n * (n - 3))


def _shifted_rows(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(..., p) -> (rows, p) float64 ``x - shift``, in one pass (the subtraction casts)."""
    out = np.empty(x.shape, dtype=np.float64)
    np.subtract(x, shift, out=out)
    return out.reshape(-1, x.shape[-1])


def centred_frobenius_sq(cross: np.ndarray, sa: np.ndarray, sb: np.ndarray, n: int) -> float:
    """||A_c^T B_c||_F^2 from cross = A^T B and column sums sa, sb (A_c^T B_c = A^T B - sa sb^T / n)."""
    centred = cross - np.outer(sa, sb) / n
    return float(np.sum(centred * centred))


def match_channels(a: np.ndarray, b: np.ndarray) -> dict:
    """Pair each of model A's K shown channels with a distinct channel of model B.

    ``a`` holds A's shown channels and ``b`` all of B's channels over the same inputs, as
    (n, K) / (n, C) rows of examples, (K, H, W) / (C, H, W) for one image, or
    (N, K, H, W) / (N, C, H, W) for a batch; images and positions become the n examples.
    The K x C Pearson correlation matrix over those examples goes to :func:`assign_channels`.
    Requires K <= C.
    """
    ra, rb = _rows(a, "a"), _rows(b, "b")
    if ra.shape[0] != rb.shape[0]:
        raise ValueError(f"a and b cover different examples: {ra.shape[0]} vs {rb.shape[0]} rows")
    return assign_channels(_standardise(ra).T @ _standardise(rb))  # (K, C)


def assign_channels(corr: np.ndarray) -> dict:
    """One-to-one assignment of K rows to C >= K columns maximising total (signed) correlation.

    ``corr`` is (K, C) Pearson r (``scipy.optimize.linear_sum_assignment``). Returns
    ``{"assignment": (K,) int64 column for each row, "correlation": (K,) float64 matched r,
    "mean_correlation": float}``.
    """
    from scipy.optimize import linear_sum_assignment  # slow to import: only when matching

    corr = np.asarray(corr, dtype=np.float64)
    k, c = corr.shape
    if k > c:
        raise ValueError(f"cannot match {k} channels one-to-one into {c}")
    rows, cols = linear_sum_assignment(corr, maximize=True)
    assignment = np.empty(k, dtype=np.int64)
    assignment[rows] = cols
    matched = corr[np.arange(k), assignment]
    return {"assignment": assignment, "correlation": matched, "mean_correlation": float(matched.mean())}


class CorrelationAccumulator:
    """Streaming Pearson correlations between the p columns of X and the q columns of Y.

    Feed paired row batches (n_b, p) / (n_b, q) with :meth:`update`; :meth:`result` is the
    (p, q) matrix over all rows seen, equal to the one-shot value whatever the batching.
    Columns are shifted by the first batch's means for numerical stability; a constant
    column correlates 0 with everything.
    """

    def __init__(self, p: int, q: int):
        self.n = 0
        self._shift = None
        self._xty, self._sx, self._sy = np.zeros((p, q)), np.zeros(p), np.zeros(q)
        self._sxx, self._syy = np.zeros(p), np.zeros(q)

    def update(self, X: np.ndarray, Y: np.ndarray) -> None:
        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
        if self._shift is None:
            self._shift = (X.mean(axis=0), Y.mean(axis=0))
        X, Y = X - self._shift[0], Y - self._shift[1]
        self.n += X.shape[0]
        self._xty += X.T @ Y
        self._sx += X.sum(axis=0)
        self._sy += Y.sum(axis=0)
        self._sxx += np.einsum("ij,ij->j", X, X)
        self._syy += np.einsum("ij,ij->j", Y, Y)

    def result(self) -> np.ndarray:
        n = self.n
        cov = self._xty - np.outer(self._sx, self._sy) / n
        vx = self._sxx - self._sx**2 / n
        vy = self._syy - self._sy**2 / n
        scale = np.outer(vx, vy)
        tiny = 1e-12 * max(float(scale.max(initial=0.0)), 1e-300)
        return np.divide(cov, np.sqrt(scale), out=np.zeros_like(cov), where=scale > tiny)


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    """Channels-last example rows (n, channels) from (n, c), (c, H, W) or (N, c, H, W)."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x.reshape(x.shape[0], -1).T
    if x.ndim == 4:
        return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    raise ValueError(f"{name} must be (n, c), (c, H, W) or (N, c, H, W), got shape {x.shape}")


def _standardise(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit norm (float64), so that z_a^T z_b is Pearson r; constant -> 0."""
    z = np.asarray(x, dtype=np.float64)
    z = z - z.mean(axis=0)
    norm = np.sqrt((z * z).sum(axis=0))
    constant = np.ptp(x, axis=0) == 0
    scale = np.divide(1.0, norm, out=np.zeros_like(norm), where=~constant & (norm > 0))
    return z * scale
