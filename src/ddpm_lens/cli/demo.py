"""The main job on the embedded default: no dataset, no checkpoints, no downloads.

Runs the study's visualization on two small DDPMs shipped inside the package (a Baseline
and a Curriculum model trained with ``ddpm-lens train`` on the built-in synthetic faces at
64x64; recipe: ``scripts/make_demo_models.sh``), then the report::

    ddpm-lens demo                      # writes demo_output/ and prints where index.html is
    ddpm-lens demo --output_dir /tmp/d --num_samples 3

The demo models are tiny and briefly trained: they illustrate the tool, not the science.
Their shallow layers have 32 channels, so the demo draws 32 channels per panel in 6x6 grids
(the study's 64 in 8x8 apply to the full-size CelebA-64 models). Being small, they also get the
denoising loss at 20 timesteps (``--loss_timesteps``, off in ``visualize`` by default).
"""

from __future__ import annotations

import argparse

HELP = "run the main job on the shipped demo models (figures, stats, report)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output_dir", default="demo_output", help="folder to write into (default: demo_output)")
    p.add_argument("--num_samples", type=int, default=5, help="synthetic test faces to draw (default: 5)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--no_report", action="store_true", help="skip summary, plots and index.html")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")


def demo_models() -> tuple[str, str]:
    """Paths of the shipped (baseline, curriculum) demo checkpoints."""
    from importlib.resources import files

    from ddpm_lens.util.errors import UserError

    folder = files("ddpm_lens") / "demo"
    paths = []
    for name in ("baseline", "curriculum"):
        path = folder / f"{name}.safetensors"
        if not path.is_file():
            raise UserError(f"demo model {path} is missing from the package: run scripts/make_demo_models.sh")
        paths.append(str(path))
    return paths[0], paths[1]


def run(args: argparse.Namespace) -> int:
    from ddpm_lens.cli import main

    baseline, curriculum = demo_models()
    argv = [
        "visualize",
        "--baseline_ckpt",
        baseline,
        "--curriculum_ckpt",
        curriculum,
        "--num_samples",
        str(args.num_samples),
        "--timesteps",
        "100",
        "500",
        "900",
        "--num_channels",
        "32",
        "--grid_size",
        "6",
        "--dataset",
        "synthetic-faces",
        "--split",
        "test",
        "--loss_timesteps",
        "20",
        "--output_dir",
        args.output_dir,
        "--device",
        args.device,
    ]
    argv += ["--no_report"] * args.no_report + ["--no_progress"] * args.no_progress
    return main(argv)
