"""The across-training study: N arms x every checkpoint, the generalization gap per t, layer
statistics and representation drift, in one long table, plots and a report page.

An arm is ``--arm LABEL=PATH[,PATH...]`` (repeat for each arm; the first is the baseline the
others are compared with) or an arm of a ``--study`` JSON file (``{"arms": [{"label": "C",
"paths": ["chkpts/celeba64_c"], "config": "configs/celeba64_c.json"}]}``, paths relative to
the file). PATH is a checkpoint, a diffusers folder, a run folder (ddpm-lens runs, the study's
``<name>_<timestamp>_<epoch>.pt``, ddpm-torch's ``<name>_<epoch>.pt``) or a folder of run folders.

Examples::

    ddpm-lens trajectories --arm Baseline=chkpts/tiny_study --arm C=chkpts/tiny_study_c \\
        --arm CS=chkpts/tiny_cs --arm CR=chkpts/tiny_cr --output_dir trajectories
    torchrun --nproc_per_node 8 -m ddpm_lens trajectories --study study.json --data_dir ~/datasets \\
        --device cuda   # checkpoints split over the processes

Writes OUT/trajectories.csv and .json (long form), OUT/gap_comparisons.csv, OUT/plots/ and
OUT/index.html; with ``--figures N`` also OUT/figures/<layer>/<condition>_sample<i>.png (each
arm's final checkpoint, a panel per arm; ``--match_channels``: later arms' channels matched to the
first's) and OUT/arm_hypotheses.csv (H1-H4 every arm against the first, Holm across all).
OUT/cache/ keeps one entry per checkpoint (its SHA-256 and the options), so a rerun with one
more checkpoint, or after a kill, measures only what is new.
"""

from __future__ import annotations

import argparse

HELP = "across training: N arms x checkpoints, loss gap per t, layer statistics, CKA drift"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ddpm_lens.analysis.trajectory_measures import TrajectoryOptions

    d = TrajectoryOptions()
    p.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="LABEL=PATH[,PATH...]",
        help="an arm: its label and checkpoints/run folders (repeat; the first is the baseline)",
    )
    p.add_argument("--study", help="JSON study file naming the arms (after any --arm)")
    p.add_argument("--config", help="JSON config for checkpoints that carry none and have no config.json")
    p.add_argument("--data_dir", help="dataset folder (CelebA: the folder holding celeba/)")
    p.add_argument(
        "--train_images",
        metavar="SOURCE",
        help="training images: dataset:NAME[:SPLIT] or a folder (default: each config's training set)",
    )
    p.add_argument(
        "--held_out",
        metavar="SOURCE",
        help="held-out images: dataset:NAME[:SPLIT] or a folder (default: the dataset's test split)",
    )
    p.add_argument(
        "--loss_timesteps",
        type=int,
        nargs="+",
        metavar="T",
        default=list(d.loss_timesteps),
        help=f"timesteps of the loss and gap (default: {' '.join(map(str, d.loss_timesteps))})",
    )
    p.add_argument(
        "--low_t",
        type=int,
        default=d.low_t,
        help=f"the gap at low t pools the loss timesteps t <= LOW_T (default: {d.low_t})",
    )
    p.add_argument(
        "--loss_num",
        type=int,
        default=d.loss_num,
        help=f"training and held-out images of the loss, each (default: {d.loss_num})",
    )
    p.add_argument(
        "--stats_num",
        type=int,
        default=d.stats_num,
        help=f"held-out images of the layer statistics (default: {d.stats_num})",
    )
    p.add_argument(
        "--stats_timesteps",
        type=int,
        nargs="+",
        metavar="T",
        default=list(d.stats_timesteps),
        help="noisy conditions of the statistics, beside the clean one (default: "
        + " ".join(map(str, d.stats_timesteps))
        + ")",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        default=list(d.layers),
        help="layers or presets (seed, blocks, encoder, decoder, all; default: seed)",
    )
    p.add_argument(
        "--cka_num",
        type=int,
        default=d.cka_num,
        help=f"statistics images that feed CKA (default: {d.cka_num}; 5 or more for an interval)",
    )
    p.add_argument(
        "--batch_size", type=int, default=d.batch_size, help=f"inputs per forward (default: {d.batch_size})"
    )
    p.add_argument(
        "--figures",
        type=int,
        default=0,
        metavar="N",
        help="draw each arm's final checkpoint side by side (a panel per arm) per layer x condition on the "
        "first N held-out images, and test H1-H4 every arm against the first (default: 0, none)",
    )
    p.add_argument(
        "--match_channels",
        action="store_true",
        help="with --figures: show every later arm's channels matched one-to-one to the first arm's",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed of every noise draw (default: 0)")
    p.add_argument("--raw_weights", action="store_true", help="use the raw training weights, not the EMA")
    p.add_argument("--alpha", type=float, default=0.05, help="level of the decision rule (default: 0.05)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (under torchrun: cuda)")
    p.add_argument("--output_dir", default="trajectories", help="output folder (default: trajectories)")
    p.add_argument("--cache_dir", help="per-checkpoint cache (default: OUTPUT_DIR/cache)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ddpm_lens.analysis.study_arms import parse_arm, read_study_file, resolve_arms
    from ddpm_lens.analysis.trajectories import run_study
    from ddpm_lens.analysis.trajectory_measures import TrajectoryOptions
    from ddpm_lens.output.trajectory_run import write_trajectories
    from ddpm_lens.train.distributed import cleanup, init_distributed, is_main
    from ddpm_lens.util.atomic import check_writable
    from ddpm_lens.util.errors import UserError

    specs = [(*parse_arm(a), None) for a in args.arm]
    if args.study:
        specs += read_study_file(args.study)
    arms = resolve_arms(specs, config=args.config)
    for flag in ("loss_num", "stats_num", "batch_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.figures < 0:
        raise UserError(f"--figures must be 0 (none) or more, got {args.figures}")
    if args.match_channels and not args.figures:
        raise UserError("--match_channels applies to the --figures figures: add --figures N, or drop it")
    if args.figures and len(arms) < 2:
        raise UserError("--figures draws arms side by side: name two or more arms, or drop --figures")
    if args.cka_num < 0:
        raise UserError(f"--cka_num must be 0 (no CKA) or more, got {args.cka_num}")
    options = TrajectoryOptions(
        seed=args.seed,
        loss_timesteps=tuple(sorted(set(args.loss_timesteps))),
        low_t=args.low_t,
        loss_num=args.loss_num,
        stats_num=args.stats_num,
        stats_timesteps=tuple(sorted(set(args.stats_timesteps))),
        layers=tuple(args.layers),
        cka_num=min(args.cka_num, args.stats_num),
        batch_size=args.batch_size,
        use_ema=not args.raw_weights,
    )
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output_dir {out} is a file: pass a folder path")
    check_writable(out, flag="--output_dir")  # created only once the checkpoints have passed the checks
    info = init_distributed(args.device)
    try:
        main = is_main(info)
        if main:
            total = sum(len(a.checkpoints) for a in arms)
            print(
                f"measuring {total} checkpoints of {len(arms)} arm(s): {', '.join(a.label for a in arms)}",
                flush=True,
            )
        study = run_study(
            arms,
            options,
            cache_dir=args.cache_dir or Path(out) / "cache",
            data_dir=args.data_dir,
            train_images=args.train_images,
            held_out=args.held_out,
            device=info.device,
            dist=info,
            progress=not args.no_progress and main,
            alpha=args.alpha,
        )
    finally:
        cleanup(info)
    if not main:
        return 0
    features = None
    if args.figures:
        from ddpm_lens.analysis.final_arms import final_arm_features

        features = final_arm_features(
            arms,
            options,
            figures=args.figures,
            resolution=study.settings["resolution"],
            data_dir=args.data_dir,
            held_out=args.held_out,
            device=info.device,
            progress=not args.no_progress,
        )
    written = write_trajectories(
        out, study, argv=getattr(args, "argv", None), features=features, match_channels=args.match_channels
    )
    new = sum(1 for c in study.checkpoints if not c["cached"])
    index = written["index.html"]
    print(
        f"{len(study.rows)} rows, {new} checkpoint(s) measured, {len(study.checkpoints) - new} from the cache"
    )
    for arm, verdict in study.verdicts.items():
        print(f"gap at low t, {arm} vs {arms[0].label}: {verdict}")
    print(f"wrote {len(written)} files; open {index} ({index.resolve().as_uri()})")
    return 0
