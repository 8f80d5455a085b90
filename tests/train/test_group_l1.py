import torch
from conftest import ROOT, perturb

from ddpm_lens.core.config import ModelConfig, load_config
from ddpm_lens.core.unet import build_unet
from ddpm_lens.train.group_l1 import bottleneck_adjacent_convs, group_l1


def test_the_layers_are_the_deepest_down_levels_last_residual_block():
    with torch.device("meta"):
        celeba = build_unet(load_config(ROOT / "configs/celeba64_cr.json").model)
    convs = bottleneck_adjacent_convs(celeba)
    assert [name for name, _ in convs] == ["downsamples.level_3.1.conv1", "downsamples.level_3.1.conv2"]
    assert sum(m.weight.shape[0] for _, m in convs) == 512  # the study's 512 groups
    tiny = build_unet(load_config(ROOT / "configs/tiny_cr.json").model)  # one block per level
    assert [n for n, _ in bottleneck_adjacent_convs(tiny)] == [
        "downsamples.level_3.0.conv1",
        "downsamples.level_3.0.conv2",
    ]
    # a block that changes width has a 1x1 skip conv, which counts too
    widening = build_unet(
        ModelConfig(hid_channels=32, ch_multipliers=(1, 2), num_res_blocks=1, apply_attn=(False, False))
    )
    assert [n for n, _ in bottleneck_adjacent_convs(widening)][-1] == "downsamples.level_1.0.skip"


def test_penalty_equals_the_formula_by_hand():
    torch.manual_seed(0)
    model = perturb(build_unet(load_config(ROOT / "configs/tiny_cr.json").model))
    weights = [m.weight for _, m in bottleneck_adjacent_convs(model)]
    by_hand_weights = [w.detach().double() for w in weights]
    by_hand = 0.0
    for w in by_hand_weights:  # sum over output channels c of sqrt(sum of W[c]^2); biases do not count
        for c in range(w.shape[0]):
            by_hand += float(torch.sqrt((w[c] ** 2).sum()))
    assert torch.isclose(group_l1(weights).double(), torch.tensor(by_hand, dtype=torch.float64), rtol=1e-5)
    w = torch.tensor([[[[3.0]], [[4.0]]], [[[0.0]], [[-2.0]]]])  # (2, 2, 1, 1): rows (3, 4), (0, -2)
    assert group_l1([w, torch.ones(1, 4)]) == 5.0 + 2.0 + 2.0
