"""Linear CKA over images x positions with a bootstrap interval over images and a
mismatched-image null, streamed one image at a time.

Examples (rows) are every position of every image, so rows of one image are not
independent: nearby positions are correlated, and the unbiased HSIC assumes independent rows.
Measured on *independent* smooth random fields (5 images of 32 x 32, 32 channels) with lag-1
autocorrelation 0.51 / 0.77 / 0.89, the debiased CKA reads 0.008 / 0.031 / 0.074, not 0; a
positional pattern that every image shares (aligned faces) adds more. Two calibrations
follow from the image being the unit:

- **Interval**: a percentile bootstrap that resamples *images*, never positions. Image i's
  feature-space sums go to group i G // N (G = min(N images, ``groups``), contiguous blocks,
  so a chunk of consecutive images usually adds to one group at once); a bootstrap draw
  takes G groups with replacement, so each draw is an i.i.d. resample of groups of images.
  Measured coverage of the 95 % interval (600 simulated studies per n, images with
  correlated positions, ``benchmarks/cka_interval_coverage.py``): 82.2 % with 5 images,
  88.7 % with 8, 88.8 % with 12 and 93.3 % with 40 (an earlier BCa trial did no better).
  Below 5 images there is no interval.
  Linear CKA is a polynomial of degree <= 3 in the group weights (module docstring of
  :mod:`~ddpm_lens.analysis.similarity`), so all draws are evaluated from G x G (x G) tables
  without re-summing any matrix.
- **Null**: model A's features of image i against model B's features of image pi(i) != i,
  at the same positions: what CKA reads for *unrelated* inputs that share the dataset's
  positional statistics (faces are aligned). pi(i) = i + s mod N for s = 1..``null_shifts``,
  each a derangement; the null is the mean of their debiased CKAs. Consecutive images are
  paired, so a dataset whose neighbours are related (video frames) reads a higher null. Its
  cross products are float32 (relative error ~1e-7, ample for a reference level; half the
  cost of float64).

Memory per layer x condition: G (p^2 + q^2 + p q) float64 for the groups, plus p q and
two images' rows per null shift. With G = 16 that is 16 x 1.5 MB = 25 MB for a 256-channel
layer, 453 MB for the six seed layers x 4 conditions of the full-size CelebA-64 pair,
whatever the number of images.
"""

from __future__ import annotations

import numpy as np

from ddpm_lens.analysis.similarity import centred_frobenius_sq

MAIN_PAIR = "baseline_vs_curriculum"  # cka rows' "pair" of the two models the figures draw
MAX_GROUPS = 16  # the bootstrap's units: images pooled into at most this many groups (memory bound)
MIN_GROUPS = 5  # fewer images give no interval: a bootstrap over 2-4 units says little
NULL_SHIFTS = 1  # derangements pi(i) = i + s, s = 1..NULL_SHIFTS, averaged for the null
RESAMPLES = 1000
CONFIDENCE = 0.95


class ImageCKA:
    """Feed one image at a time with :meth:`update` (images 0..images-1, in order); read
    :meth:`result`."""

    def __init__(
        self, p: int, q: int, *, images: int, groups: int = MAX_GROUPS, null_shifts: int = NULL_SHIFTS
    ):
        if images < 1:
            raise ValueError(f"images must be >= 1, got {images}")
        self.p, self.q, self.images = p, q, images
        self.g = min(images, groups)
        self.n = np.zeros(self.g)  # rows per group
        self.xty, self.xtx, self.yty = (
            np.zeros((self.g, p, q)),
            np.zeros((self.g, p, p)),
            np.zeros((self.g, q, q)),
        )
        self.sx, self.sy = np.zeros((self.g, p)), np.zeros((self.g, q))  # sum x, sum y
        self.kx, self.ky = np.zeros((self.g, p)), np.zeros((self.g, q))  # sum k x, sum k y (k = |x|^2)
        self.lx, self.ly = np.zeros((self.g, p)), np.zeros((self.g, q))  # sum l x, sum l y (l = |y|^2)
        self.sk, self.sl = np.zeros(self.g), np.zeros(self.g)
        self.skk, self.sll, self.skl = np.zeros(self.g), np.zeros(self.g), np.zeros(self.g)
        self.shifts = [s for s in range(1, null_shifts + 1) if s < images]
        self.null = {s: _Cross(p, q) for s in self.shifts}
        self._recent: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # the last images' A rows, for the null
        self._first_y: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # images 0..s-1: (Y, l)
        self._shift = None
        self.seen = 0

    def update(self, first: int, X: np.ndarray, Y: np.ndarray) -> None:
        """Add images ``first``, ``first + 1``, ...: X (n, m, p) and Y (n, m, q) rows per image
        (e.g. (n, H*W, C) views of channels-last activations), float32 or float64; one image
        may come as (m, p) and (m, q)."""
        X, Y = np.asarray(X), np.asarray(Y)
        if X.ndim == 2:
            X, Y = X[None], Y[None]
        if X.ndim != 3 or X.shape[:2] != Y.shape[:2] or X.shape[2] != self.p or Y.shape[2] != self.q:
            raise ValueError(
                f"expected (n, m, {self.p}) and (n, m, {self.q}) rows, got {X.shape} and {Y.shape}"
            )
        if first != self.seen:
            raise ValueError(f"images must come in order: expected {self.seen}, got {first}")
        if first + len(X) > self.images:
            raise ValueError(f"more images than the {self.images} announced")
        if self._shift is None:  # both estimators ignore a constant shift; this keeps sums well conditioned
            self._shift = (X[0].mean(axis=0, dtype=np.float64), Y[0].mean(axis=0, dtype=np.float64))
        X = np.subtract(X, self._shift[0], dtype=np.float64)  # (n, m, p)
        Y = np.subtract(Y, self._shift[1], dtype=np.float64)
        k, l = np.einsum("nij,nij->ni", X, X), np.einsum("nij,nij->ni", Y, Y)  # (n, m)
        groups = (first + np.arange(len(X))) * self.g // self.images  # contiguous blocks of images
        for g in np.unique(groups):
            rows = slice(int(np.argmax(groups == g)), int(len(groups) - np.argmax(groups[::-1] == g)))
            x, y = X[rows].reshape(-1, self.p), Y[rows].reshape(-1, self.q)  # the group's images
            kg, lg = k[rows].reshape(-1), l[rows].reshape(-1)
            self.n[g] += len(x)
            self.xty[g] += x.T @ y
            self.xtx[g] += x.T @ x
            self.yty[g] += y.T @ y
            self.sx[g] += x.sum(axis=0)
            self.sy[g] += y.sum(axis=0)
            self.kx[g] += kg @ x
            self.ky[g] += kg @ y
            self.lx[g] += lg @ x
            self.ly[g] += lg @ y
            self.sk[g] += kg.sum()
            self.sl[g] += lg.sum()
            self.skk[g] += kg @ kg
            self.sll[g] += lg @ lg
            self.skl[g] += kg @ lg
        # the null's pairs (A's image j - s, B's image j): one more X^T Y product each, in float32
        # (a reference level: its trace term keeps ~1e-6 relative precision, ample for it)
        pairs = self._null_pairs(first, X, k, Y, l)
        if pairs:
            a = np.stack([pair[1] for pair in pairs]).astype(np.float32)
            b = np.stack([pair[3] for pair in pairs]).astype(np.float32)
            products = np.matmul(a.transpose(0, 2, 1), b).astype(np.float64)  # (pairs, p, q)
            for (s, a, ka, b, lb), product in zip(pairs, products):
                self.null[s].add(product, a, ka, b, lb)
        self.seen += len(X)

    def _null_pairs(self, first: int, X, k, Y, l) -> list:
        """(s, A rows, k, B rows, l) for each pair this batch completes: B's image j with A's
        image j - s, and, in the last images, A's image j with B's image j + s - N (kept from
        the start); keeps the rows later pairs need."""
        pairs = []
        depth = max(self.shifts, default=0)
        for i in range(len(X)):
            j = first + i
            for s in self.shifts:
                partner = self._recent.get(j - s)
                if partner is not None:
                    pairs.append((s, partner[0], partner[1], Y[i], l[i]))
                start = self._first_y.get(j + s - self.images)
                if start is not None:
                    pairs.append((s, X[i], k[i], start[0], start[1]))
            if j < depth:
                self._first_y[j] = (Y[i], l[i])
            if depth:
                self._recent[j] = (X[i], k[i])
                self._recent.pop(j - depth, None)
        return pairs

    def result(self, *, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0) -> dict:
        """``{"cka_debiased", "cka_biased", "cka_ci_low", "cka_ci_high", "cka_null", "n_images",
        "n_examples"}``; an undefined value is NaN (the interval needs ``MIN_GROUPS`` images, the
        null two and every image seen)."""
        if self.seen == 0:
            raise ValueError("CKA of no images; call update() first")
        n = self.n.sum()
        with_interval = self.g >= MIN_GROUPS and self.seen >= MIN_GROUPS
        weights = np.ones((1, self.g))  # row 0: all the data; then one row per bootstrap draw
        if with_interval:
            draws = np.random.default_rng(seed).multinomial(
                self.g, np.full(self.g, 1 / self.g), size=resamples
            )
            weights = np.concatenate([weights, draws.astype(np.float64)])
        xy, xx, yy = (self._hsic(kind, weights) for kind in ("xy", "xx", "yy"))  # (1 + draws,) each
        debiased = _ratio(xy[0], xx[0], yy[0]) if n >= 4 else float("nan")
        total = {name: getattr(self, name).sum(axis=0) for name in ("xty", "xtx", "yty", "sx", "sy")}
        biased = _ratio(
            centred_frobenius_sq(total["xty"], total["sx"], total["sy"], n),
            centred_frobenius_sq(total["xtx"], total["sx"], total["sx"], n),
            centred_frobenius_sq(total["yty"], total["sy"], total["sy"], n),
        )
        low = high = null = float("nan")
        if with_interval and np.isfinite(debiased):
            boot = _ratio(xy[1:], xx[1:], yy[1:])  # percentile bootstrap over groups of images
            boot = boot[np.isfinite(boot)]
            if len(boot):
                tail = 100 * (1 - confidence) / 2
                low, high = (float(v) for v in np.percentile(boot, [tail, 100 - tail]))
        if self.shifts and self.seen == self.images and np.isfinite(debiased):
            null = float(np.mean([_ratio(self._null_hsic(s), xx[0], yy[0]) for s in self.shifts]))
        return {
            "cka_debiased": float(debiased),
            "cka_biased": float(biased),
            "cka_ci_low": low,
            "cka_ci_high": high,
            "cka_null": null,
            "n_images": self.seen,
            "n_examples": int(n),
        }

    def _tables(self, kind: str):
        """The group sums of one HSIC term: cross (G, a, b), sa, sb, ka_b, kb_a, s_ka, s_kb, s_kakb."""
        if kind == "xy":
            return self.xty, self.sx, self.sy, self.ky, self.lx, self.sk, self.sl, self.skl
        if kind == "xx":
            return self.xtx, self.sx, self.sx, self.kx, self.kx, self.sk, self.sk, self.skk
        return self.yty, self.sy, self.sy, self.ly, self.ly, self.sl, self.sl, self.sll

    def _hsic(self, kind: str, w: np.ndarray) -> np.ndarray:
        """Unbiased HSIC for each row of group weights ``w`` (R, G) (a row of ones: all the data).

        Every term of the feature-space formula is a sum over rows, so with the rows of group
        g counted w_g times it is linear, quadratic or (1^T K~ L~ 1) cubic in w.
        """
        cross, sa, sb, ka_b, kb_a, s_ka, s_kb, s_kakb = self._tables(kind)
        g = self.g
        flat = cross.reshape(g, -1)
        frob = flat @ flat.T  # <C_g, C_h>
        cubic = np.einsum("gp,hpk->ghk", sa, cross @ sb.T)  # sa_g^T C_h sb_k
        n = w @ self.n

        def quad(m):  # w^T m w per row, as matrix products
            return np.sum((w @ m) * w, axis=1)

        trace = quad(frob) - w @ s_kakb
        ones_k = quad(sa @ sa.T) - w @ s_ka
        ones_l = quad(sb @ sb.T) - w @ s_kb
        by_g = (w @ cubic.reshape(g, g * g)).reshape(-1, g, g)  # sum_g w_g T_ghk: (R, G, G)
        ones_kl = np.sum(np.matmul(by_g, w[:, :, None])[:, :, 0] * w, axis=1)
        ones_kl = ones_kl - quad(ka_b @ sb.T) - quad(kb_a @ sa.T) + w @ s_kakb
        with np.errstate(divide="ignore", invalid="ignore"):
            return (trace + ones_k * ones_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * ones_kl) / (n * (n - 3))

    def _null_hsic(self, s: int) -> float:
        """Unbiased HSIC of A's rows against B's rows of the image s further on (all data)."""
        c = self.null[s]
        n = self.n.sum()
        sa, sb = self.sx.sum(axis=0), self.sy.sum(axis=0)
        trace = np.sum(c.xty * c.xty) - c.skl
        ones_k = sa @ sa - self.sk.sum()
        ones_l = sb @ sb - self.sl.sum()
        ones_kl = sa @ c.xty @ sb - c.ky @ sb - c.lx @ sa + c.skl
        return (trace + ones_k * ones_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * ones_kl) / (n * (n - 3))


class _Cross:
    """The sums that change when B's rows come from another image: sum x y'^T, sum k y',
    sum l' x and sum k l'."""

    def __init__(self, p: int, q: int):
        self.xty, self.ky, self.lx, self.skl = np.zeros((p, q)), np.zeros(q), np.zeros(p), 0.0

    def add(self, product, X, k, Y, l) -> None:
        """Add one pair of images: ``product`` = X^T Y, already computed."""
        self.xty += product
        self.ky += np.einsum("i,iq->q", k, Y)
        self.lx += np.einsum("i,ip->p", l, X)
        self.skl += float(np.einsum("i,i->", k, l))


def _ratio(xy, xx, yy):
    """xy / sqrt(xx yy), NaN where a self-term is not positive (arrays or floats)."""
    xy, xx, yy = (np.asarray(v, dtype=np.float64) for v in (xy, xx, yy))
    ok = (xx > 0) & (yy > 0)
    out = np.divide(xy, np.sqrt(np.where(ok, xx * yy, 1.0)), out=np.full(np.shape(xy), np.nan), where=ok)
    return float(out) if out.ndim == 0 else out
