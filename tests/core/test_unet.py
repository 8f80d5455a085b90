import copy
import json
from pathlib import Path

import torch

from ddpm_lens.core.config import load_config
from ddpm_lens.core.features import extract_features
from ddpm_lens.core.unet import (
    AttentionBlock,
    build_unet,
    count_parameters,
    iter_layers,
    layer_channels,
    layer_table,
)

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
    # The study's FeatureExtractor hooks the *last module* of downsamples.level_i: the level's
    # downsample where it has one. The level's last residual block is encoder_block_i.
    table = layer_table(celeba_model())
    assert table["encoder_level_0"] == "downsamples.level_0.2"
    assert table["encoder_level_2"] == "downsamples.level_2.2"
    assert table["encoder_level_3"] == "downsamples.level_3.1"  # the deepest level has no downsample
    assert table["encoder_block_0"] == "downsamples.level_0.1"
    assert table["encoder_block_2"] == "downsamples.level_2.1"
    assert table["bottleneck"] == "middle" and table["bottleneck_masked"] == "bottleneck_mask"
    assert (
        table["decoder_block_3"] == "upsamples.level_3.2"
        and table["decoder_level_3"] == "upsamples.level_3.3"
    )
    assert table["decoder_level_0"] == table["decoder_block_0"] == "upsamples.level_0.2"  # no upsample there
    assert list(table) == [
        "in_conv",
        *(f"encoder_{kind}_{i}" for i in range(4) for kind in ("block", "level")),
        "bottleneck",
        "bottleneck_masked",
        *(f"decoder_{kind}_{i}" for i in reversed(range(4)) for kind in ("block", "level")),
        "output",
    ]


def test_encoder_levels_are_the_last_module_of_each_modulelist_hooked_by_hand(tiny_model):
    # What the study's extractor does: getattr down the path, and for a ModuleList hook module[-1].
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 700])
    by_hand, handles = {}, []
    for i in range(4):
        level = tiny_model.downsamples[f"level_{i}"]
        hook = lambda _m, _i, out, i=i: by_hand.__setitem__(f"encoder_level_{i}", out.detach().clone())  # noqa: E731
        handles.append(level[-1].register_forward_hook(hook))
    with torch.no_grad():
        tiny_model(x, t)
    for h in handles:
        h.remove()
    ours = extract_features(tiny_model, x, t, [f"encoder_level_{i}" for i in range(4)])
    assert set(ours) == set(by_hand)
    for name, act in by_hand.items():
        assert torch.equal(ours[name], act), name
    blocks = extract_features(tiny_model, x, t, ["encoder_block_0"])["encoder_block_0"]
    assert blocks.shape[-1] == 2 * ours["encoder_level_0"].shape[-1]  # before the downsample


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
    # the study's taps, as its real figures show them: 32, 16, 8, 8 px
    assert shapes["encoder_level_0"] == (1, 128, 32, 32)
    assert shapes["encoder_level_1"] == (1, 256, 16, 16)
    assert shapes["encoder_level_2"] == (1, 256, 8, 8)
    assert shapes["encoder_level_3"] == (1, 256, 8, 8)
    # the blocks before each downsample: 64, 32, 16, 8 px
    assert shapes["encoder_block_0"] == (1, 128, 64, 64)
    assert shapes["encoder_block_1"] == (1, 256, 32, 32)
    assert shapes["encoder_block_2"] == (1, 256, 16, 16)
    assert shapes["encoder_block_3"] == (1, 256, 8, 8)
    assert shapes["bottleneck"] == (1, 256, 8, 8)  # 8x8, not the 4x4 the study's table claims
    assert shapes["bottleneck_masked"] == (1, 256, 8, 8)
    assert shapes["decoder_level_3"] == (1, 256, 16, 16) and shapes["decoder_block_3"] == (1, 256, 8, 8)
    assert shapes["output"] == (1, 3, 64, 64)
    assert layer_channels(model) == {n: s[1] for n, s in shapes.items()}


def test_fresh_init_residual_branches_are_near_zero():
    torch.manual_seed(0)
    model = build_unet(load_config(ROOT / "configs/tiny.json").model)
    w = model.downsamples.level_0[0].conv2.weight
    assert 0 < w.abs().max() < 1e-4  # xavier with gain sqrt(1e-10): tiny but not zero
    assert torch.all(model.downsamples.level_0[0].conv1.bias == 0)


def test_output_depends_on_t(tiny_model):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y0 = tiny_model(x, torch.tensor([0, 0]))
    y1 = tiny_model(x, torch.tensor([999, 999]))
    assert (y0 - y1).abs().mean() > 1e-3


def without_attention(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose attention blocks are identities."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, AttentionBlock):
                setattr(module, name, torch.nn.Identity())
    return model


def test_attention_is_single_head_softmax_attention_over_all_positions(tiny_model):
    # tiny: attention at level 2 (1 encoder block, 2 decoder blocks) and in the middle
    blocks = [m for m in tiny_model.modules() if isinstance(m, AttentionBlock)]
    assert len(blocks) == 1 + 2 + 1
    block = blocks[0]
    c = block.norm.num_channels
    x = torch.randn(2, c, 4, 4, generator=torch.Generator().manual_seed(1))
    h = block.norm(x).flatten(2)  # (B, C, HW)
    w_in, b_in = block.project_in.weight[:, :, 0, 0], block.project_in.bias
    q, k, v = (torch.einsum("oc,bcn->bon", w_in, h) + b_in[None, :, None]).chunk(3, dim=1)
    weights = torch.softmax(torch.einsum("bcn,bcm->bnm", q, k) / c**0.5, dim=-1)  # (B, HW query, HW key)
    attended = torch.einsum("bnm,bcm->bcn", weights, v)
    w_out, b_out = block.project_out.weight[:, :, 0, 0], block.project_out.bias
    expected = x + (torch.einsum("oc,bcn->bon", w_out, attended) + b_out[None, :, None]).reshape(x.shape)
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)
    assert (block(x) - x).abs().max() > 0.1  # the perturbed block does something


def test_attention_changes_the_output(tiny_model):
    # measured: removing attention changes this output by up to 0.11 (its largest value: 2.37)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([5, 500])
    with torch.no_grad():
        y, y_plain = tiny_model(x, t), without_attention(tiny_model)(x, t)
    assert (y - y_plain).abs().max() > 0.02 * y.abs().max()


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
