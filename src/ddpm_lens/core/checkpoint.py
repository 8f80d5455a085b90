"""Checkpoints: safe loading of ddpm-torch and ddpm-lens files, atomic saving, naming.

Accepted files:

- ddpm-torch trainer files: ``{"model", "optimizer", "scheduler", "ema": {"shadow", ...}, "epoch"}``
- the same with DDP's ``module.`` (or torch.compile's ``_orig_mod.``) key prefixes
- bare state dicts (name -> tensor), ``.pt`` or ``.safetensors``
- ddpm-lens trainer files: ddpm-torch's keys plus ``config`` and ``sampler``
- the study's CurriculumTrainer files (sun-messi/curriculum-sparse-reg): ddpm-torch's keys plus
  ``curriculum_stage`` (int, 0-based; -1 without a curriculum), ``curriculum_config`` and
  ``timestamp``; a CS (SparseUNet) file has its mask buffers in ``model`` only, since
  ``ema.shadow`` holds parameters: EMA weights then take the buffers from ``model``
- diffusers ``UNet2DModel`` folders, converted with their config (:mod:`ddpm_lens.core.diffusers_format`)
- the study's U-ViT ``<step>.ckpt/`` folders (``nnet.pth``, ``nnet_ema.pth``; core/uvit_checkpoint.py)

Loading always uses ``torch.load(weights_only=True)``: a file that would run pickled code is
refused, never executed. Files are memory-mapped, so reading the EMA weights of a large
trainer file touches only those weights' pages::

    model, diffusion, cfg = load_model("configs/celeba.json", "chkpts/celeba/celeba_16.pt")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ddpm_lens.core.config import Config, ModelConfig, SparsityConfig, config_from_dict, load_config
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.core.fit_check import check_fit, infer_model_config  # noqa: F401  (re-exported)
from ddpm_lens.core.safe_load import read_checkpoint
from ddpm_lens.core.sparse_unet import INTEGER_BUFFERS, MASK_BUFFERS, check_mask_buffers
from ddpm_lens.core.unet import UNet, build_unet
from ddpm_lens.util.atomic import atomic_path, disk_full_reported
from ddpm_lens.util.errors import UserError, warn

log = logging.getLogger("ddpm_lens")

_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class Weights:
    """A state dict picked out of a checkpoint file, and where it came from."""

    state_dict: dict[str, torch.Tensor]
    which: str  # "ema" | "model" | "state_dict" | "diffusers"
    path: str
    epoch: int | None
    config: dict | None  # the run config stored by ddpm-lens, if any
    curriculum_stage: int | None = None  # the study's key: 0-based stage at saving, -1 without stages
    stage_name: str | None = None  # that stage's name in the file's curriculum_config
    timestamp: str | None = None  # the study's key: when the file was saved (YYYYmmdd_HHMMSS)
    step: int | None = None  # a U-ViT folder's training step (its name, ``<step>.ckpt``); it has no epoch

    @property
    def description(self) -> str:
        return {
            "ema": "EMA weights (ema.shadow)",
            "model": "raw training weights (model)",
            "state_dict": "bare state dict",
            "diffusers": "diffusers UNet2DModel weights",
        }[self.which]


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP ``module.`` / torch.compile ``_orig_mod.`` prefixes shared by every key."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state_dict and all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
                changed = True
    return state_dict


def parse_epoch(path: str | os.PathLike) -> int | None:
    """Epoch from ``<name>_<epoch>.pt`` or ``<name>_<YYYYmmdd_HHMMSS>_<epoch>.pt`` (last digit group)."""
    m = re.search(r"_(\d+)$", Path(path).stem)
    return int(m.group(1)) if m else None


def checkpoint_name(name: str, epoch: int, when: datetime | None = None) -> str:
    """Our runs' file name: ``<name>_<YYYYmmdd_HHMMSS>_<epoch>.pt``."""
    return f"{name}_{(when or datetime.now()).strftime('%Y%m%d_%H%M%S')}_{epoch}.pt"


def _read_safetensors(path: Path) -> Weights:
    """A .safetensors file: its tensors, and what ``export_safetensors`` put in its metadata."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        config = json.loads(meta["config"]) if "config" in meta else None
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
    which = meta.get("weights", "state_dict")
    epoch = int(meta["epoch"]) if meta.get("epoch", "").isdigit() else parse_epoch(path)
    return Weights(
        strip_prefixes(tensors),
        which if which in ("ema", "model") else "state_dict",
        str(path),
        epoch,
        config,
    )


def load_weights(path: str | os.PathLike, *, use_ema: bool = True, allow_nonfinite: bool = False) -> Weights:
    """Pick the weights to use out of any accepted checkpoint (.pt, .safetensors, a diffusers folder,
    a U-ViT ``<step>.ckpt/`` folder), checked by :func:`check_values`: float tensors only, and
    finite unless ``allow_nonfinite``."""
    weights = _pick_weights(path, use_ema=use_ema)
    check_values(weights, allow_nonfinite=allow_nonfinite)
    return weights


def check_values(weights: Weights, *, allow_nonfinite: bool = False) -> None:
    """One pass over the tensors a model will use: each must hold floats (the CS model's integer
    buffer ``channel_birth_stage`` aside; an integer or bool tensor would be cast silently) and,
    unless ``allow_nonfinite``, no NaN or inf (a diverged run). A one-line UserError names the tensor.

    Finiteness is read from each tensor's sum, one fast reduction (NaN and inf propagate into it);
    only a non-finite sum, which finite weights near the float's limit can also give, is checked
    element by element. For CelebA-64's EMA weights (136 MiB) it takes 33-46 ms, about 1.5 % of
    loading them from a trainer file (``benchmarks/nonfinite_check.py``).
    """
    for name, t in weights.state_dict.items():
        if not t.is_floating_point():
            if name in INTEGER_BUFFERS and t.dtype != torch.bool:
                continue
            raise UserError(
                f"checkpoint {weights.path}: '{name}' holds {t.dtype} values where float weights belong "
                "(they would be cast silently): pass a checkpoint saved with its float weights"
            )
        if allow_nonfinite or _sum_is_finite(t):
            continue
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise UserError(
                f"checkpoint {weights.path}: '{name}' ({weights.description}) holds {bad} NaN/inf value"
                f"{'s' if bad > 1 else ''} of {t.numel()}: the run diverged; pass an earlier checkpoint "
                "(visualize and export take --allow_nonfinite to load it anyway)"
            )


def _sum_is_finite(t: torch.Tensor) -> bool:
    """Whether ``t``'s sum is finite: one pass over its memory. numpy's single-threaded sum where it
    can (torch's two-thread team stalls whenever another process holds a core: 0.8 s instead of
    0.045 s for CelebA-64's EMA weights on a busy 2-core machine)."""
    if t.device.type == "cpu" and t.dtype in (torch.float16, torch.float32, torch.float64):
        with np.errstate(over="ignore"):  # finite weights near the float's limit: checked one by one
            return bool(np.isfinite(t.detach().numpy().sum()))
    return bool(torch.isfinite(t.sum(dtype=torch.float32)))


def _pick_weights(path: str | os.PathLike, *, use_ema: bool) -> Weights:
    from ddpm_lens.core.uvit_checkpoint import is_uvit_folder, read_uvit_folder

    if is_uvit_folder(path):  # the study's U-ViT runs: nnet.pth / nnet_ema.pth (core/uvit_checkpoint.py)
        state_dict, which, step = read_uvit_folder(path, use_ema=use_ema)
        return Weights(strip_prefixes(state_dict), which, str(path), None, None, step=step)
    if Path(path).is_dir():  # a diffusers folder: converted, with its config (core/diffusers_format.py)
        from ddpm_lens.core.diffusers_format import read_folder

        state_dict, config = read_folder(path)
        return Weights(state_dict, "diffusers", str(path), None, config)
    if Path(path).suffix == ".safetensors" and Path(path).is_file():
        return _read_safetensors(Path(path))
    obj = read_checkpoint(path)
    path = str(path)
    epoch = parse_epoch(path)
    if _is_state_dict(obj):
        return Weights(strip_prefixes(obj), "state_dict", path, epoch, None)
    if not isinstance(obj, dict) or not ({"model", "ema", "state_dict"} & set(obj)):
        raise UserError(
            f"checkpoint {path} holds no weights: expected a state dict or a trainer file with "
            "'model' / 'ema' entries"
        )
    if isinstance(obj.get("epoch"), int):
        epoch = obj["epoch"]
    config = obj.get("config") if isinstance(obj.get("config"), dict) else None
    extras = _stage_keys(obj)
    ema = obj.get("ema")
    if use_ema and isinstance(ema, dict) and _is_state_dict(ema.get("shadow")):
        shadow = _with_model_buffers(strip_prefixes(ema["shadow"]), obj.get("model"))
        return Weights(shadow, "ema", path, epoch, config, **extras)
    for key in ("model", "state_dict"):
        if _is_state_dict(obj.get(key)):
            if use_ema:
                warn(f"checkpoint {path} has no EMA weights; using its raw weights ('{key}')")
            return Weights(strip_prefixes(obj[key]), "model", path, epoch, config, **extras)
    raise UserError(
        f"checkpoint {path} holds no usable weights ('model' and 'ema.shadow' are missing or empty)"
    )


def _with_model_buffers(shadow: dict[str, torch.Tensor], model: Any) -> dict[str, torch.Tensor]:
    """EMA parameters plus the CS mask buffers that only ``model`` holds (the EMA keeps parameters)."""
    if not _is_state_dict(model):
        return shadow
    model = strip_prefixes(model)
    return {**shadow, **{k: model[k] for k in MASK_BUFFERS if k in model and k not in shadow}}


def _stage_keys(obj: dict) -> dict[str, Any]:
    """The study's ``curriculum_stage`` / ``timestamp`` (and the stage's name) as Weights fields."""
    stage = obj.get("curriculum_stage")
    stage = stage if isinstance(stage, int) and not isinstance(stage, bool) else None
    name = None
    cur = obj.get("curriculum_config")
    stages = cur.get("stages") if isinstance(cur, dict) else None
    if stage is not None and stage >= 0:
        entry = stages[stage] if isinstance(stages, list) and stage < len(stages) else {}
        name = entry.get("name") if isinstance(entry, dict) and isinstance(entry.get("name"), str) else None
        name = name or f"stage_{stage + 1}"
    stamp = obj.get("timestamp") if isinstance(obj.get("timestamp"), str) else None
    return {"curriculum_stage": stage, "stage_name": name, "timestamp": stamp}


def model_from_weights(
    weights: Weights,
    model_cfg: ModelConfig,
    *,
    config_name: str,
    device: str | torch.device = "cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
    sparsity: SparsityConfig | None = None,
) -> UNet:
    """Build the UNet for ``model_cfg`` and copy ``weights`` into it (strict).

    The model is built on the meta device and given uninitialised storage (no random init);
    the copy reads only these weights' pages of a memory-mapped file, and once the caller
    drops ``weights`` the mapping goes, so a trainer file costs the memory of the weights
    used (e.g. its EMA weights), not of the whole file. ``memory_format=torch.channels_last``
    lays the 4-D weights out as NHWC from the start (no second copy). With an enabled
    ``sparsity`` section the model is the study's CS model and the file must carry its mask
    buffers.
    """
    with torch.device("meta"):
        model = build_unet(model_cfg, sparsity=sparsity)
    check_mask_buffers(model, weights.state_dict, ckpt=weights.path, config=config_name)
    check_fit(model, weights.state_dict, ckpt=weights.path, config=config_name)
    _materialize(model, torch.device(device), memory_format)
    model.load_state_dict(weights.state_dict, strict=True)  # copies, casting to float32
    return model.eval()


def _materialize(model: nn.Module, device: torch.device, memory_format: torch.memory_format) -> None:
    """Give every meta parameter and buffer of ``model`` uninitialised storage on ``device``.

    What ``Module.to_empty`` does, but with plain ``torch.empty`` calls: ``to_empty`` goes
    through ``empty_like`` on meta tensors, whose first use is slow.
    """
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            fmt = memory_format if p.dim() == 4 else torch.contiguous_format
            empty = torch.empty(p.shape, dtype=p.dtype, device=device, memory_format=fmt)
            setattr(module, name, nn.Parameter(empty, requires_grad=p.requires_grad))
        for name, b in list(module.named_buffers(recurse=False)):
            setattr(module, name, torch.empty(b.shape, dtype=b.dtype, device=device))


def resolve_config(
    config_path: str | os.PathLike | None, weights: Weights, *, flag: str = "--config"
) -> Config:
    """The config file if given, else the one a ddpm-lens checkpoint carries, else the
    ``config.json`` beside the file (the study's run folders, ``chkpts/<name>/<run_timestamp>/``).
    ``flag``: the option of the calling command that passes a config, named in the error."""
    if config_path is not None:
        return load_config(config_path)
    if weights.config is not None:
        return config_from_dict(weights.config, source=f"{weights.path}:config")
    beside = Path(weights.path).parent / "config.json"
    if beside.is_file():
        return load_config(beside)
    from ddpm_lens.core.uvit_checkpoint import is_uvit_folder

    if is_uvit_folder(weights.path):
        raise UserError(
            f"U-ViT checkpoint {weights.path} carries no config: pass the run's config file with {flag} "
            f"(e.g. {flag} configs/celeba64_uvit_small.py, read without running it)"
        )
    raise UserError(
        f"checkpoint {weights.path} carries no config and has no config.json beside it: pass its JSON "
        f"config with {flag} (e.g. {flag} configs/celeba.json)"
    )


def load_checkpoint(
    config_path: str | os.PathLike | None,
    ckpt_path: str | os.PathLike,
    *,
    use_ema: bool = True,
    device: str | torch.device = "cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
    allow_nonfinite: bool = False,
) -> tuple[UNet, Weights, Config]:
    """The weights of a checkpoint, its config and the UNet built from both: ``(model,
    weights, config)``. Arguments in :func:`load_model`'s order; ``config_path`` may be None
    for files that carry their config. The returned ``weights`` describe the file (path, epoch, EMA or
    raw) but no longer hold the tensors, which live in the model; the file's memory map
    goes with them."""
    weights = load_weights(ckpt_path, use_ema=use_ema, allow_nonfinite=allow_nonfinite)
    cfg = resolve_config(config_path, weights)
    model = model_from_weights(
        weights,
        cfg.model,
        config_name=cfg.source,
        device=device,
        memory_format=memory_format,
        sparsity=cfg.sparsity,
    )
    return model, dataclasses.replace(weights, state_dict={}), cfg


def load_model(
    config_path: str | os.PathLike | None,
    ckpt_path: str | os.PathLike,
    use_ema: bool = True,
    device: str | torch.device = "cpu",
    *,
    model: nn.Module | str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, GaussianDiffusion, Config]:
    """Load a checkpoint into a UNet built from its config; returns ``(model, diffusion, config)``.

    ``use_ema`` picks ``ema.shadow`` when present (the weights used are logged on the
    ``ddpm_lens`` logger). ``config_path`` may be None for ddpm-lens checkpoints.

    Any other denoiser: pass ``model``, an ``nn.Module`` (or an import path ``"pkg.module:Class"``
    built with ``model_kwargs``; imported only because you passed it) meeting the contract of
    :mod:`ddpm_lens.core.any_model`; the checkpoint's weights (a bare state dict, or ``ema.shadow``
    / ``model`` of a trainer file; or ``ckpt_path`` a state dict itself) must fit it exactly, and
    the config (optional: the linear T=1000 eps-prediction DDPM without one) gives the diffusion
    and the dataset.
    """
    if model is not None:
        return _load_any_model(config_path, ckpt_path, model, model_kwargs, use_ema=use_ema, device=device)
    net, weights, cfg = load_checkpoint(config_path, ckpt_path, use_ema=use_ema, device=device)
    log.info("loaded %s from %s (epoch %s)", weights.description, weights.path, weights.epoch)
    return net, GaussianDiffusion.from_config(cfg.diffusion).to(device), cfg


def _load_any_model(
    config_path: str | os.PathLike | None,
    ckpt_path: str | os.PathLike | dict[str, torch.Tensor],
    model: nn.Module | str,
    model_kwargs: dict[str, Any] | None,
    *,
    use_ema: bool,
    device: str | torch.device,
) -> tuple[nn.Module, GaussianDiffusion, Config]:
    from ddpm_lens.core.any_model import build_module

    name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = build_module(model, model_kwargs)
    elif not isinstance(model, nn.Module):
        raise UserError(f"model must be a torch.nn.Module or an import path 'pkg.module:Class', got {name}")
    if isinstance(ckpt_path, dict):  # a state dict in memory
        weights = Weights(strip_prefixes(ckpt_path), "state_dict", "<state dict>", None, None)
    else:
        weights = load_weights(ckpt_path, use_ema=use_ema)
    cfg = load_config(config_path) if config_path is not None else Config(source=f"<{name}>")
    check_fit(model, weights.state_dict, ckpt=weights.path, config=f"model {name}")
    model.load_state_dict(weights.state_dict, strict=True)
    log.info("loaded %s from %s into %s", weights.description, weights.path, name)
    return model.to(device).eval(), GaussianDiffusion.from_config(cfg.diffusion).to(device), cfg


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike, *, fix: str = "free some space") -> None:
    """``torch.save`` through a temp file, fsync, then rename: a checkpoint is never half-written.
    A full disk is a one-line UserError naming the file and the space it needs (``fix`` says what to do)."""
    # through a file of ours: on a failure it is closed here, so its space is free again at once
    with (
        disk_full_reported(path, needed=tensor_bytes(obj), fix=fix),
        atomic_path(path) as tmp,
        open(tmp, "wb") as f,
    ):
        torch.save(obj, f)


def tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors in ``obj`` (nested dicts, lists, tuples): what saving it writes, about."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def export_safetensors(
    weights: Weights, path: str | os.PathLike, *, config: dict | None = None, fix: str = "free some space"
) -> None:
    """Write the chosen weights as a self-describing .safetensors file (atomically).

    The metadata records the source, which weights (``ema``/``model``), the epoch and the
    run config (``config`` or the one the checkpoint carried), so ``load_model(None, path)``
    works and no pickle is involved at all.
    """
    from safetensors.torch import save_file

    meta = {"source": weights.path, "weights": weights.which, "format": "ddpm-lens"}
    if weights.epoch is not None:
        meta["epoch"] = str(weights.epoch)
    if config or weights.config:
        meta["config"] = json.dumps(config or weights.config)
    tensors = {k: v.contiguous() for k, v in weights.state_dict.items()}
    with disk_full_reported(path, needed=tensor_bytes(tensors), fix=fix), atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
