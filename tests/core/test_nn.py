import math

import torch

from ddpm_lens.core.nn import GN_EPS, SamePad2d, group_norm, timestep_embedding


def test_timestep_embedding_closed_form():
    t = torch.tensor([0, 1, 500, 999])
    emb = timestep_embedding(t, 128)
    assert emb.shape == (4, 128) and emb.dtype == torch.float32
    # t = 0: sin half zeros, cos half ones (sin first, cos second)
    assert torch.equal(emb[0, :64], torch.zeros(64)) and torch.equal(emb[0, 64:], torch.ones(64))
    # frequencies use a (half - 1) denominator: f_1 = exp(-ln(10000)/63) = 0.8639884
    assert math.isclose(emb[1, 1].item(), math.sin(0.8639884), rel_tol=1e-6)
    i = torch.arange(64, dtype=torch.float64)
    f = torch.exp(-math.log(10000) * i / 63)
    expected = torch.cat([torch.sin(500 * f), torch.cos(500 * f)])
    torch.testing.assert_close(emb[2].double(), expected, atol=2e-4, rtol=0)


def test_odd_width_is_zero_padded():
    emb = timestep_embedding(torch.tensor([3]), 7)
    assert emb.shape == (1, 7) and emb[0, -1] == 0


def test_group_norm_matches_ddpm_torch():
    gn = group_norm(128)
    assert gn.num_groups == 32 and gn.eps == GN_EPS == 1e-6


def test_same_padding_pads_bottom_right_only():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = SamePad2d(3, 2)(x)
    assert y.shape == (1, 1, 5, 5)
    assert torch.equal(y[0, 0, :4, :4], x[0, 0])  # nothing added top/left
    assert y[0, 0, 4].abs().sum() == 0 and y[0, 0, :, 4].abs().sum() == 0
