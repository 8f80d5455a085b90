"""A ddpm-lens model as a diffusers ``DDPMPipeline`` folder (``ddpm-lens export --format diffusers``).

``model_index.json``, ``unet/config.json`` + ``unet/diffusion_pytorch_model.safetensors`` and
``scheduler/scheduler_config.json``: ``DDPMPipeline.from_pretrained(out)`` and
``UNet2DModel.from_pretrained(out, subfolder="unet")`` load it, and ddpm-lens reads it back
exactly (the key map and the config fields are :mod:`ddpm_lens.core.diffusers_format`'s).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ddpm_lens.core.checkpoint import tensor_bytes
from ddpm_lens.core.config import Config
from ddpm_lens.core.diffusers_format import (
    CONFIG,
    DIFFUSERS_VERSION,
    MODEL_INDEX,
    PREDICTIONS,
    SCHEDULER_CONFIG,
    SCHEDULER_DEFAULTS,
    SCHEDULES,
    UNET_REQUIRED,
    WEIGHTS,
    from_ours,
)
from ddpm_lens.core.schedules import get_beta_schedule
from ddpm_lens.util.atomic import check_writable, disk_full_reported
from ddpm_lens.util.errors import UserError


def unet_config(cfg: Config) -> dict:
    """``config.json`` of a UNet2DModel that is our UNet: every field written, so that no
    diffusers default (several differ from DDPM's) applies."""
    m = cfg.model
    bad = []
    if m.ch_multipliers[0] != 1:
        bad.append(
            f"model.ch_multipliers[0] is {m.ch_multipliers[0]} (diffusers' conv_in is level 0's width)"
        )
    if not m.resample_with_conv:
        bad.append("model.resample_with_conv is false (diffusers always resamples with a conv)")
    if m.in_channels != 3 or (m.out_channels or m.in_channels) != 3:
        bad.append("model.in_channels/out_channels are not 3")
    if bad:
        raise UserError(f"config {cfg.source} has no diffusers UNet2DModel equivalent: {'; '.join(bad)}")
    raw = {k: want for k, (want, _) in UNET_REQUIRED.items()}
    raw.update(
        sample_size=cfg.dataset.resolution,
        time_embedding_dim=None,
        down_block_types=["AttnDownBlock2D" if a else "DownBlock2D" for a in m.apply_attn],
        up_block_types=["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(m.apply_attn)],
        block_out_channels=[m.hid_channels * c for c in m.ch_multipliers],
        layers_per_block=m.num_res_blocks,
        dropout=m.drop_rate,
        act_fn="silu",
        attention_head_dim=None,
        attn_norm_num_groups=None,
        num_train_timesteps=None,
    )
    return {"_class_name": "UNet2DModel", "_diffusers_version": DIFFUSERS_VERSION, **raw}


def scheduler_config(cfg: Config) -> dict:
    """``scheduler_config.json`` of the DDPMScheduler with our schedule (a schedule diffusers
    has no name for is written as ``trained_betas``)."""
    d = cfg.diffusion
    means = {v: k for k, v in PREDICTIONS.items()}
    if d.model_mean_type not in means:
        raise UserError(
            f"config {cfg.source}: diffusion.model_mean_type {d.model_mean_type!r} has no diffusers "
            "prediction_type (eps or x_0)"
        )
    names = {v: k for k, v in SCHEDULES.items()}
    raw = {
        **SCHEDULER_DEFAULTS,
        "num_train_timesteps": d.timesteps,
        "beta_start": d.beta_start,
        "beta_end": d.beta_end,
        "beta_schedule": names.get(d.beta_schedule, "linear"),
        "variance_type": d.model_var_type.replace("-", "_"),
        "prediction_type": means[d.model_mean_type],
    }
    if d.beta_schedule not in names:
        betas = get_beta_schedule(
            d.beta_schedule, beta_start=d.beta_start, beta_end=d.beta_end, timesteps=d.timesteps
        )
        raw["trained_betas"] = betas.tolist()
    return {"_class_name": "DDPMScheduler", "_diffusers_version": DIFFUSERS_VERSION, **raw}


def check_output(out: str | os.PathLike, *, folder: bool, overwrite: bool) -> Path:
    """``export --output``, checked before any weights are read: a new path (or an empty
    folder), else with ``overwrite`` a file, or for ``folder`` outputs an earlier diffusers
    export (a folder with ``model_index.json``); never a folder of the user's own files."""
    out = Path(out)
    if out.is_dir() and not folder:
        raise UserError(f"--output {out} is a folder: pass a .safetensors file path")
    if out.exists() and folder and not out.is_dir():
        raise UserError(f"--output {out} is a file: pass a new folder for --format diffusers")
    if out.exists() and not (folder and not any(out.iterdir())):  # an empty folder is as good as none
        if folder and not (out / MODEL_INDEX).is_file():
            raise UserError(
                f"--output {out} is a folder that holds no diffusers pipeline (no {MODEL_INDEX}): "
                "pass a new folder"
            )
        if not overwrite:
            raise UserError(f"--output {out} exists: pass a new path, or --overwrite to replace it")
    check_writable(out.parent, flag="--output")
    return out


def write_folder(
    state_dict: dict[str, torch.Tensor], cfg: Config, out: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write a pipeline folder that ``DDPMPipeline.from_pretrained`` (and
    ``UNet2DModel.from_pretrained(out, subfolder="unet")``) loads. ``out`` must not exist or
    be empty, or with ``overwrite`` hold an earlier export (:func:`check_output`); the folder is
    assembled beside it and renamed into place, never half-written. A full disk is a one-line error."""
    from safetensors.torch import save_file

    out = check_output(out, folder=True, overwrite=overwrite)
    files = {
        "unet/" + CONFIG: unet_config(cfg),
        "scheduler/" + SCHEDULER_CONFIG: scheduler_config(cfg),
        MODEL_INDEX: {
            "_class_name": "DDPMPipeline",
            "_diffusers_version": DIFFUSERS_VERSION,
            "scheduler": ["diffusers", "DDPMScheduler"],
            "unet": ["diffusers", "UNet2DModel"],
        },
    }
    tensors = from_ours(state_dict, dataclasses.asdict(cfg.model))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    old = out.parent / f"{tmp.name}.old"
    fix = "free some space or pass an --output on another disk"
    try:
        with disk_full_reported(out, needed=tensor_bytes(tensors), fix=fix):
            for rel, data in files.items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            save_file(tensors, str(tmp / "unet" / WEIGHTS[0]), metadata={"format": "pt"})
        if out.exists():  # an empty folder, or an earlier export: set aside until the new one is in place
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out
