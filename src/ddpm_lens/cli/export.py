"""Export a checkpoint's weights (EMA by default) as a .safetensors file.

Example::

    ddpm-lens export --ckpt chkpts/celeba/celeba_600.pt --config configs/celeba.json \\
        --output celeba.safetensors
"""

from __future__ import annotations

import argparse

HELP = "export a checkpoint's weights to .safetensors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, help="checkpoint file (ddpm-torch or ddpm-lens)")
    p.add_argument(
        "--config",
        default=None,
        help="JSON config to check the weights against (optional for ddpm-lens checkpoints)",
    )
    p.add_argument("--output", required=True, help=".safetensors file to write")
    p.add_argument("--no_ema", dest="use_ema", action="store_false", help="export the raw training weights")


def run(args: argparse.Namespace) -> int:
    from ddpm_lens.core.checkpoint import check_fit, export_safetensors, load_weights, resolve_config
    from ddpm_lens.core.sparse_unet import check_mask_buffers
    from ddpm_lens.core.unet import build_unet
    from ddpm_lens.util.errors import UserError

    if not args.output.endswith(".safetensors"):
        raise UserError(f"--output {args.output} must end in .safetensors")
    weights = load_weights(args.ckpt, use_ema=args.use_ema)
    cfg = resolve_config(args.config, weights) if (args.config or weights.config) else None
    if cfg is not None:
        import torch

        with torch.device("meta"):
            model = build_unet(cfg.model, sparsity=cfg.sparsity)
        check_mask_buffers(model, weights.state_dict, ckpt=args.ckpt, config=cfg.source)
        check_fit(model, weights.state_dict, ckpt=args.ckpt, config=cfg.source)
    export_safetensors(weights, args.output, config=cfg.to_dict() if cfg is not None else None)
    print(f"wrote {weights.description} of {args.ckpt} to {args.output}")
    return 0
