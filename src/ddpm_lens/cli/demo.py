"""Run the project's main job on the embedded default, with nothing to download.

Until the visualizer lands this samples a grid from a freshly initialised tiny model.
"""

from __future__ import annotations

import argparse

HELP = "run the main job on the built-in default (no data or checkpoints needed)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output_dir", default="demo_output", help="folder to write into (default: demo_output)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    from PIL import Image

    from ddpm_lens.atomic import atomic_path
    from ddpm_lens.config import config_from_dict
    from ddpm_lens.data import to_uint8
    from ddpm_lens.diffusion import GaussianDiffusion
    from ddpm_lens.grid import image_grid
    from ddpm_lens.unet import build_unet

    torch.manual_seed(0)
    cfg = config_from_dict(
        {
            "model": {
                "hid_channels": 32,
                "ch_multipliers": [1, 2],
                "num_res_blocks": 1,
                "apply_attn": [False, True],
            },
            "dataset": {"resolution": 32},
        }
    )
    model = build_unet(cfg.model).eval()
    x = GaussianDiffusion.from_config(cfg.diffusion).sample(
        model,
        (16, 3, 32, 32),
        generator=torch.Generator().manual_seed(0),
        sampler="ddim",
        steps=10,
        progress=True,
    )
    out = Path(args.output_dir) / "samples.png"
    with atomic_path(out) as tmp:
        Image.fromarray(image_grid(to_uint8(x))).save(tmp, format="PNG")
    print(f"wrote {out}")
    return 0
