"""The Jacobian J of a map f: R^n -> R^n at a point x: exact (dense), or its top-k singular
triplets from Jacobian-vector products only (the n x n matrix is never formed).

Pure math on a flat function ``f(x) -> y`` (both (n,) tensors); nothing here knows about
diffusion (``analysis/jacobian_map.py`` builds the denoiser's ``f``).

- :class:`Linearised`: J·V (forward mode, ``torch.func.jvp`` under ``vmap``) and Jᵀ·U (reverse
  mode: one forward pass kept, ``vmap`` over the pull-back), both in column chunks, so memory
  is bounded by the chunk whatever n is; it counts the products it makes. The chunk is either
  given or found (:class:`ChunkTuner`): the fastest batch differs by model (a small UNet: 8
  columns at a time; a U-ViT, whose batch-1 matmuls already run near the CPU's peak: 1).
- :func:`dense_jacobian`: the exact J from n pull-backs (one forward, then Jᵀ·I in chunks).
- :func:`top_singular`: block Golub–Kahan–Lanczos bidiagonalization with full
  reorthogonalization (Golub, Luk & Overton 1981; the block Krylov space of Musco & Musco
  2015): from a Gaussian block V₁, alternately J·V_j and Jᵀ·U_j, each new block orthogonalized
  against all earlier ones, so that J V = U G and Jᵀ U = V' H hold for the computed products
  (V' is V and the newest block). The Ritz triplets are the SVD of G = P Σ Qᵀ: u = U P, v = V Q.
  **Bound** (stated and tested): J v − σ̃ u = U(G q − σ̃ p) and Jᵀ u − σ̃ v = V'(H p − σ̃ q) are
  read from G and H with no further product; with r_j the norm of both together, the unit vector
  (u_j, v_j)/√2 has residual r_j/√2 for the symmetric [[0, J], [Jᵀ, 0]], whose eigenvalues are
  ±σ_i, so some singular value of J lies within ``bound_j = r_j/√2`` of σ̃_j; and σ̃_j ≤ σ_j
  since G is J compressed on both sides by orthonormal bases. The products' own float32
  rounding (~1e-7 relative) is outside the bound. A singular direction the random start
  missed entirely leaves no residual (no a-posteriori bound sees it); the Gaussian start makes
  that improbable (Halko et al. 2011 §10). Because the bounds cost nothing, ``rtol`` stops the
  iteration at the first step where every top-k bound is at most ``rtol`` times its value; once the
  bases span all n dimensions the triplets are exact.
- :func:`exact_symmetric` / :func:`hutchinson`: the symmetric part J_s = (J + Jᵀ)/2, its trace
  and the effective dimensionalities below, exactly from a dense J or estimated from products.

Effective dimensionality, two readings of the same eigenvalues λ_i of J_s:

- ``trace`` = Σλ_i = tr J (the divergence of f): for a denoiser that projects onto a d-dimensional
  subspace, J is that projection and tr J = d. Mohan et al. (ICLR 2020) and Kadkhodaie et al.
  (ICLR 2024, "Generalization in diffusion models arises from geometry-adaptive harmonic
  representations") read the denoiser's local adaptive-subspace dimension this way; it is
  also Stein's degrees of freedom of the denoiser (the divergence term of SURE).
- ``participation ratio`` PR = (Σλ_i)² / Σλ_i² = tr(J_s)² / ‖J_s‖_F² (Gao et al. 2017): also d for
  a rank-d projection, but scale-free, so it does not grow when every eigenvalue is multiplied
  by a constant (a denoiser output in other units); it counts a few large eigenvalues as few
  dimensions where the trace adds many small ones up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jvp, vjp, vmap

Fn = Callable[[torch.Tensor], torch.Tensor]


class ChunkTuner:
    """The number of products batched per ``vmap`` call, found by timing real work: sizes 1, 2,
    4, … up to ``largest``, each timed on two full blocks (the faster counts, so a first call's
    set-up does not), doubling while the time per column falls by more than 5 %; then the
    fastest size so far is kept. No column is computed twice: the timed blocks are the result.
    Results agree across chunk sizes to float32 rounding (~1e-7), not bit for bit, and the
    timing decides the sizes: two tuned runs may differ in the seventh digit, while two runs
    with one fixed ``--chunk`` are identical."""

    def __init__(self, largest: int = 64):
        self.sizes = [s for s in (1, 2, 4, 8, 16, 32, 64, 128, 256) if s <= largest] or [1]
        self.fixed: int | None = None
        self._at = 0
        self._best: dict[int, float] = {}  # size -> fastest seconds per column seen
        self._seen: dict[int, int] = {}

    @property
    def size(self) -> int:
        return self.fixed if self.fixed is not None else self.sizes[self._at]

    def record(self, size: int, columns: int, seconds: float) -> None:
        if self.fixed is not None or columns != size or size != self.sizes[self._at]:
            return  # a short last block says nothing about its size
        per = seconds / columns
        self._best[size] = min(per, self._best.get(size, math.inf))
        self._seen[size] = self._seen.get(size, 0) + 1
        if self._seen[size] < 2:
            return
        fastest = min(self._best, key=self._best.get)
        if self._at > 0 and self._best[size] > 0.95 * self._best[self.sizes[self._at - 1]]:
            self.fixed = fastest  # doubling stopped paying
        elif self._at + 1 == len(self.sizes):
            self.fixed = fastest
        else:
            self._at += 1


class Linearised:
    """f around x as the linear map J, through products only.

    ``matmat(V)`` = J V and ``rmatmat(U)`` = Jᵀ U for (n, b) column blocks, ``chunk`` columns
    at a time (``None``: found per direction by a :class:`ChunkTuner`). The forward pass for Jᵀ
    products is made once, on first use, and kept. ``products`` counts the columns pushed
    through either way; ``chunks`` gives the chunk each direction used last.
    """

    def __init__(self, f: Fn, x: torch.Tensor, *, chunk: int | None = None):
        if x.dim() != 1:
            raise ValueError(f"x must be flat (n,), got shape {tuple(x.shape)}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.f, self.x, self.chunk = f, x, chunk
        self.n = x.numel()
        self.products = 0
        self._pullback = None
        self._tuners = {"push": ChunkTuner(), "pull": ChunkTuner()}
        self.chunks: dict[str, int | None] = {"push": None, "pull": None}

    def _push(self, v: torch.Tensor) -> torch.Tensor:
        return jvp(self.f, (self.x,), (v,))[1]

    def _blocks(self, direction: str, cols: torch.Tensor, apply: Callable) -> torch.Tensor:
        """``apply`` (a vmapped product) over the rows of ``cols`` (b, n), chunk by chunk."""
        out, done, tuner = [], 0, self._tuners[direction]
        while done < len(cols):
            size = self.chunk or tuner.size
            block = cols[done : done + size]
            start = time.perf_counter()
            out.append(apply(block))
            if out[-1].is_cuda:  # time the kernels, not their launch
                torch.cuda.synchronize(out[-1].device)
            tuner.record(size, len(block), time.perf_counter() - start)
            self.chunks[direction] = size
            done += len(block)
        return torch.cat(out) if out else cols.new_zeros(0, self.n)

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """J V for V (n, b)."""
        cols = self._blocks("push", v.T, vmap(self._push))
        self.products += v.shape[1]
        return cols.T.contiguous()

    def rmatmat(self, u: torch.Tensor) -> torch.Tensor:
        """Jᵀ U for U (n, b)."""
        if self._pullback is None:
            _, self._pullback = vjp(self.f, self.x)
        pull = self._pullback
        cols = self._blocks("pull", u.T, vmap(lambda c: pull(c)[0]))
        self.products += u.shape[1]
        return cols.T.contiguous()

    def release(self) -> None:
        """Drop the kept forward pass (its activations)."""
        self._pullback = None


def dense_jacobian(f: Fn, x: torch.Tensor, *, chunk: int | None = None) -> torch.Tensor:
    """The exact Jacobian (n_out, n_in) of ``f`` at flat ``x`` (n_out = n_in): one forward, then the
    n pull-backs ``chunk`` at a time (``None``: the fastest chunk, found while computing)."""
    return jacobian_by_pullbacks(Linearised(f, x, chunk=chunk))


def jacobian_by_pullbacks(op: Linearised) -> torch.Tensor:
    """The dense J as (Jᵀ I)ᵀ through ``op`` (its products and chunks are counted there)."""
    eye = torch.eye(op.n, dtype=op.x.dtype, device=op.x.device)
    jac = op.rmatmat(eye).T.contiguous().detach()
    op.release()
    return jac


@dataclass
class Triplets:
    """Top-k singular triplets: J v_j ≈ s_j u_j, columns of ``u`` and ``v`` (n, k)."""

    u: torch.Tensor
    s: torch.Tensor
    v: torch.Tensor
    bound: torch.Tensor | None  # (k,): some singular value of J lies within bound_j of s_j; None: exact
    products: int = 0  # Jacobian-vector products made (both directions)
    steps: int = 0  # Krylov steps (one J·V and one Jᵀ·U block each); 0: exact
    converged: bool | None = None  # every bound <= rtol * s (None: no rtol asked)
    exact: bool = False  # the bases spanned all n dimensions: the values are exact to rounding


@dataclass
class SymmetricSummary:
    """The symmetric part's trace and Frobenius norm², and what follows from them."""

    trace: float
    frob_sym_sq: float  # ‖J_s‖_F² = Σλ_i²
    trace_se: float = 0.0  # standard errors; 0 when exact
    frob_sym_sq_se: float = 0.0
    asymmetry: float | None = None  # ‖J − Jᵀ‖_F / ‖J + Jᵀ‖_F (exact only)
    probes: int = 0  # Hutchinson probes; 0 when exact

    @property
    def participation_ratio(self) -> float:
        return participation_ratio_from(self.trace, self.frob_sym_sq)


def participation_ratio_from(trace: float, frob_sq: float) -> float:
    """(Σλ)² / Σλ²; NaN when every eigenvalue is 0."""
    return trace * trace / frob_sq if frob_sq > 0 else math.nan


def participation_ratio(eigenvalues: torch.Tensor) -> float:
    """(Σλ)² / Σλ² of a set of eigenvalues."""
    lam = eigenvalues.double()
    return participation_ratio_from(float(lam.sum()), float((lam * lam).sum()))


def exact_triplets(jac: torch.Tensor, k: int) -> Triplets:
    """The top-k singular triplets of a dense J (LAPACK's SVD, descending)."""
    u, s, vh = torch.linalg.svd(jac.double(), full_matrices=False)
    return Triplets(u=u[:, :k].float(), s=s[:k].float(), v=vh[:k].T.float(), bound=None)


def exact_symmetric(jac: torch.Tensor) -> tuple[torch.Tensor, SymmetricSummary]:
    """Eigenvalues of J_s (descending) and its exact summary."""
    j = jac.double()
    sym = (j + j.T) / 2
    lam = torch.linalg.eigvalsh(sym).flip(0)
    plus = torch.linalg.matrix_norm(j + j.T)
    asym = float(torch.linalg.matrix_norm(j - j.T) / plus) if plus > 0 else math.nan
    summary = SymmetricSummary(
        trace=float(torch.trace(j)), frob_sym_sq=float((lam * lam).sum()), asymmetry=asym
    )
    return lam.float(), summary


def _extend(
    basis: torch.Tensor, w: torch.Tensor, room: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the columns of ``w`` as ``basis @ c + q @ r``: q orthonormal, orthogonal to the
    orthonormal ``basis``, at most ``room`` columns (what is left of the space). Classical
    Gram-Schmidt twice, then an SVD of the rest (which keeps rank-deficient blocks exact) and a
    last projection so that q stays orthogonal to the basis to rounding. float64 throughout."""
    c = basis.T @ w
    w = w - basis @ c
    again = basis.T @ w
    w = w - basis @ again
    c = c + again
    p, s, qt = torch.linalg.svd(w, full_matrices=False)
    keep = min(p.shape[1], room)
    p, r = p[:, :keep], s[:keep, None] * qt[:keep]
    d = basis.T @ p
    q, r2 = torch.linalg.qr(p - basis @ d)
    return q, c + d @ r, r2 @ r


def top_singular(
    op: Linearised,
    k: int,
    *,
    block: int = 10,
    depth: int | None = None,
    rtol: float | None = 1e-3,
    seed: int = 0,
) -> Triplets:
    """Top-k singular triplets of J by block Golub–Kahan–Lanczos with a free residual bound per
    triplet (see the module doc). Each step makes ``block`` products J·V and ``block`` products
    Jᵀ·U (fewer once the bases near n). It stops at the first step where every
    ``bound_j ≤ rtol·σ̃_j``, after ``depth + 1`` steps (never before the bases hold k
    directions), or when the bases span all n dimensions, where the triplets are exact: at most
    about 2n products. Small blocks need fewer products in all than one block of k + a few (a
    deeper Krylov polynomial per product); larger ones batch more products per call."""
    n = op.n
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if rtol is None and depth is None:
        raise ValueError("give depth, rtol or both")
    if rtol is not None and not rtol > 0:
        raise ValueError(f"rtol must be > 0, got {rtol}")
    dtype, device, start = op.x.dtype, op.x.device, op.products
    b = min(n, block)
    max_steps = max(math.inf if depth is None else depth + 1, math.ceil(k / b))
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "device": device}
    v_basis = torch.linalg.qr(torch.randn(n, b, generator=g, dtype=torch.float64).to(device))[0]
    u_basis = torch.zeros(n, 0, **f64)
    gmat = torch.zeros(0, 0, **f64)  # Uᵀ J V_applied
    hmat = torch.zeros(b, 0, **f64)  # Jᵀ U = V hmat
    applied = 0  # columns of V that J has been applied to
    steps = 0
    ok = False
    while True:
        block_v = v_basis[:, applied:]
        w = op.matmat(block_v.to(dtype)).double()
        new_u, c, r = _extend(u_basis, w, n - u_basis.shape[1])
        gmat = torch.cat([torch.cat([gmat, c], 1), torch.cat([gmat.new_zeros(r.shape[0], applied), r], 1)])
        u_basis = torch.cat([u_basis, new_u], 1)
        applied = v_basis.shape[1]
        z = op.rmatmat(new_u.to(dtype)).double()
        new_v, c, r = _extend(v_basis, z, n - v_basis.shape[1])
        hmat = torch.cat([hmat, c], 1)
        hmat = torch.cat([hmat, torch.cat([hmat.new_zeros(r.shape[0], hmat.shape[1] - r.shape[1]), r], 1)])
        v_basis = torch.cat([v_basis, new_v], 1)
        steps += 1
        complete = u_basis.shape[1] >= n or new_v.shape[1] == 0
        if u_basis.shape[1] < k and not complete:
            continue
        p, s, qt = torch.linalg.svd(gmat, full_matrices=False)
        p, s, q = p[:, :k], s[:k], qt[:k].T
        # residuals from the recorded products: J v − σu = U(G q − σ p), Jᵀu − σv = V'(H p − σ q)
        left = gmat @ q - p * s
        right = hmat @ p
        right[: q.shape[0]] -= q * s
        bound = torch.sqrt((left**2).sum(0) + (right**2).sum(0)) / math.sqrt(2)
        ok = rtol is not None and bool((bound <= rtol * s).all())
        if ok or complete or steps >= max_steps:
            break
    u = u_basis @ p
    v = v_basis[:, : q.shape[0]] @ q
    return Triplets(
        u=u.to(dtype),
        s=s.to(dtype),
        v=v.to(dtype),
        bound=bound.to(dtype),
        products=op.products - start,
        steps=steps,
        converged=None if rtol is None else ok,
        exact=complete,
    )


def hutchinson(op: Linearised, probes: int, *, seed: int = 0) -> SymmetricSummary:
    """tr J and ‖J_s‖_F² from ``probes`` Rademacher vectors z: E[zᵀJz] = tr J and
    E‖J_s z‖² = ‖J_s‖_F² (Hutchinson 1990), each with its standard error over probes.
    Costs ``probes`` products each way."""
    if probes < 2:
        raise ValueError(f"need at least 2 probes for a standard error, got {probes}")
    g = torch.Generator().manual_seed(seed)
    z = (torch.randint(0, 2, (op.n, probes), generator=g) * 2 - 1).to(op.x)
    jz = op.matmat(z).double()
    jtz = op.rmatmat(z).double()
    zd = z.double()
    tr = (zd * jz).sum(0)
    fs = (((jz + jtz) / 2) ** 2).sum(0)

    def se(a: torch.Tensor) -> float:
        return float(a.std(unbiased=True) / math.sqrt(a.numel()))

    return SymmetricSummary(
        trace=float(tr.mean()),
        frob_sym_sq=float(fs.mean()),
        trace_se=se(tr),
        frob_sym_sq_se=se(fs),
        probes=probes,
    )
