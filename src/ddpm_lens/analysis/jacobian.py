"""The Jacobian J of a map f: R^n -> R^n at a point x: exact (dense), or its top-k singular
triplets from Jacobian-vector products only (the n x n matrix is never formed).

Pure math on a flat function ``f(x) -> y`` (both (n,) tensors); nothing here knows about
diffusion (``analysis/jacobian_map.py`` builds the denoiser's ``f``).

- :class:`Linearised`: J·V (forward mode, ``torch.func.jvp`` under ``vmap``) and Jᵀ·U (reverse
  mode: one forward pass kept, ``vmap`` over the pull-back), both in column chunks, so memory
  is bounded by ``chunk`` whatever n is; it counts the products it makes.
- :func:`dense_jacobian`: the exact J, ``torch.func.jacrev`` with ``chunk_size`` (one forward,
  then the n pull-backs batched ``chunk`` at a time).
- :func:`top_singular`: randomized block Krylov SVD (Halko, Martinsson & Tropp 2011, alg. 4.4
  with the Krylov block of Musco & Musco 2015): Q spans [JΩ, (JJᵀ)JΩ, …], B = QᵀJ from Jᵀ·Q,
  SVD of B, then each triplet's residual. **Bound** (stated and tested): with
  r_j = ‖J v_j − σ̃_j u_j‖ (Jᵀu_j − σ̃_j v_j is zero by construction), the unit vector
  (u_j, v_j)/√2 has residual r_j/√2 for the symmetric [[0, J], [Jᵀ, 0]], whose eigenvalues
  are ±σ_i, so some singular value of J lies within ``bound_j = r_j/√2`` of σ̃_j; and σ̃_j ≤ σ_j
  since B is J compressed by an orthonormal Q. A singular direction the random start missed
  entirely leaves no residual (no a-posteriori bound sees it); the Gaussian start makes that
  improbable (Halko et al. 2011 §10).
- :func:`exact_spectrum` / :func:`hutchinson`: the symmetric part J_s = (J + Jᵀ)/2, its trace
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
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jacrev, jvp, vjp, vmap

Fn = Callable[[torch.Tensor], torch.Tensor]


class Linearised:
    """f around x as the linear map J, through products only.

    ``matmat(V)`` = J V and ``rmatmat(U)`` = Jᵀ U for (n, b) column blocks, ``chunk`` columns
    at a time. The forward pass for Jᵀ products is made once, on first use, and kept.
    ``products`` counts the columns pushed through either way.
    """

    def __init__(self, f: Fn, x: torch.Tensor, *, chunk: int = 32):
        if x.dim() != 1:
            raise ValueError(f"x must be flat (n,), got shape {tuple(x.shape)}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.f, self.x, self.chunk = f, x, chunk
        self.n = x.numel()
        self.products = 0
        self._pullback = None

    def _push(self, v: torch.Tensor) -> torch.Tensor:
        return jvp(self.f, (self.x,), (v,))[1]

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """J V for V (n, b)."""
        cols = [vmap(self._push)(block) for block in v.T.split(self.chunk)]
        self.products += v.shape[1]
        return torch.cat(cols).T.contiguous()

    def rmatmat(self, u: torch.Tensor) -> torch.Tensor:
        """Jᵀ U for U (n, b)."""
        if self._pullback is None:
            _, self._pullback = vjp(self.f, self.x)
        pull = self._pullback
        cols = [vmap(lambda c: pull(c)[0])(block) for block in u.T.split(self.chunk)]
        self.products += u.shape[1]
        return torch.cat(cols).T.contiguous()

    def release(self) -> None:
        """Drop the kept forward pass (its activations)."""
        self._pullback = None


def dense_jacobian(f: Fn, x: torch.Tensor, *, chunk: int = 32) -> torch.Tensor:
    """The exact Jacobian (n_out, n_in) of ``f`` at flat ``x``: one forward, ``chunk`` pull-backs at once."""
    return jacrev(f, chunk_size=chunk)(x).detach()


@dataclass
class Triplets:
    """Top-k singular triplets: J v_j ≈ s_j u_j, columns of ``u`` and ``v`` (n, k)."""

    u: torch.Tensor
    s: torch.Tensor
    v: torch.Tensor
    bound: torch.Tensor | None  # (k,): some singular value of J lies within bound_j of s_j; None: exact
    products: int = 0  # Jacobian-vector products made (both directions)


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


def _orth(a: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of a's columns (reduced QR, in float64)."""
    return torch.linalg.qr(a.double(), mode="reduced")[0]


def top_singular(op: Linearised, k: int, *, oversample: int = 10, depth: int = 2, seed: int = 0) -> Triplets:
    """Top-k singular triplets of J by randomized block Krylov SVD, with a residual bound per
    triplet (see the module doc). Block b = k + ``oversample`` (at most n); ``depth`` Krylov
    steps, each one Jᵀ and one J product of b columns; the basis has b·(depth + 1) columns (at
    most n); then Jᵀ of the basis and J of the k right vectors for the bounds. Products made:
    b·(2·depth + 1) + b·(depth + 1) + k, fewer when the basis reaches n."""
    n = op.n
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    dtype, start = op.x.dtype, op.products
    b = min(n, k + oversample)
    g = torch.Generator().manual_seed(seed)
    omega = torch.randn(n, b, generator=g, dtype=torch.float64).to(op.x.device)
    y = op.matmat(omega.to(dtype)).double()
    blocks = [_orth(y)]
    for _ in range(depth):
        if sum(q.shape[1] for q in blocks) >= n:
            break
        z = _orth(op.rmatmat(blocks[-1].to(dtype)).double())
        y = op.matmat(z.to(dtype)).double()
        # orthogonalise the new block against the basis so far (twice: classical Gram-Schmidt)
        basis = torch.cat(blocks, dim=1)
        for _ in range(2):
            y = y - basis @ (basis.T @ y)
        blocks.append(_orth(y))
    q = torch.cat(blocks, dim=1)[:, :n]
    q = _orth(q)
    bt = op.rmatmat(q.to(dtype)).double()  # Jᵀ Q = Bᵀ, (n, m)
    ub, s, vbt = torch.linalg.svd(bt.T, full_matrices=False)
    u = q @ ub[:, :k]
    v = vbt[:k].T
    s = s[:k]
    residual = op.matmat(v.to(dtype)).double() - u * s
    bound = torch.linalg.vector_norm(residual, dim=0) / math.sqrt(2)
    return Triplets(
        u=u.to(dtype), s=s.to(dtype), v=v.to(dtype), bound=bound.to(dtype), products=op.products - start
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
