"""Export a checkpoint's weights (EMA by default) as a .safetensors file or a diffusers folder.

Examples::

    ddpm-lens export --ckpt chkpts/celeba/celeba_600.pt --config configs/celeba.json \\
        --output celeba.safetensors
    ddpm-lens export --ckpt chkpts/celeba/celeba_600.pt --config configs/celeba.json \\
        --format diffusers --output celeba-ddpm/

The diffusers folder is a DDPMPipeline (model_index.json, unet/, scheduler/): in Python,
``DDPMPipeline.from_pretrained("celeba-ddpm")`` or ``UNet2DModel.from_pretrained("celeba-ddpm",
subfolder="unet")``; ddpm-lens reads it back as it reads any diffusers folder.
"""

from __future__ import annotations

import argparse

HELP = "export a checkpoint's weights to .safetensors or a diffusers folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ckpt", required=True, help="checkpoint (ddpm-torch or ddpm-lens file, or a diffusers folder)"
    )
    p.add_argument(
        "--config",
        default=None,
        help="JSON config to check the weights against (optional for checkpoints that carry theirs)",
    )
    p.add_argument(
        "--format",
        choices=("safetensors", "diffusers"),
        default="safetensors",
        help="safetensors: one file, config in its metadata; diffusers: a DDPMPipeline folder "
        "(default: safetensors)",
    )
    p.add_argument(
        "--output", required=True, help=".safetensors file, or the new folder for --format diffusers"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --output file, or the folder of an earlier diffusers export",
    )
    p.add_argument("--no_ema", dest="use_ema", action="store_false", help="export the raw training weights")
    p.add_argument(
        "--allow_nonfinite", action="store_true", help="export weights that hold NaN or inf (a diverged run)"
    )


def run(args: argparse.Namespace) -> int:
    from ddpm_lens.core.checkpoint import check_fit, export_safetensors, load_weights, resolve_config
    from ddpm_lens.core.sparse_unet import check_mask_buffers
    from ddpm_lens.core.unet import build_unet
    from ddpm_lens.output.diffusers_writer import check_output
    from ddpm_lens.util.errors import UserError

    if args.format == "safetensors" and not args.output.endswith(".safetensors"):
        raise UserError(f"--output {args.output} must end in .safetensors (or pass --format diffusers)")
    check_output(args.output, folder=args.format == "diffusers", overwrite=args.overwrite)
    weights = load_weights(args.ckpt, use_ema=args.use_ema, allow_nonfinite=args.allow_nonfinite)
    cfg = resolve_config(args.config, weights) if (args.config or weights.config) else None
    if cfg is None and args.format == "diffusers":
        raise UserError(f"checkpoint {args.ckpt} carries no config: pass its JSON config with --config")
    if cfg is not None:
        import torch

        with torch.device("meta"):
            model = build_unet(cfg.model, sparsity=cfg.sparsity)
        check_mask_buffers(model, weights.state_dict, ckpt=args.ckpt, config=cfg.source)
        check_fit(model, weights.state_dict, ckpt=args.ckpt, config=cfg.source)
    if args.format == "diffusers":
        from ddpm_lens.output.diffusers_writer import write_folder

        if not hasattr(cfg.model, "hid_channels"):
            raise UserError(
                f"checkpoint {args.ckpt} is a U-ViT: diffusers' UNet2DModel cannot hold it; "
                "use --format safetensors"
            )
        if cfg.sparsity is not None:
            raise UserError(
                f"checkpoint {args.ckpt} is a CS model: diffusers' UNet2DModel has no bottleneck "
                "channel mask, so it cannot be exported as a diffusers folder; use --format safetensors"
            )
        write_folder(weights.state_dict, cfg, args.output, overwrite=args.overwrite)
    else:
        export_safetensors(
            weights,
            args.output,
            config=cfg.to_dict() if cfg is not None else None,
            fix="free some space or pass an --output on another disk",
        )
    print(f"wrote {weights.description} of {args.ckpt} to {args.output}")
    return 0
