"""Compare a baseline and a curriculum DDPM layer by layer: the study's feature visualizations.

Takes the study's command unchanged and writes its exact tree (5 samples x 4 conditions x
6 layers = 120 comparison figures + 20 input images by default), plus stats.csv/json,
cka.csv/json, manifest.json, README.md and, unless --no_report, the HTML report::

    ddpm-lens visualize \\
        --baseline_ckpt chkpts/celeba/celeba_20251219_113720_16.pt \\
        --curriculum_ckpt chkpts/celeba64_c/celeba64_c_20251219_132723_16.pt \\
        --config_baseline configs/celeba.json --config_curriculum configs/celeba64_c.json \\
        --num_samples 5 --timesteps 100 500 900 --num_channels 64 \\
        --output_dir feature_visualizations --device cuda:0

Without --images, the inputs are the first --num_samples images of the --split (default:
test) of the baseline config's dataset; --dataset synthetic-faces needs no data at all.
"""

from __future__ import annotations

import argparse
import os

from ddpm_lens.cli._flags import add_ema_flags

HELP = "compare two checkpoints' layer activations: the study's figures, stats and report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument(
        "--baseline_ckpt", required=True, help="baseline checkpoint (ddpm-torch or ddpm-lens file)"
    )
    g.add_argument("--curriculum_ckpt", required=True, help="curriculum checkpoint")
    g.add_argument(
        "--config_baseline",
        default=None,
        help="baseline JSON config (optional for ddpm-lens checkpoints, which carry theirs)",
    )
    g.add_argument("--config_curriculum", default=None, help="curriculum JSON config (likewise optional)")
    add_ema_flags(g)
    g.add_argument(
        "--labels",
        nargs=2,
        default=["Baseline", "Curriculum"],
        metavar=("BASELINE", "CURRICULUM"),
        help="panel names (default: Baseline Curriculum); file names keep baseline_vs_curriculum",
    )

    g = p.add_argument_group("inputs")
    g.add_argument(
        "--num_samples",
        type=int,
        default=None,
        help="images to draw figures for (default: 5, or the number of --images)",
    )
    g.add_argument(
        "--timesteps",
        type=int,
        nargs="+",
        default=[100, 500, 900],
        help="noise levels t of the noisy conditions (default: 100 500 900)",
    )
    g.add_argument("--no_clean", action="store_true", help="skip the clean_t0 condition")
    g.add_argument("--no_noisy", action="store_true", help="skip the noisy_t<T> conditions")
    g.add_argument(
        "--dataset",
        default=None,
        help="celeba, folder or synthetic-faces (default: the baseline config's dataset)",
    )
    g.add_argument("--data_dir", default=None, help="dataset folder (CelebA: the folder holding celeba/)")
    g.add_argument("--split", default="test", help="train, valid, test or all (default: test)")
    g.add_argument(
        "--images",
        nargs="+",
        default=None,
        metavar="FILE",
        help="your own pictures instead of a dataset (any size/mode; centre-cropped and resized)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="noise seed: noise is drawn per sample and timestep and fed identically to both models",
    )

    g = p.add_argument_group("figures")
    g.add_argument(
        "--layers",
        nargs="+",
        default=["seed"],
        help="layer names or presets: seed (default: in_conv, encoder_level_0..3, bottleneck), "
        "encoder, decoder, all",
    )
    g.add_argument(
        "--num_channels", type=int, default=64, help="channels per panel, by spatial variance (64)"
    )
    g.add_argument(
        "--grid_size", type=int, default=8, help="cells per side of each panel's grid (default: 8)"
    )
    g.add_argument(
        "--norm",
        choices=("channel", "model", "shared"),
        default="channel",
        help="colour scaling: channel = each map to its own 2nd-98th percentile (the study's, "
        "default); model = one range per panel; shared = one range for both panels",
    )
    g.add_argument(
        "--match_channels",
        action="store_true",
        help="order the curriculum panel's channels by a one-to-one correlation match to the "
        "baseline panel's",
    )
    g.add_argument(
        "--output_dir", default="feature_visualizations", help="output folder (feature_visualizations)"
    )

    g = p.add_argument_group("statistics and run")
    g.add_argument(
        "--threshold", type=float, default=1e-3, help="sparsity counts |x| below this (default: 1e-3)"
    )
    g.add_argument(
        "--stats_samples",
        type=int,
        default=None,
        help="images for the statistics and CKA (default: --num_samples); streamed in batches",
    )
    g.add_argument("--batch_size", type=int, default=10, help="inputs per forward pass (default: 10)")
    g.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N; no CUDA falls back to the CPU"
    )
    g.add_argument("--no_report", action="store_true", help="skip summary, plots and index.html")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from ddpm_lens.digests import FileDigests

    started = time.perf_counter()
    # Hash the checkpoints for the manifest on the second core while torch is imported below.
    digests = FileDigests(p for p in (args.baseline_ckpt, args.curriculum_ckpt) if os.path.isfile(p))

    from ddpm_lens.errors import UserError
    from ddpm_lens.manifest import build_manifest
    from ddpm_lens.outputs import check_output_dir, run_readme, write_manifest
    from ddpm_lens.visualize import build_plan

    check_output_dir(args.output_dir)
    num_samples = args.num_samples or (len(args.images) if args.images else 5)
    if args.stats_samples is not None and args.stats_samples < num_samples:
        raise UserError(
            f"--stats_samples {args.stats_samples} is below --num_samples {num_samples}: raise it"
        )
    plan = build_plan(
        baseline_ckpt=args.baseline_ckpt,
        curriculum_ckpt=args.curriculum_ckpt,
        config_baseline=args.config_baseline,
        config_curriculum=args.config_curriculum,
        images=args.images,
        dataset=args.dataset,
        data_dir=args.data_dir,
        split=args.split,
        num_samples=num_samples,
        stats_samples=args.stats_samples,
        timesteps=args.timesteps,
        layers=args.layers,
        num_channels=args.num_channels,
        grid_size=args.grid_size,
        seed=args.seed,
        use_ema=args.use_ema,
        clean=not args.no_clean,
        noisy=not args.no_noisy,
        labels=args.labels,
        threshold=args.threshold,
        batch_size=args.batch_size,
        device=args.device,
        digests=digests,
    )
    from ddpm_lens.outputs import run_visualization

    result = run_visualization(
        plan,
        args.output_dir,
        grid_size=args.grid_size,
        norm=args.norm,
        match_channels=args.match_channels,
        progress=not args.no_progress,
    )
    manifest = build_manifest(
        plan,
        argv=getattr(args, "argv", sys.argv[1:]),
        norm=args.norm,
        match_channels=args.match_channels,
        grid_size=args.grid_size,
    )
    out = result["out"]
    write_manifest(out, manifest)
    from ddpm_lens.atomic import write_text

    write_text(out / "README.md", run_readme(plan, result, manifest, norm=args.norm))
    if result["skipped_cka"]:
        print(f"note: CKA skipped for {', '.join(result['skipped_cka'])} (the models' spatial sizes differ)")
    t = plan.timings
    print(
        f"wrote {result['figures']} figures, stats for {plan.stats_samples} samples and the run files "
        f"to {out}/ "
        f"in {time.perf_counter() - started:.1f} s (load {t.load:.1f} s, forward {t.forward:.1f} s, "
        f"stats {t.stats:.1f} s, render {t.render:.1f} s and write {t.write:.1f} s summed over threads)"
    )
    if not args.no_report:
        from ddpm_lens.report import build_report

        index = build_report(out)["index.html"]
        print(f"report: open {index} ({index.resolve().as_uri()})")
    return 0
