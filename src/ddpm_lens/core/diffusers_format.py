"""diffusers ``UNet2DModel`` folders, read into the project's UNet and written from it, exactly.

diffusers' DDPM UNet is ddpm-torch's architecture under other names, so a folder converts
into :class:`~ddpm_lens.core.unet.UNet` with every weight copied unchanged (q, k, v stacked
into one 1x1 conv) and no diffusers import. Two layouts are read::

    pipeline   model_index.json, unet/config.json, unet/diffusion_pytorch_model.safetensors
               (or .bin), scheduler/scheduler_config.json
    flat       config.json + diffusion_pytorch_model.safetensors (or .bin)

``config.json`` and ``scheduler_config.json`` give the whole run config, so no
``--config_*`` is needed. Only what maps exactly is accepted: every other value is a
one-line error naming the field (e.g. ``norm_eps`` 1e-5, where ours is 1e-6; multi-head
attention; ``v_prediction``). ``.bin`` files load with ``weights_only=True``. Key map, for
L levels (``up_blocks`` are listed deepest first) and R = ``layers_per_block``::

    conv_in -> in_conv;  time_embedding.linear_1/2 -> embed.0/2
    down_blocks.i.resnets.j  -> downsamples.level_i.j (.j.0 at attention levels)
        norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut -> norm1, conv1, fc, norm2, conv2, skip
    down_blocks.i.attentions.j -> downsamples.level_i.j.1
        group_norm -> norm;  to_q/to_k/to_v [C, C] -> project_in [3C, C, 1, 1];  to_out.0 -> project_out
        (pre-0.14 names query/key/value/proj_attn too)
    down_blocks.i.downsamplers.0.conv -> downsamples.level_i.R.1
    mid_block.resnets.0 / attentions.0 / resnets.1 -> middle.0 / 1 / 2
    up_blocks.(L-1-i).{resnets, attentions}.j -> upsamples.level_i.j;  upsamplers.0.conv -> .(R+1).1
    conv_norm_out, conv_out -> out_conv.0, out_conv.2

:mod:`ddpm_lens.output.diffusers_writer` writes such a folder from a ddpm-lens model.
The two nets agree to float32 rounding (both sinusoids are the same formula; about a third
of the frequencies differ by one ulp, ~3e-5 at t = 999), measured in
tests/core/test_diffusers_format.py against diffusers itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm_lens.core.nn import GN_EPS, GROUPS
from ddpm_lens.core.schedules import BETA_SCHEDULES
from ddpm_lens.util.errors import UserError

MODEL_INDEX = "model_index.json"
CONFIG = "config.json"
SCHEDULER_CONFIG = "scheduler_config.json"
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")  # diffusers' order
DIFFUSERS_VERSION = "0.42.1"  # the version whose conventions this file follows (and tests against)

# UNet2DModel.__init__'s defaults: a key missing from an old config.json takes these, not
# the DDPM values, so they are applied before checking.
UNET_DEFAULTS: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}
# field -> the one value that maps onto our UNet (why, where it is not obvious)
UNET_REQUIRED: dict[str, tuple[Any, str]] = {
    "in_channels": (3, "RGB images"),
    "out_channels": (3, "noise prediction with fixed variances"),
    "center_input_sample": (False, ""),
    "time_embedding_type": ("positional", ""),
    "flip_sin_to_cos": (False, "ours is [sin, cos]"),
    "freq_shift": (1, "ours divides by half - 1"),
    "mid_block_type": ("UNetMidBlock2D", ""),
    "add_attention": (True, "our middle block has attention"),
    "resnet_time_scale_shift": ("default", "an added timestep bias"),
    "mid_block_scale_factor": (1, ""),
    "downsample_padding": (0, "ours pads right and bottom"),
    "downsample_type": ("conv", ""),
    "upsample_type": ("conv", ""),
    "norm_num_groups": (GROUPS, ""),
    "norm_eps": (GN_EPS, ""),
    "class_embed_type": (None, "no class conditioning"),
    "num_class_embeds": (None, "no class conditioning"),
}
SCHEDULER_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "variance_type": "fixed_small",
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "prediction_type": "epsilon",
    "thresholding": False,
    "rescale_betas_zero_snr": False,
}
SCHEDULES = {"linear": "linear", "scaled_linear": "quad", "squaredcos_cap_v2": "cosine"}
VARIANCES = {"fixed_small": "fixed-small", "fixed_small_log": "fixed-small", "fixed_large": "fixed-large"}
PREDICTIONS = {"epsilon": "eps", "sample": "x_0"}
_RESNET = (
    ("norm1", "norm1"),
    ("conv1", "conv1"),
    ("time_emb_proj", "fc"),
    ("norm2", "norm2"),
    ("conv2", "conv2"),
)
_LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def read_folder(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(our state dict, our run config as a dict) of a diffusers folder; UserError if it does
    not map exactly."""
    root = Path(path)
    unet_dir, scheduler = root, None
    if (root / MODEL_INDEX).is_file():
        index = _read_json(root / MODEL_INDEX)
        unet = index.get("unet")
        if not (isinstance(unet, list) and unet[-1:] == ["UNet2DModel"]):
            raise UserError(
                f"{root / MODEL_INDEX}: 'unet' is {json.dumps(unet)}; ddpm-lens reads UNet2DModel"
            )
        unet_dir = root / "unet"
        if (root / "scheduler" / SCHEDULER_CONFIG).is_file():
            scheduler = _read_json(root / "scheduler" / SCHEDULER_CONFIG)
    elif not (root / CONFIG).is_file():
        raise UserError(
            f"checkpoint {root} is a folder but not a diffusers model: expected {MODEL_INDEX} with unet/, or "
            f"{CONFIG} with {WEIGHTS[0]}; pass a .pt or .safetensors file or such a folder"
        )
    model, resolution = model_config(_read_json(unet_dir / CONFIG), source=unet_dir / CONFIG)
    source = root / "scheduler" / SCHEDULER_CONFIG if scheduler is not None else root
    diffusion = diffusion_config(scheduler or {}, source=source)
    state_dict = to_ours(_read_weights(unet_dir), model, source=unet_dir)
    config = {"dataset": {"name": "none", "resolution": resolution}, "diffusion": diffusion, "model": model}
    return state_dict, config


SHAPE_KEYS = ("block_out_channels", "layers_per_block")  # fix the weights' shapes: never defaulted


def model_config(raw: dict, *, source: os.PathLike) -> tuple[dict, int]:
    """Our ``model`` config section and the image side of a UNet2DModel ``config.json``."""
    missing = [key for key in SHAPE_KEYS if key not in raw]
    if missing:  # diffusers' default would be a guess, and the weights would be blamed for it
        raise UserError(
            f"{source} has no {missing[0]}: add the model's value (save_pretrained writes it; "
            f"diffusers' default {UNET_DEFAULTS[missing[0]]} is not assumed)"
        )
    cls = raw.get("_class_name", "UNet2DModel")
    cfg = {**UNET_DEFAULTS, **{k: v for k, v in raw.items() if not k.startswith("_")}}
    bad = [] if cls == "UNet2DModel" else [f"_class_name is {json.dumps(cls)} (only UNet2DModel maps)"]
    for key, (want, why) in UNET_REQUIRED.items():
        if cfg[key] != want:
            bad.append(
                f"{key} is {json.dumps(cfg[key])} (ours: {json.dumps(want)}{'; ' + why if why else ''})"
            )
    if cfg["act_fn"] not in ("silu", "swish"):
        bad.append(f"act_fn is {json.dumps(cfg['act_fn'])} (ours: silu)")
    if cfg["attn_norm_num_groups"] not in (None, GROUPS):
        bad.append(f"attn_norm_num_groups is {cfg['attn_norm_num_groups']} (ours: {GROUPS})")
    channels = list(cfg["block_out_channels"])
    downs = [_no_prefix(b) for b in cfg["down_block_types"]]
    ups = [_no_prefix(b) for b in cfg["up_block_types"]][::-1]  # listed deepest first
    kinds = [d for d in downs if d not in ("DownBlock2D", "AttnDownBlock2D")]
    kinds += [u for u in ups if u not in ("UpBlock2D", "AttnUpBlock2D")]
    if kinds or not len(downs) == len(ups) == len(channels) >= 1:
        want = "one (Attn)DownBlock2D and one (Attn)UpBlock2D per entry of block_out_channels"
        raise _refused(source, [*bad, f"block types {downs} / {ups[::-1]} (ours: {want})"])
    attn = [d.startswith("Attn") for d in downs]
    if attn != [u.startswith("Attn") for u in ups]:
        bad.append(f"attention levels differ: down_block_types {downs}, up_block_types reversed {ups}")
    hid = channels[0]
    if any(c % hid for c in channels):
        bad.append(f"block_out_channels {channels} are not all multiples of the first")
    if cfg["time_embedding_dim"] not in (None, 4 * hid):
        bad.append(f"time_embedding_dim is {cfg['time_embedding_dim']} (ours: {4 * hid})")
    heads = cfg["attention_head_dim"]
    attended = [c for c, a in zip(channels, attn) if a] + [channels[-1]]  # + the middle block
    if heads is not None and any(heads != c for c in attended):
        bad.append(f"attention_head_dim is {heads}: multi-head attention (ours: one head, null)")
    side = cfg["sample_size"]
    if isinstance(side, (list, tuple)):
        if len(side) != 2 or side[0] != side[1]:
            bad.append(f"sample_size is {side} (ours: square images)")
        side = side[0]
    if bad:
        raise _refused(source, bad)
    model = {
        "in_channels": 3,
        "hid_channels": hid,
        "ch_multipliers": [c // hid for c in channels],
        "num_res_blocks": cfg["layers_per_block"],
        "apply_attn": attn,
        "drop_rate": float(cfg["dropout"]),
        "resample_with_conv": True,
    }
    return model, int(side) if side is not None else 64


def diffusion_config(raw: dict, *, source: os.PathLike) -> dict:
    """Our ``diffusion`` config section of a DDPMScheduler ``scheduler_config.json`` ({}: its defaults)."""
    cls = raw.get("_class_name", "DDPMScheduler")
    cfg = {**SCHEDULER_DEFAULTS, **{k: v for k, v in raw.items() if not k.startswith("_")}}
    bad = [] if cls == "DDPMScheduler" else [f"_class_name is {json.dumps(cls)} (only DDPMScheduler maps)"]
    for key, table in (
        ("beta_schedule", SCHEDULES),
        ("variance_type", VARIANCES),
        ("prediction_type", PREDICTIONS),
    ):
        if cfg[key] not in table:
            bad.append(f"{key} is {json.dumps(cfg[key])} (ours: {', '.join(table)})")
    for key, want in (("clip_sample", True), ("clip_sample_range", 1.0), ("thresholding", False)):
        if cfg[key] != want:
            bad.append(f"{key} is {json.dumps(cfg[key])} (ours clips x_0 to [-1, 1] when sampling)")
    if cfg["rescale_betas_zero_snr"]:
        bad.append("rescale_betas_zero_snr is true (ours: false)")
    T = cfg["num_train_timesteps"]
    schedule = (SCHEDULES.get(cfg["beta_schedule"]), float(cfg["beta_start"]), float(cfg["beta_end"]))
    if cfg["trained_betas"] is not None:
        schedule = _named_schedule(np.asarray(cfg["trained_betas"], dtype=np.float64))
        if schedule is None:
            bad.append("trained_betas are not one of ours (linear, quad, cosine, const, warmup10/50, jsd)")
        elif len(cfg["trained_betas"]) != T:
            bad.append(f"trained_betas has {len(cfg['trained_betas'])} entries, num_train_timesteps {T}")
    if bad:
        raise _refused(source, bad)
    return {
        "timesteps": T,
        "beta_schedule": schedule[0],
        "beta_start": schedule[1],
        "beta_end": schedule[2],
        "model_mean_type": PREDICTIONS[cfg["prediction_type"]],
        "model_var_type": VARIANCES[cfg["variance_type"]],
    }


def _named_schedule(betas: np.ndarray) -> tuple[str, float, float] | None:
    """(name, beta_start, beta_end) of our schedule equal to ``betas`` to float32 precision."""
    if betas.ndim != 1 or len(betas) < 2:
        return None
    start, end = float(betas[0]), float(betas[-1])
    for name, fn in BETA_SCHEDULES.items():
        if np.allclose(fn(start, end, len(betas)), betas, rtol=1e-6, atol=1e-12):
            return name, start, end
    return None


def _module_pairs(levels: int, blocks: int, attn: list[bool]) -> list[tuple[str, str, str]]:
    """(diffusers module, our module, kind) for every module with weights; kind is
    ``plain`` (weight and bias as they are), ``resnet`` or ``attention``."""
    pairs = [("conv_in", "in_conv", "plain")]
    pairs += [
        ("time_embedding.linear_1", "embed.0", "plain"),
        ("time_embedding.linear_2", "embed.2", "plain"),
    ]
    for i in range(levels):
        for j in range(blocks):
            ours = f"downsamples.level_{i}.{j}"
            pairs.append((f"down_blocks.{i}.resnets.{j}", ours + ".0" * attn[i], "resnet"))
            if attn[i]:
                pairs.append((f"down_blocks.{i}.attentions.{j}", ours + ".1", "attention"))
        if i < levels - 1:
            pairs.append(
                (f"down_blocks.{i}.downsamplers.0.conv", f"downsamples.level_{i}.{blocks}.1", "plain")
            )
    pairs += [
        ("mid_block.resnets.0", "middle.0", "resnet"),
        ("mid_block.attentions.0", "middle.1", "attention"),
        ("mid_block.resnets.1", "middle.2", "resnet"),
    ]
    for k in range(levels):
        i = levels - 1 - k
        for j in range(blocks + 1):
            ours = f"upsamples.level_{i}.{j}"
            pairs.append((f"up_blocks.{k}.resnets.{j}", ours + ".0" * attn[i], "resnet"))
            if attn[i]:
                pairs.append((f"up_blocks.{k}.attentions.{j}", ours + ".1", "attention"))
        if i > 0:
            pairs.append((f"up_blocks.{k}.upsamplers.0.conv", f"upsamples.level_{i}.{blocks + 1}.1", "plain"))
    return [*pairs, ("conv_norm_out", "out_conv.0", "plain"), ("conv_out", "out_conv.2", "plain")]


def to_ours(sd: dict[str, torch.Tensor], model: dict, *, source: os.PathLike) -> dict[str, torch.Tensor]:
    """A UNet2DModel state dict as ours (``model``: our config section); every key used once."""
    sd = {_new_attention_name(k): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise UserError(
                f"{source}: weights lack {key}, which its config.json implies; re-save the folder"
            )
        return sd.pop(key)

    pairs = _module_pairs(len(model["ch_multipliers"]), model["num_res_blocks"], model["apply_attn"])
    for theirs, ours, kind in pairs:
        if kind == "plain":
            out.update({f"{ours}.{p}": take(f"{theirs}.{p}") for p in ("weight", "bias")})
        elif kind == "resnet":
            subs = _RESNET + ((("conv_shortcut", "skip"),) if f"{theirs}.conv_shortcut.weight" in sd else ())
            out.update(
                {f"{ours}.{b}.{p}": take(f"{theirs}.{a}.{p}") for a, b in subs for p in ("weight", "bias")}
            )
        else:
            out.update({f"{ours}.norm.{p}": take(f"{theirs}.group_norm.{p}") for p in ("weight", "bias")})
            qkv = [_as_linear(take(f"{theirs}.to_{n}.weight")) for n in "qkv"]
            out[f"{ours}.project_in.weight"] = torch.cat(qkv)[:, :, None, None]  # (3C, C, 1, 1)
            out[f"{ours}.project_in.bias"] = torch.cat([take(f"{theirs}.to_{n}.bias") for n in "qkv"])
            out[f"{ours}.project_out.weight"] = _as_linear(take(f"{theirs}.to_out.0.weight"))[
                :, :, None, None
            ]
            out[f"{ours}.project_out.bias"] = take(f"{theirs}.to_out.0.bias")
    if sd:
        raise UserError(f"{source}: {len(sd)} weights do not map onto the UNet, e.g. {sorted(sd)[0]}")
    return out


def from_ours(sd: dict[str, torch.Tensor], model: dict) -> dict[str, torch.Tensor]:
    """Our state dict as UNet2DModel's (the inverse of :func:`to_ours`)."""
    sd, out = dict(sd), {}
    pairs = _module_pairs(len(model["ch_multipliers"]), model["num_res_blocks"], list(model["apply_attn"]))
    for theirs, ours, kind in pairs:
        if kind == "plain":
            out.update({f"{theirs}.{p}": sd.pop(f"{ours}.{p}") for p in ("weight", "bias")})
        elif kind == "resnet":
            subs = _RESNET + ((("conv_shortcut", "skip"),) if f"{ours}.skip.weight" in sd else ())
            out.update(
                {f"{theirs}.{a}.{p}": sd.pop(f"{ours}.{b}.{p}") for a, b in subs for p in ("weight", "bias")}
            )
        else:
            out.update({f"{theirs}.group_norm.{p}": sd.pop(f"{ours}.norm.{p}") for p in ("weight", "bias")})
            weights = sd.pop(f"{ours}.project_in.weight")[:, :, 0, 0].chunk(3)
            biases = sd.pop(f"{ours}.project_in.bias").chunk(3)
            for n, w, b in zip("qkv", weights, biases):
                out[f"{theirs}.to_{n}.weight"], out[f"{theirs}.to_{n}.bias"] = w, b
            out[f"{theirs}.to_out.0.weight"] = sd.pop(f"{ours}.project_out.weight")[:, :, 0, 0]
            out[f"{theirs}.to_out.0.bias"] = sd.pop(f"{ours}.project_out.bias")
    assert not sd, f"keys left over: {sorted(sd)[:3]}"
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The weights file of a model folder: .safetensors, else .bin (weights only, never code)."""
    for name in WEIGHTS:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".safetensors"):
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                return load_file(str(path))
            except (SafetensorError, OSError) as exc:
                raise UserError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
        from ddpm_lens.core.checkpoint import read_checkpoint

        sd = read_checkpoint(path)
        if not (isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values())):
            raise UserError(f"checkpoint {path} is not a state dict (name -> tensor)")
        return sd
    found = sorted(p.name for p in folder.glob("diffusion_pytorch_model*")) if folder.is_dir() else []
    raise UserError(
        f"{folder} has no {WEIGHTS[0]} or {WEIGHTS[1]}"
        + (f" (found {', '.join(found)}: variants and shards are not read)" if found else "")
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found: the diffusers folder is incomplete") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object")
    return data


def _refused(source: os.PathLike, bad: list[str]) -> UserError:
    return UserError(f"{source} does not map exactly onto the ddpm-lens UNet: {'; '.join(bad)}")


def _no_prefix(block: Any) -> Any:
    return block[len("UNetRes") :] if isinstance(block, str) and block.startswith("UNetRes") else block


def _new_attention_name(key: str) -> str:
    """``...attentions.N.query.weight`` -> ``...attentions.N.to_q.weight`` (pre-0.14 files)."""
    parts = key.split(".")
    if len(parts) >= 4 and parts[-4] == "attentions" and parts[-2] in _LEGACY_ATTENTION:
        return ".".join([*parts[:-2], _LEGACY_ATTENTION[parts[-2]], parts[-1]])
    return key


def _as_linear(w: torch.Tensor) -> torch.Tensor:
    return w[:, :, 0, 0] if w.dim() == 4 else w  # some conversions store q/k/v as 1x1 convs
