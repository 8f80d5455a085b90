"""The study's CS model: a UNet whose bottleneck output is multiplied by a channel mask.

C = ``hid_channels * ch_multipliers[-1]`` bottleneck channels (256 for CelebA-64). Three
buffers, named and typed as the study's ``SparseUNet`` keeps them so that checkpoints load
both ways with ``strict=True``:

- ``channel_mask`` float32 (C,): 1 active, 0 masked; applied to the output of ``middle``,
  before the decoder (the encoder's skip tensors are not masked);
- ``channel_birth_stage`` int64 (C,): the curriculum stage in which a channel became active
  (0 for the initial ones);
- ``channel_grad_accum`` float32 (C,): the summed |gradient| that masked channels have
  collected since the last regrowth (see ``ddpm_lens.train.channel_regrowth``).

The initial mask keeps ``max(1, int(C * (1 - initial_sparsity)))`` channels active, chosen by a
random permutation drawn from ``mask_seed`` (the study draws it from torch's global generator).
"""

from __future__ import annotations

import torch

from ddpm_lens.core.unet import UNet
from ddpm_lens.util.errors import UserError

MASK_BUFFERS = ("channel_mask", "channel_birth_stage", "channel_grad_accum")
INTEGER_BUFFERS = ("channel_birth_stage",)  # the one tensor of a model that holds integers


def active_count(channels: int, sparsity: float) -> int:
    """Channels left active at ``sparsity`` (share masked): ``max(1, int(C * (1 - sparsity)))``."""
    return max(1, int(channels * (1 - sparsity)))


def initial_mask(channels: int, sparsity: float, seed: int) -> torch.Tensor:
    """(C,) float32 of 0/1 with :func:`active_count` ones at seeded random positions."""
    perm = torch.randperm(channels, generator=torch.Generator().manual_seed(seed), device="cpu")
    mask = torch.zeros(channels, device="cpu")
    mask[perm[: active_count(channels, sparsity)]] = 1.0
    return mask


class SparseUNet(UNet):
    """A :class:`UNet` plus the study's bottleneck channel mask and its two companion buffers."""

    def __init__(self, *, initial_sparsity: float = 0.8, mask_seed: int = 0, **unet_kwargs):
        super().__init__(**unet_kwargs)
        self.initial_sparsity = initial_sparsity
        c = self.bottleneck_channels
        mask = initial_mask(c, initial_sparsity, mask_seed).to(self.in_conv.weight.device)
        self.register_buffer("channel_mask", mask)
        self.register_buffer("channel_birth_stage", torch.zeros(c, dtype=torch.long))
        self.register_buffer("channel_grad_accum", torch.zeros(c))

    @property
    def bottleneck_channels(self) -> int:
        return self.hid_channels * self.ch_multipliers[-1]

    def channel_mask_or_none(self) -> torch.Tensor:
        return self.channel_mask

    @property
    def active_channels(self) -> int:
        """Number of active bottleneck channels (one host sync)."""
        return int(self.channel_mask.sum().item())


def check_mask_buffers(model: UNet, state_dict: dict[str, torch.Tensor], *, ckpt: str, config: str) -> None:
    """A one-line UserError naming the mask buffer when ``state_dict`` and ``model`` disagree on it:
    a CS model needs all three buffers with one entry per bottleneck channel; a plain model none."""
    if not isinstance(model, SparseUNet):
        present = [k for k in MASK_BUFFERS if k in state_dict]
        if present:
            raise UserError(
                f"checkpoint {ckpt} carries a CS mask buffer ('{present[0]}') but config {config} has no "
                "enabled 'sparsity' section: pass the CS run's config (e.g. configs/celeba64_cs.json)"
            )
        return
    c = model.bottleneck_channels
    for name in MASK_BUFFERS:
        buf = state_dict.get(name)
        if buf is None:
            raise UserError(
                f"checkpoint {ckpt} has no '{name}' buffer, but config {config} enables sparsity (the "
                "study's CS model, SparseUNet): pass a CS run's checkpoint, or a config without sparsity"
            )
        if tuple(buf.shape) != (c,):
            raise UserError(
                f"checkpoint {ckpt}: '{name}' has shape {list(buf.shape)}, but the CS model of config "
                f"{config} has {c} bottleneck channels (hid_channels x ch_multipliers[-1]): pass the run's "
                "own config"
            )
