"""The Jacobian's math on maps whose answer is known: linear maps, a 1×1-conv network, finite differences."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lens.analysis.jacobian import (
    ChunkTuner,
    Linearised,
    dense_jacobian,
    exact_symmetric,
    exact_triplets,
    hutchinson,
    participation_ratio,
    top_singular,
)


def _matrix(n: int, *, decay: float = 0.9, seed: int = 0) -> torch.Tensor:
    """A nonsymmetric n×n matrix with singular values decay**i (known) and random singular vectors."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    s = decay ** torch.arange(n, dtype=torch.float64)
    return u @ torch.diag(s) @ v.T, s


def test_exact_path_returns_a_linear_maps_spectrum():
    a, s = _matrix(48)
    a32 = a.float()
    jac = dense_jacobian(lambda x: a32 @ x, torch.randn(48), chunk=7)
    assert torch.allclose(jac, a32, atol=1e-6)
    t = exact_triplets(jac, 10)
    assert torch.allclose(t.s.double(), s[:10], atol=1e-5)
    lam, summary = exact_symmetric(jac)
    sym = (a + a.T) / 2
    assert torch.allclose(lam.double(), torch.linalg.eigvalsh(sym).flip(0), atol=1e-5)
    assert summary.trace == pytest.approx(float(torch.trace(a)), abs=1e-5)
    assert summary.participation_ratio == pytest.approx(participation_ratio(lam), rel=1e-6)


def test_fast_path_top_k_within_its_bound_and_close():
    a, s = _matrix(120, decay=0.93, seed=1)
    a32 = a.float()
    op = Linearised(lambda x: a32 @ x, torch.randn(120), chunk=16)
    k = 12
    t = top_singular(op, k, block=20, depth=2, rtol=None, seed=3)
    err = (t.s.double() - s[:k]).abs()
    assert (err <= t.bound.double() + 1e-6).all()  # the stated bound holds against the known spectrum
    assert (t.s.double() <= s[:k] + 1e-5).all()  # Ritz values never exceed the true ones
    assert err.max() < 1e-3
    # the singular vectors span the true ones (up to sign)
    u_true = torch.linalg.svd(a)[0][:, :k]
    overlap = (u_true.T @ t.u.double()).abs().diagonal()
    assert overlap.min() > 0.99
    assert t.products == 2 * 20 * 3 and t.steps == 3  # 2·b·(depth + 1), as documented
    assert t.converged is None


def test_fast_path_bound_is_honest_when_the_subspace_is_too_small():
    """A flat spectrum with no Krylov steps: values are off, and the bound says by how much."""
    a, s = _matrix(100, decay=0.995, seed=2)
    op = Linearised(lambda x: a.float() @ x, torch.randn(100))
    t = top_singular(op, 10, block=12, depth=0, rtol=None, seed=0)
    err = (t.s.double() - s[:10]).abs()
    assert err.max() > 1e-3  # not converged...
    # ...and each value is within its bound of some singular value of A
    dist = (t.s.double()[:, None] - s[None, :]).abs().min(1).values
    assert (dist <= t.bound.double() + 1e-6).all()


def test_bound_is_the_true_residual_of_each_triplet():
    """The bound is read from the recorded products, never computed by another product: it
    must equal the explicit residual of (u, v) for the symmetric dilation."""
    a, _ = _matrix(90, decay=0.97, seed=7)
    a32 = a.float()
    op = Linearised(lambda x: a32 @ x, torch.randn(90), chunk=9)
    t = top_singular(op, 8, block=12, depth=1, rtol=None, seed=1)
    u, v, s = t.u.double(), t.v.double(), t.s.double()
    explicit = torch.sqrt(((a @ v - u * s) ** 2).sum(0) + ((a.T @ u - v * s) ** 2).sum(0)) / math.sqrt(2)
    assert torch.allclose(t.bound.double(), explicit, atol=2e-6)
    assert explicit.max() > 1e-3  # one step on a slow decay: the residuals are not trivially 0
    assert op.products == t.products == 2 * 12 * 2


def test_rtol_stops_as_soon_as_every_bound_is_within_it():
    a, s = _matrix(200, decay=0.8, seed=8)
    a32 = a.float()
    loose, tight = (
        top_singular(Linearised(lambda x: a32 @ x, torch.randn(200)), 10, block=15, rtol=r)
        for r in (1e-2, 1e-5)
    )
    for t, rtol in ((loose, 1e-2), (tight, 1e-5)):
        assert t.converged is True
        assert (t.bound <= rtol * t.s).all()
        err = (t.s.double() - s[:10]).abs() / s[:10]
        assert (err <= rtol + 1e-6).all()  # the values are as close as the bounds promised
    assert loose.steps < tight.steps  # a looser tolerance stopped earlier...
    assert tight.products < 200  # ...and even the tight one made fewer products than n pull-backs


def test_rtol_on_a_flat_spectrum_runs_to_the_full_space_and_is_then_exact():
    a, s = _matrix(60, decay=0.998, seed=9)
    a32 = a.float()
    t = top_singular(Linearised(lambda x: a32 @ x, torch.randn(60)), 10, block=15, rtol=1e-9)
    assert t.converged is False  # float32 products cannot certify 1e-9...
    assert t.steps == 4 and t.exact  # ...so it ran until the bases held all 60 dimensions (15 per step)
    assert torch.allclose(t.s.double(), s[:10], rtol=1e-5)  # where the values are exact
    op = Linearised(lambda x: a32 @ x, torch.randn(60))
    capped = top_singular(op, 10, block=15, depth=1, rtol=1e-9)
    assert capped.steps == 2 and capped.converged is False and not capped.exact  # depth caps the steps


def test_small_blocks_reach_the_tolerance_with_fewer_products_and_still_give_k_triplets():
    a, s = _matrix(300, decay=0.985, seed=11)
    a32 = a.float()
    runs = {
        b: top_singular(Linearised(lambda x: a32 @ x, torch.randn(300)), 20, block=b, rtol=1e-4)
        for b in (4, 30)
    }
    for t in runs.values():
        assert t.converged and len(t.s) == 20
        assert ((t.s.double() - s[:20]).abs() / s[:20]).max() <= 1e-4
    assert runs[4].products < runs[30].products  # the deeper polynomial pays per product
    one = top_singular(Linearised(lambda x: a32 @ x, torch.randn(300)), 20, block=4, depth=0, rtol=None)
    assert one.steps == 5 and len(one.s) == 20  # depth 0, but 5 steps are needed to hold 20 directions


def test_rank_deficient_map_returns_its_zero_singular_values():
    g = torch.Generator().manual_seed(10)
    q = torch.linalg.qr(torch.randn(40, 4, generator=g))[0]
    p = q @ q.T
    t = top_singular(Linearised(lambda x: p @ x, torch.zeros(40)), 6, block=10, depth=3, rtol=None)
    assert torch.allclose(t.s[:4], torch.ones(4), atol=1e-5)
    assert t.s[4:].abs().max() < 1e-5
    assert torch.isfinite(t.u).all() and torch.isfinite(t.bound).all()


def test_chunk_tuner_doubles_while_it_pays_then_keeps_the_fastest():
    tuner = ChunkTuner(largest=64)
    per_column = {1: 10.0, 2: 6.0, 4: 5.0, 8: 5.5, 16: 1.0}  # 16 would be faster, but 8 did not pay
    seen = []
    while tuner.fixed is None:
        size = tuner.size
        seen.append(size)
        tuner.record(size, size, per_column[size] * size)
    assert seen == [1, 1, 2, 2, 4, 4, 8, 8]
    assert tuner.size == 4
    short = ChunkTuner(largest=4)
    short.record(1, 1, 1.0)
    short.record(1, 0, 0.0)  # a short block: ignored
    assert short.size == 1 and short.fixed is None


def test_tuned_chunks_give_the_fixed_chunks_columns():
    f = _tanh_net(3)
    x = torch.randn(12)
    tuned = Linearised(f, x)
    fixed = Linearised(f, x, chunk=5)
    v = torch.randn(12, 40)
    assert torch.allclose(tuned.matmat(v), fixed.matmat(v), atol=1e-6)
    assert torch.allclose(tuned.rmatmat(v), fixed.rmatmat(v), atol=1e-6)
    assert fixed.chunks == {"push": 5, "pull": 5}
    again = Linearised(f, x, chunk=5)
    assert torch.equal(again.rmatmat(v), fixed.rmatmat(v))  # a fixed chunk repeats bit for bit
    assert set(tuned.chunks.values()) <= {1, 2, 4, 8, 16}


def test_symmetric_map_gives_its_eigendecomposition():
    a, _ = _matrix(30, seed=4)
    sym = ((a + a.T) / 2).float()
    lam, summary = exact_symmetric(dense_jacobian(lambda x: sym @ x, torch.zeros(30)))
    assert summary.asymmetry == pytest.approx(0.0, abs=1e-7)
    assert torch.allclose(lam, torch.linalg.eigvalsh(sym.double()).flip(0).float(), atol=1e-5)


def test_projection_has_trace_and_participation_ratio_equal_to_its_rank():
    g = torch.Generator().manual_seed(5)
    q = torch.linalg.qr(torch.randn(40, 7, generator=g))[0]
    p = q @ q.T
    lam, summary = exact_symmetric(dense_jacobian(lambda x: p @ x, torch.zeros(40)))
    assert summary.trace == pytest.approx(7, abs=1e-5)
    assert summary.participation_ratio == pytest.approx(7, abs=1e-4)
    # twice the projection: the trace doubles, the participation ratio does not move
    assert participation_ratio(2 * lam) == pytest.approx(7, abs=1e-4)


def test_hutchinson_estimates_trace_and_frobenius_within_a_few_standard_errors():
    a, _ = _matrix(64, decay=0.97, seed=6)
    a = a + torch.eye(64, dtype=torch.float64) * 0.5  # a sizeable trace
    a32 = a.float()
    est = hutchinson(Linearised(lambda x: a32 @ x, torch.zeros(64)), 400, seed=1)
    sym = (a + a.T) / 2
    assert abs(est.trace - float(torch.trace(a))) < 4 * est.trace_se
    assert abs(est.frob_sym_sq - float((sym * sym).sum())) < 4 * est.frob_sym_sq_se
    assert est.trace_se > 0


def _tanh_net(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(20, 12, generator=g) / 3, torch.randn(12, 20, generator=g) / 3
    return lambda x: w2 @ torch.tanh(w1 @ x + 0.3) + x * x


def test_products_match_finite_differences():
    f = _tanh_net()
    x = torch.randn(12, dtype=torch.float64)
    f64 = lambda z: f(z.float()).double() if z.dtype != torch.float32 else f(z)  # noqa: E731
    g = torch.Generator().manual_seed(1)
    v = torch.randn(12, 3, generator=g)
    u = torch.randn(12, 3, generator=g)
    op = Linearised(f, x.float())
    jv, jtu = op.matmat(v), op.rmatmat(u)
    h = 1e-3
    for i in range(3):  # central differences in float64 through the same function
        fd = (f64(x + h * v[:, i].double()) - f64(x - h * v[:, i].double())) / (2 * h)
        assert torch.allclose(jv[:, i].double(), fd, atol=2e-3)
    # Jᵀu by duality: <u, J e_j> for each basis vector e_j
    jac_fd = torch.stack(
        [(f64(x + h * e) - f64(x - h * e)) / (2 * h) for e in torch.eye(12, dtype=torch.float64)], 1
    )
    assert torch.allclose(jtu.double(), jac_fd.T @ u.double(), atol=2e-3)
    assert op.products == 6


def test_one_by_one_conv_network_is_block_diagonal_with_localised_vectors():
    """A network of 1×1 convs and pointwise nonlinearities mixes channels within each pixel and
    never across pixels: its Jacobian is block-diagonal (3×3 per pixel) and each singular vector
    lives on one pixel."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.SiLU(), torch.nn.Conv2d(8, 3, 1)).eval()
    net.requires_grad_(False)
    h = w = 4
    f = lambda x: net(x.reshape(1, 3, h, w)).reshape(-1)  # noqa: E731
    x = torch.randn(3 * h * w)
    jac = dense_jacobian(f, x, chunk=5)
    pix = torch.arange(3 * h * w) % (h * w)  # channel-major layout: index c*h*w + p
    off_block = jac[pix[:, None] != pix[None, :]]
    assert off_block.abs().max() == 0
    t = exact_triplets(jac, 6)
    for j in range(6):
        mass = torch.zeros(h * w).index_add_(0, pix, t.u[:, j] ** 2)
        assert mass.max() == pytest.approx(1.0, abs=1e-5)  # all of it on one pixel
    # and the fast path finds the same top values
    fast = top_singular(Linearised(f, x, chunk=8), 6, block=16, depth=3, rtol=None)
    assert torch.allclose(fast.s, t.s, atol=float(fast.bound.max()) + 1e-5)


def test_bad_arguments():
    op = Linearised(lambda x: x, torch.zeros(5))
    with pytest.raises(ValueError, match="k must be in 1..5"):
        top_singular(op, 6)
    with pytest.raises(ValueError, match="flat"):
        Linearised(lambda x: x, torch.zeros(2, 2))
    assert math.isnan(participation_ratio(torch.zeros(3)))
