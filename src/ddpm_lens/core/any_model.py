"""Any PyTorch denoiser through the same analyses: the contract, module-path taps, import paths.

The contract a model must meet (README, "Other backbones"):

- ``forward(x, t)``: ``x`` (B, C, H, W) float32 images scaled to [-1, 1] (noised as
  ``sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``), ``t`` (B,) int64 DDPM timesteps in [0, T);
  returns (B, C, H, W): the noise eps, or x_0 when the config's ``diffusion.model_mean_type`` is
  ``x_0``.
- its weights are a state dict whose keys match ``named_parameters()`` / buffers exactly
  (checked like a UNet's: missing, unexpected and mis-shaped keys are named).
- layers are its module paths (``mid_block.attn``), checked against ``named_modules()``; a tap's
  output must be a tensor: (B, C, H, W) maps as they are, (B, L, D) tokens with L a square
  number as (B, D, sqrt L, sqrt L) maps (a model can say better with a
  ``tokens_to_map(out)`` method, as :class:`~ddpm_lens.core.uvit.UViT` does), (B, D) as
  (B, D, 1, 1).

A class given by import path (``"pkg.module:Class"``) is imported only by :func:`build_module`,
which only runs when a user passes that path explicitly (never from a config or checkpoint).
"""

from __future__ import annotations

import difflib
import importlib
import math
from typing import Any

import torch
from torch import nn

from ddpm_lens.util.errors import UserError


def module_layer_table(model: nn.Module) -> dict[str, str]:
    """A model without a table of its own: its top-level children (name -> path), in order."""
    return {name: name for name, _ in model.named_children()}


def module_layer_channels(model: nn.Module) -> dict[str, int]:
    """Unknown before a forward pass: nothing (callers treat a missing entry as unknown)."""
    return {}


def check_module_path(
    model: nn.Module, path: str, *, table: tuple[str, ...] = (), presets: tuple[str, ...] = ()
) -> None:
    """A one-line UserError when ``path`` is neither a module path of ``model`` nor (checked by the
    caller) a layer name: it lists the layer names and presets and the closest module paths."""
    names = [n for n, _ in model.named_modules() if n]
    if path in names:
        return
    close = difflib.get_close_matches(path, [*table, *names], n=5, cutoff=0.5)
    raise UserError(
        f"unknown layer '{path}' (valid: {', '.join(table)}; presets: {', '.join(presets)}; or a module "
        f"path of model.named_modules(), closest: {', '.join(close) or 'none'})"
    )


def as_map(model: nn.Module, out: Any, name: str) -> torch.Tensor:
    """A tap's output as (B, C, H, W) maps (see the module docstring)."""
    if isinstance(out, (tuple, list)) and out and torch.is_tensor(out[0]):
        out = out[0]
    if not torch.is_tensor(out):
        raise UserError(
            f"layer '{name}' returns {type(out).__name__}, not a tensor: tap a module that returns one"
        )
    to_map = getattr(model, "tokens_to_map", None)
    if to_map is not None:
        out = to_map(out)
    if out.dim() == 4:
        return out
    if out.dim() == 2:
        return out[:, :, None, None]
    if out.dim() == 3 and math.isqrt(out.shape[1]) ** 2 == out.shape[1]:
        side = math.isqrt(out.shape[1])
        return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], side, side)
    raise UserError(
        f"layer '{name}' returns shape {tuple(out.shape)}: not (B, C, H, W) maps, (B, L, D) tokens with "
        "L square, or (B, D); give the model a tokens_to_map(out) method or tap another module"
    )


def build_module(spec: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """``"pkg.module:Class"`` plus keyword arguments -> an instance. Imports user code: call it only
    with a path a user passed explicitly."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"model class '{spec}' is not an import path: write it as 'pkg.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(
            f"model class '{spec}': cannot import {module_name} ({exc}); check PYTHONPATH"
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"model class '{spec}': {module_name} has no attribute '{attr}'")
        obj = getattr(obj, part)
    try:
        model = obj(**(kwargs or {}))
    except TypeError as exc:
        raise UserError(f"model class '{spec}' rejects the keyword arguments {kwargs}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model class '{spec}' built a {type(model).__name__}, not a torch.nn.Module")
    return model
