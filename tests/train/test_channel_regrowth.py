import torch
from conftest import ROOT, perturb

from ddpm_lens.core.config import load_config
from ddpm_lens.core.unet import build_unet
from ddpm_lens.train.channel_regrowth import accumulate_mask_gradients, regrow_channels, regrowth_choice


def cs_model(seed=0):
    cfg = load_config(ROOT / "configs/tiny_cs.json")
    torch.manual_seed(seed)
    return perturb(build_unet(cfg.model, sparsity=cfg.sparsity, mask_seed=seed))


def test_only_masked_channels_accumulate_the_summed_abs_gradient():
    model = cs_model()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model(x, torch.tensor([100, 900])).square().mean().backward()
    grad = model.middle[0].conv2.weight.grad  # (64, 64, 3, 3)
    accumulate_mask_gradients(model)
    accumulate_mask_gradients(model)  # a second step adds the same again
    mask = model.channel_mask.bool()
    expected = 2 * grad.abs().sum(dim=(1, 2, 3))
    assert torch.allclose(model.channel_grad_accum[~mask], expected[~mask])
    assert torch.all(model.channel_grad_accum[mask] == 0) and torch.all(expected[~mask] > 0)


def test_gradient_regrowth_picks_the_top_accumulated_masked_channels():
    model = cs_model()
    mask = torch.zeros(64)
    mask[[0, 1, 2, 3]] = 1.0  # 4 active
    accum = torch.arange(64, dtype=torch.float32).flip(0)  # channel 0 has the most, but it is active
    accum[[10, 20, 30]] = 1000.0 + torch.tensor([1.0, 3.0, 2.0])
    model.channel_mask.copy_(mask)
    model.channel_grad_accum.copy_(accum)
    # target: max(1, int(64 (1 - 0.9))) = 6 active, so 2 new: the masked channels with the largest sums
    assert regrow_channels(model, 0.9, 3, method="gradient", generator=torch.Generator()) == 2
    assert set(torch.nonzero(model.channel_mask).flatten().tolist()) == {0, 1, 2, 3, 20, 30}
    assert model.channel_birth_stage[[20, 30]].tolist() == [3, 3] and model.channel_birth_stage[10] == 0
    assert not model.channel_grad_accum.any()  # restarted after a regrowth


def test_no_channel_is_ever_masked_again_and_no_regrowth_keeps_the_accumulator():
    model = cs_model()
    before = model.channel_mask.clone()  # 12 active
    model.channel_grad_accum.uniform_()
    kept = model.channel_grad_accum.clone()
    assert regrow_channels(model, 0.95, 1, method="gradient", generator=torch.Generator()) == 0  # 3 < 12
    assert torch.equal(model.channel_mask, before) and torch.equal(model.channel_grad_accum, kept)
    assert regrow_channels(model, 0.0, 2, method="gradient", generator=torch.Generator()) == 52
    assert model.channel_mask.all()
    assert regrow_channels(model, 0.0, 3, method="gradient", generator=torch.Generator()) == 0


def test_random_regrowth_is_a_seeded_choice_among_masked_channels():
    mask = torch.zeros(64)
    mask[:8] = 1.0
    accum = torch.zeros(64)
    a = regrowth_choice(accum, mask, 5, "random", torch.Generator().manual_seed(1))
    b = regrowth_choice(accum, mask, 5, "random", torch.Generator().manual_seed(1))
    c = regrowth_choice(accum, mask, 5, "random", torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and all(i >= 8 for i in a.tolist())
    assert len(regrowth_choice(accum, mask, 100, "gradient", torch.Generator())) == 56  # at most the masked
