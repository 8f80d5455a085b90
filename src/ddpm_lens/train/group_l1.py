"""CR training (the study's RegUNet): a group-L1 penalty on the convs that feed the bottleneck.

The penalty is ``lambda * sum over layers sum over output channels c of ||W[c]||_2`` (W[c] the
flattened weights of output channel c; biases do not count), over the conv layers inside the
deepest down level's last residual block, ``downsamples.level_{L-1}.{R-1}`` (the study's refined
``get_bottleneck_adjacent_conv_layers``: for CelebA-64 its ``conv1`` and ``conv2``, 512 groups;
a 1x1 skip conv or attention projections there would count too). The training loss is
``mean(MSE) + penalty / b``, with b the batch of the process's micro-step, as the study divides it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ddpm_lens.core.unet import UNet


def bottleneck_adjacent_convs(model: UNet) -> list[tuple[str, nn.Module]]:
    """(path, module) of every conv layer inside the deepest down level's last residual block."""
    level, block = len(model.ch_multipliers) - 1, model.num_res_blocks - 1
    prefix = f"downsamples.level_{level}.{block}"
    module = model.downsamples[f"level_{level}"][block]
    return [
        (f"{prefix}.{name}" if name else prefix, m)
        for name, m in module.named_modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]


def group_l1(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_layers sum_c ||W[c].flatten()||_2`` over (C_out, ...) weight tensors (0-d tensor)."""
    return torch.stack([w.flatten(1).norm(dim=1).sum() for w in weights]).sum()
