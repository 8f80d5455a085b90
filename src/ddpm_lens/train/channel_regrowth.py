"""CS training (the study's SparseUNet): masked channels collect gradient, and regrow at stage changes.

After each optimizer step's backward (before clipping), every *masked* bottleneck channel c
adds ``sum_{i, kh, kw} |dL/dW[c, i, kh, kw]|`` of ``middle[0].conv2.weight`` (the middle block's
first residual block) to ``channel_grad_accum[c]``. At a stage change the mask grows to the
stage's target: ``max(1, int(C (1 - target)))`` active channels, the new ones being the masked
channels with the largest accumulated gradient (``"gradient"``) or a seeded random choice
(``"random"``); they record the stage as their birth stage, and the accumulator restarts from
zero. Channels are never masked again, and a stage that needs no new channels leaves the
accumulator as it is (so the first regrowth of the study's runs uses two stages of gradient).

The study accumulates on every micro-batch's backward; here it happens once per optimizer step,
on the summed gradient, which is the same with ``num_accum = 1`` (the study's setting).
"""

from __future__ import annotations

import torch

from ddpm_lens.core.sparse_unet import SparseUNet, active_count


@torch.no_grad()
def accumulate_mask_gradients(model: SparseUNet) -> None:
    """Add this step's |grad| of ``middle[0].conv2.weight`` per output channel to masked channels."""
    grad = model.middle[0].conv2.weight.grad  # (C, C, 3, 3)
    if grad is None:
        return
    per_channel = grad.abs().sum(dim=(1, 2, 3))  # (C,)
    masked = model.channel_mask == 0
    model.channel_grad_accum.add_(torch.where(masked, per_channel, torch.zeros_like(per_channel)))


def regrowth_choice(
    accum: torch.Tensor, mask: torch.Tensor, n: int, method: str, generator: torch.Generator
) -> torch.Tensor:
    """Indices of the ``n`` masked channels to activate (at most as many as are masked), on the CPU.

    ``gradient``: the largest ``accum`` among masked channels; ``random``: a permutation drawn
    from ``generator`` (a CPU generator).
    """
    masked = torch.nonzero(mask.cpu() == 0).flatten()
    n = min(n, len(masked))
    if method == "gradient":
        return masked[torch.topk(accum.cpu()[masked], n).indices]
    if method == "random":
        return masked[torch.randperm(len(masked), generator=generator)[:n]]
    raise ValueError(f"unknown regrowth method {method!r}")


@torch.no_grad()
def regrow_channels(
    model: SparseUNet, target_sparsity: float, stage: int, *, method: str, generator: torch.Generator
) -> int:
    """Activate channels up to ``target_sparsity``; returns how many were activated (0: nothing changes)."""
    need = active_count(model.bottleneck_channels, target_sparsity) - model.active_channels
    if need <= 0 or bool(model.channel_mask.all()):
        return 0
    chosen = regrowth_choice(model.channel_grad_accum, model.channel_mask, need, method, generator)
    chosen = chosen.to(model.channel_mask.device)
    model.channel_mask[chosen] = 1.0
    model.channel_birth_stage[chosen] = stage
    model.channel_grad_accum.zero_()
    return len(chosen)
