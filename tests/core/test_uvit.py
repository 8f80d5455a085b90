"""The study's U-ViT (core/uvit.py): parity with its own code, token-map taps, its checkpoint folders."""

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_uvit, write_run
from safetensors import safe_open

from ddpm_lens.core.checkpoint import load_model
from ddpm_lens.core.features import extract_features, resolve_layers
from ddpm_lens.core.unet import layer_channels, layer_table
from ddpm_lens.core.uvit import UViT, UViTConfig
from ddpm_lens.util.errors import UserError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "uvit_reference.safetensors"


def test_output_equals_the_studys_uvit_on_perturbed_weights():
    """Reference: the study's libs/uvit.py run on these weights (tests/fixtures/README.md)."""
    with safe_open(str(FIXTURE), "pt") as f:
        cfg = UViTConfig(**json.loads(f.metadata()["config"]))
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    state = {k.removeprefix("state_dict."): v for k, v in tensors.items() if k.startswith("state_dict.")}
    model = UViT(cfg).eval()
    model.load_state_dict(state, strict=True)
    assert state["mid_block.norm1.bias"].abs().min() > 0  # perturbed off the zero init
    with torch.no_grad():
        out = model(tensors["input.x"], tensors["input.t"])
    expected = tensors["expected"]
    assert out.shape == expected.shape == (2, 3, 16, 16)
    assert (out - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_taps_are_token_maps_without_the_time_token():
    model = tiny_uvit()
    x, t = torch.rand(2, 3, 16, 16) * 2 - 1, torch.tensor([10, 600])
    assert list(layer_table(model)) == [
        "patch_embed",
        "in_block_0",
        "in_block_1",
        "mid_block",
        "out_block_0",
        "out_block_1",
        "final",
    ]
    assert resolve_layers(model, ["seed"]) == ["patch_embed", "in_block_0", "in_block_1", "mid_block"]
    assert layer_channels(model)["mid_block"] == 32 and layer_channels(model)["final"] == 3
    feats = extract_features(model, x, t, ["all"])
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        **{k: (2, 32, 4, 4) for k in list(layer_table(model))[:-1]},
        "final": (2, 3, 16, 16),
    }
    with torch.no_grad():
        assert torch.equal(feats["patch_embed"], model.patch_embed.proj(x))  # the conv's own map
        assert torch.allclose(feats["final"], model(x, t))
        tokens = {}
        model.mid_block.register_forward_hook(lambda m, i, o: tokens.update(mid=o))
        model(x, t)
    assert tokens["mid"].shape == (2, 17, 32)  # the time token first, then 4x4 patches row by row
    assert torch.allclose(feats["mid_block"][:, :, 1, 2], tokens["mid"][:, 1 + 1 * 4 + 2, :])


def test_module_paths_are_layers_and_a_typo_lists_close_names():
    model = tiny_uvit()
    x, t = torch.rand(1, 3, 16, 16), torch.tensor([5])
    feats = extract_features(model, x, t, ["mid_block.attn", "patch_embed"])
    assert list(feats) == ["patch_embed", "mid_block.attn"] and feats["mid_block.attn"].shape == (1, 32, 4, 4)
    with pytest.raises(UserError, match=r"unknown layer 'mid_block.atn' .*closest: mid_block.attn"):
        resolve_layers(model, ["mid_block.atn"])


def test_the_studys_checkpoint_folder_loads_ema_or_raw(tmp_path):
    config, folder, raw, ema = write_run(tmp_path)
    for use_ema, expected in ((True, ema), (False, raw)):
        model, diffusion, cfg = load_model(config, folder, use_ema=use_ema)
        assert isinstance(model, UViT) and cfg.model.embed_dim == 32
        assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    (folder / "nnet.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="nnet.pth"):
        load_model(config, folder, use_ema=False)


def test_a_state_dict_that_does_not_fit_names_the_keys_and_the_settings(tmp_path):
    config, folder, raw, _ = write_run(tmp_path)
    bigger = UViT(UViTConfig(img_size=16, patch_size=4, embed_dim=48, depth=6, num_heads=4, mlp_ratio=2))
    torch.save(bigger.state_dict(), folder / "nnet_ema.pth")
    with pytest.raises(UserError) as err:
        load_model(config, folder)
    msg = str(err.value)
    assert "unexpected keys (e.g. in_blocks.2." in msg and "shape mismatches (e.g. pos_embed" in msg
    assert "embed_dim=48" in msg and "depth=6" in msg and "\n" not in msg
