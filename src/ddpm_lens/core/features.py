"""Activations of named UNet layers, tapped with forward hooks (never a second forward).

Layer names come from :func:`ddpm_lens.core.unet.layer_table`; presets expand to several::

    feats = extract_features(model, x, t, ["seed"])        # the study's six layers
    feats["encoder_level_2"].shape                          # (B, 256, 8, 8): level 2's downsample
    feats = extract_features(model, x, t, ["blocks"])      # the blocks before each downsample
    feats["encoder_block_2"].shape                          # (B, 256, 16, 16)

The forward pass stops as soon as the deepest requested layer has run, so encoder-only
requests never run the decoder. Hooks live in :func:`hooked`, which always removes them
and restores the model's train/eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

import torch
from torch import nn

from ddpm_lens.core.any_model import as_map, check_module_path
from ddpm_lens.core.unet import UNet, layer_table
from ddpm_lens.core.uvit import UViT, uvit_seed_layers

SEED_LAYERS = (
    "in_conv",
    "encoder_level_0",
    "encoder_level_1",
    "encoder_level_2",
    "encoder_level_3",
    "bottleneck",
)


def layer_presets(model: UNet) -> dict[str, list[str]]:
    """``seed``: the study's six taps; ``blocks``: the same with each level's last residual block
    (before its downsample) in place of ``encoder_level_i``; ``encoder``, ``decoder``, ``all``.

    A U-ViT's ``seed`` (and ``blocks``) is ``patch_embed``, ``in_block_i`` and ``mid_block``
    (:func:`~ddpm_lens.core.uvit.uvit_seed_layers`); ``encoder`` the same, ``decoder`` the out
    blocks. Any other module: every preset is its top-level children."""
    names = list(layer_table(model))
    if isinstance(model, UViT):
        seed = uvit_seed_layers(model)
        return {
            "seed": seed,
            "blocks": seed,
            "encoder": seed,
            "decoder": [n for n in names if n.startswith("out_block_")],
            "all": names,
        }
    if not isinstance(model, UNet):
        return {"seed": names, "blocks": names, "encoder": names, "decoder": names, "all": names}
    return {
        "seed": [n for n in SEED_LAYERS if n in names],
        "blocks": [n for n in names if n in ("in_conv", "bottleneck") or n.startswith("encoder_block_")],
        "encoder": [n for n in names if n.startswith(("in_conv", "encoder_"))],
        "decoder": [n for n in names if n.startswith("decoder_")],
        "all": names,
    }


def resolve_layers(model: UNet, requested: Sequence[str]) -> list[str]:
    """Expand presets and check names; returns unique layer names in forward order.

    A name that is neither a layer name nor a preset may be a module path (``mid_block.attn``,
    ``downsamples.level_2.1``): checked against ``named_modules()`` (a one-line error lists the
    closest names), and returned after the named layers, in ``named_modules()`` order."""
    table = layer_table(model)
    presets = layer_presets(model)
    wanted: set[str] = set()
    paths: set[str] = set()
    for name in requested:
        if name in presets:
            wanted.update(presets[name])
        elif name in table:
            wanted.add(name)
        else:
            check_module_path(model, name, table=tuple(table), presets=tuple(presets))
            paths.add(name)
    named = [n for n in table if n in wanted]
    return named + [n for n, _ in model.named_modules() if n in paths and n not in named]


class _StopForward(Exception):
    """Raised by the last hook to end the forward pass early."""


@contextmanager
def hooked(
    model: UNet, layers: Sequence[str], *, stop_early: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Capture the outputs of ``layers`` (resolved names) into the yielded dict.

    With ``stop_early``, the hook of the deepest layer raises an internal exception that
    :func:`run_until` swallows; the model is left in eval mode inside the block and its
    previous mode is restored afterwards.
    """
    modules = dict(model.named_modules())
    table = layer_table(model)
    captured: dict[str, torch.Tensor] = {}
    # module paths need not run in named_modules() order: then the forward runs to its end
    stop_early = stop_early and all(name in table for name in layers)
    last = layers[-1] if layers else None
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor):
            captured[name] = as_map(model, output, name).detach()
            if stop_early and name == last:
                raise _StopForward

        return hook

    was_training = model.training
    try:
        for name in layers:
            handles.append(modules[table.get(name, name)].register_forward_hook(make_hook(name)))
        model.eval()
        yield captured
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def run_until(model: UNet, x: torch.Tensor, t: torch.Tensor) -> None:
    """Run the forward pass; an early stop raised by a hook ends it quietly."""
    with suppress(_StopForward):
        model(x, t)


@torch.inference_mode()
def extract_features(
    model: UNet, x: torch.Tensor, t: torch.Tensor | int, layers: Sequence[str], *, stop_early: bool = True
) -> dict[str, torch.Tensor]:
    """Activations ``{layer: (B, C, H, W)}`` of ``model`` on inputs ``x`` (B, C, H, W) at timesteps ``t``.

    ``layers`` may hold layer names and presets (``seed``, ``encoder``, ``decoder``, ``all``).
    """
    names = resolve_layers(model, layers)
    if not torch.is_tensor(t) or t.dim() == 0:
        t = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    with hooked(model, names, stop_early=stop_early) as captured:
        run_until(model, x, t.to(x.device))
    return {name: captured[name] for name in names}
