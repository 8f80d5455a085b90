"""diffusers folders against diffusers itself: small UNet2DModels with every weight perturbed,
saved in each layout, loaded by ddpm-lens; every named layer and the output compared with
hooks on diffusers' own modules; DDPMScheduler.add_noise against q_sample; export read back
by UNet2DModel.from_pretrained. diffusers is a test-only dependency (requirements-dev.txt)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

if os.environ.get("CI"):  # CI installs requirements-dev.txt: there, a missing diffusers is a failure
    import diffusers
else:
    diffusers = pytest.importorskip("diffusers")

from ddpm_lens.cli import main
from ddpm_lens.core.checkpoint import load_model, load_weights
from ddpm_lens.core.config import DiffusionConfig, load_config
from ddpm_lens.core.diffusers_format import diffusion_config
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.core.unet import iter_layers
from ddpm_lens.util.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
# the conventions of google/ddpm-*; UNet2DModel's own defaults differ in each of these
DDPM = {
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "downsample_padding": 0,
    "norm_eps": 1e-6,
    "attention_head_dim": None,
    "norm_num_groups": 32,
}
ARCHITECTURES = {
    # 64 channels at level 0: with 32, GroupNorm(32, 32) normalises the timestep bias away
    "attention-at-level-1": {"block_out_channels": (64, 64), "layers_per_block": 1, "attn": (False, True)},
    "three-levels-shortcuts": {
        "block_out_channels": (32, 64, 64),
        "layers_per_block": 2,
        "attn": (False, True, False),
    },
}


def diffusers_unet(name: str, *, seed: int = 0, sample_size: int = 16) -> diffusers.UNet2DModel:
    arch = ARCHITECTURES[name]
    attn = arch["attn"]
    unet = diffusers.UNet2DModel(
        sample_size=sample_size,
        block_out_channels=arch["block_out_channels"],
        layers_per_block=arch["layers_per_block"],
        down_block_types=["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        up_block_types=["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        **DDPM,
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every weight, zero-initialised ones included, off its initial value
        for pname, p in unet.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            else:
                base = 1.0 if "norm" in pname and pname.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
    return unet.eval()


def diffusers_layers(unet: diffusers.UNet2DModel) -> dict[str, torch.nn.Module]:
    """Study layer name -> the diffusers module with the same output (see README, Layer names):
    a level's last module is its resampler where it has one, else its last resnet (+ attention)."""
    levels, blocks = len(unet.down_blocks), unet.config.layers_per_block

    def last(block, n):
        return block.attentions[n] if getattr(block, "attentions", None) else block.resnets[n]

    def last_module(block, n, resamplers):
        return resamplers[0] if resamplers else last(block, n)

    out = {"in_conv": unet.conv_in}
    for i, down in enumerate(unet.down_blocks):
        out[f"encoder_block_{i}"] = last(down, blocks - 1)
        out[f"encoder_level_{i}"] = last_module(down, blocks - 1, down.downsamplers)
    out["bottleneck"] = out["bottleneck_masked"] = unet.mid_block
    for i in range(levels):
        up = unet.up_blocks[levels - 1 - i]
        out[f"decoder_block_{i}"] = last(up, blocks)
        out[f"decoder_level_{i}"] = last_module(up, blocks, up.upsamplers)
    out["output"] = unet.conv_out
    return out


def capture(named: dict[str, torch.nn.Module], run) -> dict[str, torch.Tensor]:
    acts, handles = {}, []
    for name, module in named.items():
        handles.append(module.register_forward_hook(lambda _m, _i, o, n=name: acts.__setitem__(n, o)))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return acts


def assert_same_layers(ours, theirs: diffusers.UNet2DModel, side: int = 16) -> None:
    """Every named layer and the output agree to 1e-5 of the layer's largest activation."""
    x = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 417, 999])
    a = capture(dict(iter_layers(ours)), lambda: ours(x, t))
    b = capture(diffusers_layers(theirs), lambda: theirs(x, t))
    assert set(a) == set(b) and len(a) == 4 + 4 * len(theirs.down_blocks)
    for name in a:
        scale = max(1.0, b[name].abs().max().item())
        assert (a[name] - b[name]).abs().max().item() <= 1e-5 * scale, name
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t), theirs(x, t).sample, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("layout", ["flat-safetensors", "flat-bin", "pipeline", "legacy-attention-names"])
def test_every_layer_and_the_output_match_diffusers(tmp_path, name, layout):
    unet = diffusers_unet(name)
    folder = tmp_path / "model"
    if layout == "pipeline":
        scheduler = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    else:
        unet.save_pretrained(folder, safe_serialization=layout == "flat-safetensors")
    if layout == "legacy-attention-names":  # as pre-0.14 diffusers (and the google/ddpm-* files) wrote them
        sd = torch.load(folder / "diffusion_pytorch_model.bin", weights_only=True)
        old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
        for new, legacy in old.items():
            for key in [k for k in sd if f".{new}." in k and ".attentions." in k]:
                sd[key.replace(f".{new}.", f".{legacy}.")] = sd.pop(key)
        torch.save(sd, folder / "diffusion_pytorch_model.bin")
    model, diffusion, cfg = load_model(None, folder)  # no config file: the folder is the config
    assert load_weights(folder).which == "diffusers"
    assert cfg.model.hid_channels == ARCHITECTURES[name]["block_out_channels"][0]
    assert cfg.dataset.resolution == 16
    if layout == "pipeline":
        assert (cfg.diffusion.beta_schedule, cfg.diffusion.beta_start) == ("quad", 0.00085)
    assert_same_layers(model, unet)


@pytest.mark.parametrize(
    "schedule, ours", [("linear", "linear"), ("scaled_linear", "quad"), ("squaredcos_cap_v2", "cosine")]
)
@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_add_noise_matches_q_sample(schedule, ours, prediction):
    scheduler = diffusers.DDPMScheduler(beta_schedule=schedule, prediction_type=prediction)
    section = diffusion_config(dict(scheduler.config), source="scheduler_config.json")
    assert section["beta_schedule"] == ours and section["model_mean_type"] == {"epsilon": "eps"}.get(
        prediction, "x_0"
    )
    diffusion = GaussianDiffusion.from_config(DiffusionConfig(**section))
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(8, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(8, 3, 8, 8, generator=g)
    t = torch.tensor([0, 1, 2, 10, 250, 500, 900, 999])
    torch.testing.assert_close(
        diffusion.q_sample(x0, t, noise), scheduler.add_noise(x0, noise, t), rtol=0, atol=1e-5
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "model"
    scheduler = diffusers.DDPMScheduler()
    diffusers.DDPMPipeline(unet=diffusers_unet("attention-at-level-1"), scheduler=scheduler).save_pretrained(
        folder
    )
    return folder


@pytest.mark.parametrize(
    "file, field, value",
    [
        ("unet/config.json", "norm_eps", 1e-5),
        ("unet/config.json", "attention_head_dim", 8),
        ("unet/config.json", "downsample_padding", 1),
        ("unet/config.json", "flip_sin_to_cos", True),
        ("unet/config.json", "freq_shift", 0),
        ("unet/config.json", "resnet_time_scale_shift", "scale_shift"),
        ("unet/config.json", "class_embed_type", "timestep"),
        ("unet/config.json", "mid_block_scale_factor", 2),
        ("unet/config.json", "out_channels", 6),
        ("unet/config.json", "_class_name", "UNet2DConditionModel"),
        ("unet/config.json", "down_block_types", ["DownBlock2D", "CrossAttnDownBlock2D"]),
        ("unet/config.json", "up_block_types", ["UpBlock2D", "UpBlock2D"]),
        ("scheduler/scheduler_config.json", "prediction_type", "v_prediction"),
        ("scheduler/scheduler_config.json", "beta_schedule", "sigmoid"),
        ("scheduler/scheduler_config.json", "variance_type", "learned_range"),
        ("scheduler/scheduler_config.json", "trained_betas", [0.1, 0.3, 0.2]),
        ("scheduler/scheduler_config.json", "clip_sample", False),
    ],
)
def test_what_does_not_map_exactly_is_refused_naming_the_field(saved, tmp_path, file, field, value):
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    raw = json.loads((folder / file).read_text())
    raw[field] = value
    (folder / file).write_text(json.dumps(raw))
    with pytest.raises(UserError) as info:
        load_weights(folder)
    message = str(info.value)
    assert "\n" not in message and str(folder / file) in message
    assert field in message or (field.endswith("block_types") and "block types" in message), message


def test_a_missing_or_extra_weight_and_a_foreign_folder_are_one_line_errors(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    weights = folder / "unet/diffusion_pytorch_model.safetensors"
    sd = load_file(weights)
    save_file({**sd, "extra.weight": torch.zeros(1)}, weights)
    with pytest.raises(UserError, match="1 weights do not map onto the UNet, e.g. extra.weight"):
        load_weights(folder)
    del sd["mid_block.attentions.0.to_q.weight"]
    save_file(sd, weights)
    with pytest.raises(UserError, match="weights lack mid_block.attentions.0.to_q.weight"):
        load_weights(folder)
    (tmp_path / "photos").mkdir()
    with pytest.raises(UserError, match="is a folder but not a diffusers model"):
        load_weights(tmp_path / "photos")


def test_export_to_diffusers_is_read_by_from_pretrained_and_back(tmp_path):
    from conftest import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(tmp_path / "tiny_20260101_000000_3.pt", seed=5)
    out = tmp_path / "exported"
    assert main(["export", "--ckpt", str(ckpt), "--format", "diffusers", "--output", str(out)]) == 0
    ours, diffusion, cfg = load_model(None, ckpt)
    unet = diffusers.UNet2DModel.from_pretrained(out, subfolder="unet").eval()
    assert_same_layers(ours, unet, side=cfg.dataset.resolution)
    pipeline = diffusers.DDPMPipeline.from_pretrained(out)
    torch.testing.assert_close(
        pipeline.scheduler.alphas_cumprod.double(), diffusion.alphas_cumprod.double(), rtol=0, atol=1e-6
    )
    back, _, cfg_back = load_model(None, out)  # ddpm-lens reads its own export exactly
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in ours.state_dict().items())
    assert (cfg_back.model, cfg_back.diffusion) == (cfg.model, cfg.diffusion)
    assert main(["export", "--ckpt", str(ckpt), "--format", "diffusers", "--output", str(out)]) == 2


def test_a_schedule_without_a_diffusers_name_is_exported_as_trained_betas(tmp_path):
    from ddpm_lens.core.checkpoint import save_checkpoint
    from ddpm_lens.core.config import with_overrides
    from ddpm_lens.core.unet import build_unet

    cfg = with_overrides(load_config(ROOT / "configs/tiny.json"), {"diffusion.beta_schedule": "warmup10"})
    ckpt = tmp_path / "w.pt"
    save_checkpoint({"model": build_unet(cfg.model).state_dict(), "config": cfg.to_dict()}, ckpt)
    assert (
        main(
            [
                "export",
                "--ckpt",
                str(ckpt),
                "--no_ema",
                "--format",
                "diffusers",
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    scheduler = diffusers.DDPMScheduler.from_pretrained(tmp_path / "o", subfolder="scheduler")
    assert scheduler.config.trained_betas is not None
    assert load_model(None, tmp_path / "o")[2].diffusion == cfg.diffusion


def test_diffusers_folders_run_the_seed_command_without_config_flags(tmp_path):
    baseline, curriculum = tmp_path / "baseline", tmp_path / "curriculum"
    diffusers_unet("attention-at-level-1", seed=0, sample_size=32).save_pretrained(baseline)
    diffusers.DDPMPipeline(
        unet=diffusers_unet("attention-at-level-1", seed=1, sample_size=32),
        scheduler=diffusers.DDPMScheduler(),
    ).save_pretrained(curriculum)
    out = tmp_path / "feature_visualizations"
    args = ["--baseline_ckpt", str(baseline), "--curriculum_ckpt", str(curriculum), "--num_samples", "2"]
    args += ["--timesteps", "100", "500", "900", "--num_channels", "64", "--output_dir", str(out)]
    args += ["--device", "cuda:0", "--dataset", "synthetic-faces", "--no_report", "--no_progress"]
    assert main(["visualize", *args]) == 0
    assert len(list(out.glob("sample_*/*/*_baseline_vs_curriculum.png"))) == 2 * 4 * 4  # 2 levels: 4 layers
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["weights"] for m in manifest["models"]] == ["diffusers UNet2DModel weights"] * 2
    assert all(len(m["sha256"]) == 64 for m in manifest["models"])


def test_a_config_missing_block_out_channels_names_the_config_not_the_weights(saved, tmp_path):
    # diffusers' default widths were assumed, and the error blamed the weights for not fitting
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    raw = json.loads((folder / "unet/config.json").read_text())
    del raw["block_out_channels"]
    (folder / "unet/config.json").write_text(json.dumps(raw))
    with pytest.raises(UserError) as info:
        load_weights(folder)
    message = str(info.value)
    assert str(folder / "unet/config.json") in message and "has no block_out_channels" in message, message
    assert "weights" not in message.split(":")[0]
