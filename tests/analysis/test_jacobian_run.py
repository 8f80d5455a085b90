"""Matching singular vectors across models, the sign convention, and the method choice."""

from __future__ import annotations

import pytest
import torch

from ddpm_lens.analysis.jacobian_run import EXACT_MAX_DIM, match_vectors, resolve_method, sign_convention
from ddpm_lens.util.errors import UserError


def test_match_vectors_undoes_a_permutation_and_sign_flips():
    g = torch.Generator().manual_seed(0)
    ref = torch.linalg.qr(torch.randn(50, 6, generator=g))[0].T  # 6 orthonormal rows
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    signs = torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0, 1.0])
    other = ref[perm] * signs[:, None] + 0.01 * torch.randn(6, 50, generator=g)
    matched, found, overlap = match_vectors(ref, other)
    assert torch.equal(perm[found], torch.arange(6))  # other's row found[i] is ref's row i
    assert ((matched * ref).sum(1) > 0.9).all()  # and every sign agrees with the reference
    assert (overlap > 0.9).all()


def test_sign_convention_makes_the_largest_entry_positive():
    v = torch.tensor([[0.1, -0.9, 0.2], [0.5, 0.1, -0.2]])
    out = sign_convention(v)
    assert torch.equal(out[0], -v[0]) and torch.equal(out[1], v[1])
    assert torch.equal(sign_convention(-v), out)  # either sign in, one sign out


def test_auto_method_is_exact_up_to_the_measured_size():
    assert resolve_method("auto", 1024) == "exact"
    assert resolve_method("auto", EXACT_MAX_DIM + 1) == "fast"
    assert resolve_method("fast", 10) == "fast"
    with pytest.raises(UserError, match="--method"):
        resolve_method("dense", 10)


def test_fast_path_steps_are_capped_at_the_exact_paths_size_unless_depth_is_given():
    from ddpm_lens.analysis.jacobian_run import EXACT_MAX_DIM, JacobianOptions, fast_depth

    opts = JacobianOptions(timesteps=[500], block=10)
    assert fast_depth(opts, 12288) == 409  # 410 steps of 10: bases of 4,100 >= 4,096 directions
    assert fast_depth(opts, 1024) == 102  # enough to span all 1,024: exact by then
    assert (fast_depth(opts, 12288) + 1) * 10 >= EXACT_MAX_DIM
    assert fast_depth(JacobianOptions(timesteps=[500], depth=3), 12288) == 3
    assert fast_depth(JacobianOptions(timesteps=[500], depth=3, rtol=None), 12288) == 3
