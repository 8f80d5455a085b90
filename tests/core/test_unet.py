import json
from pathlib import Path

import torch

from ddpm_lens.core.config import load_config
from ddpm_lens.core.unet import build_unet, count_parameters, iter_layers, layer_table

ROOT = Path(__file__).resolve().parents[2]
KEYS = [
    line.split("\t")
    for line in (ROOT / "tests/fixtures/ddpm_torch_unet_celeba64_keys.tsv").read_text().splitlines()
]


def celeba_model():
    with torch.device("meta"):
        return build_unet(load_config(ROOT / "configs/celeba.json").model)


def test_state_dict_is_ddpm_torchs_exactly():
    sd = celeba_model().state_dict()
    assert list(sd) == [k for k, _ in KEYS]  # same names, same order
    assert all(list(sd[k].shape) == json.loads(shape) for k, shape in KEYS)
    assert count_parameters(celeba_model()) == 35_746_307


def test_layer_table_paths_and_order():
    table = layer_table(celeba_model())
    assert table["encoder_level_0"] == "downsamples.level_0.1"
    assert table["encoder_level_2"] == "downsamples.level_2.1"
    assert table["bottleneck"] == "middle"
    assert list(table)[:6] == [
        "in_conv",
        "encoder_level_0",
        "encoder_level_1",
        "encoder_level_2",
        "encoder_level_3",
        "bottleneck",
    ]
    assert list(table)[6:] == [
        "decoder_level_3",
        "decoder_level_2",
        "decoder_level_1",
        "decoder_level_0",
        "output",
    ]


def test_layer_shapes_match_ddpm_torch(tiny_model):
    # The CelebA-64 shapes from ../shared/compat, measured on the meta device (no compute).
    model = celeba_model()
    shapes = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
        for n, m in iter_layers(model)
    ]
    model(torch.empty(1, 3, 64, 64, device="meta"), torch.zeros(1, dtype=torch.long, device="meta"))
    for h in hooks:
        h.remove()
    assert shapes["in_conv"] == (1, 128, 64, 64)
    assert shapes["encoder_level_0"] == (1, 128, 64, 64)
    assert shapes["encoder_level_1"] == (1, 256, 32, 32)
    assert shapes["encoder_level_2"] == (1, 256, 16, 16)
    assert shapes["encoder_level_3"] == (1, 256, 8, 8)
    assert shapes["bottleneck"] == (1, 256, 8, 8)  # 8x8, not the 4x4 the study's table claims
    assert shapes["output"] == (1, 3, 64, 64)


def test_fresh_init_residual_branches_are_near_zero():
    torch.manual_seed(0)
    model = build_unet(load_config(ROOT / "configs/tiny.json").model)
    w = model.downsamples.level_0[0].conv2.weight
    assert 0 < w.abs().max() < 1e-4  # xavier with gain sqrt(1e-10): tiny but not zero
    assert torch.all(model.downsamples.level_0[0].conv1.bias == 0)


def test_output_depends_on_t_and_attention(tiny_model):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y0 = tiny_model(x, torch.tensor([0, 0]))
    y1 = tiny_model(x, torch.tensor([999, 999]))
    assert (y0 - y1).abs().mean() > 1e-3
    # attention mixes positions: changing one pixel changes outputs far away at the attention level
    x2 = x.clone()
    x2[:, :, 0, 0] += 1.0
    d = (tiny_model(x2, torch.tensor([5, 5])) - tiny_model(x, torch.tensor([5, 5]))).abs()
    assert d[:, :, -8:, -8:].max() > 1e-6


def test_resample_without_conv_and_any_divisible_size():
    torch.manual_seed(0)
    from ddpm_lens.core.unet import UNet

    m = UNet(
        hid_channels=32,
        ch_multipliers=(1, 2),
        num_res_blocks=1,
        apply_attn=(False, True),
        resample_with_conv=False,
    )
    assert not any("downsamples.level_0.1" in k for k in m.state_dict())  # avg-pool has no weights
    assert m(torch.randn(1, 3, 24, 40), torch.tensor([3])).shape == (1, 3, 24, 40)
