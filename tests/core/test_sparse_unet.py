"""The study's CS model (SparseUNet) and its checkpoints, built in the study's layout."""

import pytest
import torch
from conftest import ROOT, perturb, write_study_checkpoint

from ddpm_lens.core.checkpoint import load_checkpoint, load_weights
from ddpm_lens.core.config import load_config
from ddpm_lens.core.features import extract_features
from ddpm_lens.core.sparse_unet import SparseUNet, active_count, initial_mask
from ddpm_lens.core.unet import UNet, build_unet
from ddpm_lens.util.errors import UserError

CS = "configs/tiny_cs.json"


def test_buffers_are_named_and_typed_as_the_studys():
    cfg = load_config(ROOT / CS)
    model = build_unet(cfg.model, sparsity=cfg.sparsity, mask_seed=3)
    assert isinstance(model, SparseUNet) and model.bottleneck_channels == 64  # hid 32 x ch_multipliers[-1] 2
    sd = model.state_dict()
    plain = build_unet(cfg.model).state_dict()
    # registered on the model itself, as the study's SparseUNet does: its own buffers come first
    assert list(sd) == ["channel_mask", "channel_birth_stage", "channel_grad_accum", *plain]
    assert sd["channel_mask"].dtype == torch.float32 and sd["channel_birth_stage"].dtype == torch.int64
    assert sd["channel_grad_accum"].dtype == torch.float32 and not sd["channel_grad_accum"].any()
    assert int(sd["channel_mask"].sum()) == 12 == active_count(64, 0.8)  # max(1, int(64 * 0.2))
    assert set(sd["channel_mask"].tolist()) == {0.0, 1.0}
    # seeded: the same seed, the same channels; another seed, others
    assert torch.equal(initial_mask(64, 0.8, 3), sd["channel_mask"])
    assert not torch.equal(initial_mask(64, 0.8, 4), sd["channel_mask"])
    assert active_count(256, 0.8) == 51 and active_count(10, 0.99) == 1


def test_mask_multiplies_the_middle_output_before_the_decoder():
    cfg = load_config(ROOT / CS)
    torch.manual_seed(0)
    model = perturb(build_unet(cfg.model, sparsity=cfg.sparsity)).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([5, 600])
    feats = extract_features(model, x, t, ["bottleneck", "bottleneck_masked", "output"])
    mask = model.channel_mask.view(1, -1, 1, 1)
    assert torch.equal(feats["bottleneck_masked"], feats["bottleneck"] * mask)
    assert feats["bottleneck"][:, mask.flatten() == 0].abs().min() > 0  # the tap before the mask
    masked_out = feats["output"]
    model.channel_mask.fill_(1.0)
    all_active = extract_features(model, x, t, ["output", "bottleneck_masked", "bottleneck"])
    assert (masked_out - all_active["output"]).abs().max() > 1e-3
    assert torch.equal(all_active["bottleneck_masked"], all_active["bottleneck"])
    plain = UNet(**{k: getattr(model, k) for k in ("hid_channels", "ch_multipliers", "num_res_blocks")})
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("channel_")})
    plain.eval()
    assert torch.equal(plain(x, t), model(x, t))  # all active = the plain UNet


def test_a_study_cs_checkpoint_loads_ema_params_with_the_models_buffers(tmp_path):
    path = write_study_checkpoint(tmp_path / "celeba64_cs_20251219_132723_3.pt", config=CS, stage=2)
    ckpt = torch.load(path, weights_only=True)
    assert not any(k.startswith("channel_") for k in ckpt["ema"]["shadow"])  # the study's EMA: params only
    model, weights, cfg = load_checkpoint(ROOT / CS, path)
    assert isinstance(model, SparseUNet) and weights.which == "ema"
    sd = model.state_dict()
    for k, v in ckpt["ema"]["shadow"].items():
        assert torch.equal(sd[k], v), k  # parameters from ema.shadow, not model
    for k in ("channel_mask", "channel_birth_stage", "channel_grad_accum"):
        assert torch.equal(sd[k], ckpt["model"][k]), k  # buffers from model
    assert (weights.curriculum_stage, weights.stage_name, weights.timestamp) == (2, "fine", "20251219_132723")
    raw, raw_weights, _ = load_checkpoint(ROOT / CS, path, use_ema=False)
    assert raw_weights.which == "model" and all(
        torch.equal(raw.state_dict()[k], v) for k, v in ckpt["model"].items()
    )
    # the mask is applied: with all channels active the output differs
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([300])
    with torch.no_grad():
        masked = model(x, t)
        model.channel_mask.fill_(1.0)
        assert (model(x, t) - masked).abs().max() > 1e-3


def test_stage_of_a_baseline_and_of_files_without_the_keys(tmp_path):
    base = load_weights(write_study_checkpoint(tmp_path / "celeba_1.pt", config="configs/tiny_study.json"))
    assert (base.curriculum_stage, base.stage_name) == (-1, None)
    ckpt = torch.load(tmp_path / "celeba_1.pt", weights_only=True)
    assert ckpt["curriculum_config"] == {"stages": []}
    for key in ("curriculum_stage", "curriculum_config", "timestamp"):
        del ckpt[key]
    torch.save(ckpt, tmp_path / "plain_1.pt")
    plain = load_weights(tmp_path / "plain_1.pt")  # ddpm-torch's own layout
    assert (plain.curriculum_stage, plain.stage_name, plain.timestamp) == (None, None, None)


@pytest.mark.parametrize("case", ["no mask", "no accumulator", "wrong length", "plain config"])
def test_mask_problems_are_one_line_naming_the_buffer(tmp_path, case):
    path = write_study_checkpoint(tmp_path / "cs_3.pt", config=CS)
    ckpt = torch.load(path, weights_only=True)
    config = ROOT / CS
    if case == "no mask":
        del ckpt["model"]["channel_mask"]
        message = "has no 'channel_mask' buffer, but config .* enables sparsity"
    elif case == "no accumulator":
        del ckpt["model"]["channel_grad_accum"]
        message = "has no 'channel_grad_accum' buffer"
    elif case == "wrong length":
        ckpt["model"]["channel_mask"] = torch.ones(128)
        message = (
            r"'channel_mask' has shape \[128\], but the CS model of config .* has 64 bottleneck channels"
        )
    else:
        config = ROOT / "configs/tiny_study_c.json"
        message = "carries a CS mask buffer \\('channel_mask'\\) but config .* has no enabled 'sparsity'"
    torch.save(ckpt, path)
    for use_ema in (True, False):
        with pytest.raises(UserError, match=message) as info:
            load_checkpoint(config, path, use_ema=use_ema)
        assert "\n" not in str(info.value)
