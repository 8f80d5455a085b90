"""Draw an image grid from a checkpoint with DDPM (all T steps) or DDIM.

Examples::

    ddpm-lens sample --ckpt chkpts/celeba/celeba_600.pt --config configs/celeba.json --num 16
    ddpm-lens sample --ckpt chkpts/tiny/tiny_20260101_120000_1.pt --sampler ddim --steps 50 --seed 1
"""

from __future__ import annotations

import argparse

from ddpm_lens.cli._flags import add_ema_flags

HELP = "draw an image grid from a checkpoint (DDPM or DDIM)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ckpt", required=True, help="checkpoint file (ddpm-torch or ddpm-lens, .pt or .safetensors)"
    )
    p.add_argument(
        "--config",
        default=None,
        help="JSON config of the model (optional for ddpm-lens checkpoints, which carry theirs)",
    )
    p.add_argument("--num", type=int, default=16, help="number of images (default: 16)")
    p.add_argument(
        "--sampler",
        choices=("ddpm", "ddim"),
        default="ddim",
        help="ddpm: ancestral sampling over all T steps; ddim: --steps steps (default: ddim)",
    )
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (default: 50)")
    p.add_argument(
        "--eta", type=float, default=0.0, help="DDIM eta: 0 deterministic, 1 DDPM-like (default: 0)"
    )
    p.add_argument(
        "--skip",
        choices=("uniform", "quadratic"),
        default="uniform",
        help="DDIM timestep spacing (default: uniform)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same images")
    p.add_argument("--output", default="samples.png", help="PNG file to write (default: samples.png)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    add_ema_flags(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ddpm_lens.core.checkpoint import load_checkpoint
    from ddpm_lens.core.diffusion import GaussianDiffusion
    from ddpm_lens.data.datasets import to_uint8
    from ddpm_lens.output.grid import image_grid
    from ddpm_lens.util.atomic import atomic_path, check_writable
    from ddpm_lens.util.devices import pick_device
    from ddpm_lens.util.errors import UserError

    if args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}")
    output = Path(args.output)
    if output.is_dir():
        raise UserError(f"--output {output} is a folder: pass a PNG file path, e.g. {output / 'samples.png'}")
    check_writable(output.parent, flag="--output")
    device = pick_device(args.device)
    model, weights, cfg = load_checkpoint(args.config, args.ckpt, use_ema=args.use_ema, device=device)
    if args.sampler == "ddim" and not 1 <= args.steps <= cfg.diffusion.timesteps:
        raise UserError(f"--steps must be in 1..{cfg.diffusion.timesteps}, got {args.steps}")
    diffusion = GaussianDiffusion.from_config(cfg.diffusion).to(device)
    when = f"epoch {weights.epoch}" if weights.step is None else f"step {weights.step}"  # U-ViT: a step
    print(f"sampling {args.num} images with {weights.description} of {args.ckpt} ({when})")
    res = cfg.dataset.resolution
    generator = torch.Generator(device).manual_seed(args.seed)
    x = diffusion.sample(
        model,
        (args.num, cfg.model.in_channels, res, res),
        generator=generator,
        sampler=args.sampler,
        steps=args.steps,
        eta=args.eta,
        skip=args.skip,
        device=device,
        progress=True,
    )
    from PIL import Image

    try:
        with atomic_path(args.output) as tmp:
            Image.fromarray(image_grid(to_uint8(x.cpu()))).save(tmp, format="PNG")
    except OSError as exc:  # e.g. the disk filled while sampling; the temp file is gone
        raise UserError(f"cannot write --output {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {args.output}")
    return 0
