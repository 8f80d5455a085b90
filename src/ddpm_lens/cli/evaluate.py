"""Score every checkpoint of one or more training runs: FID, KID, precision/recall and the
held-out denoising loss at a grid of t, against one reference.

RUN_DIR is a run folder (ddpm-lens runs, the study's ``<name>_<timestamp>_<epoch>.pt`` folders,
ddpm-torch's ``<name>_<epoch>.pt``), or a folder of such folders (``chkpts/``). Writes
OUT/evaluation.csv, evaluation.json, evaluation_table.txt (runs as columns, checkpoints as rows,
best per run, as the study's FID comparison), plots/ and index.html.

Examples::

    ddpm-lens evaluate chkpts/celeba chkpts/celeba64_c --reference dataset:celeba:test \\
        --data_dir ~/datasets --num 1000 --output_dir evaluation
    torchrun --nproc_per_node 8 -m ddpm_lens evaluate chkpts/ --reference dataset:celeba:test \\
        --data_dir ~/datasets --num 5000 --device cuda

Every checkpoint samples from the same noise (seed, image index), so differences between
checkpoints are the models', not the draws'.
"""

from __future__ import annotations

import argparse

from ddpm_lens.cli.fid import add_quality_flags

HELP = "score every checkpoint of training runs: FID, KID, precision/recall, held-out loss by t"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders, or folders of run folders")
    p.add_argument(
        "--reference",
        required=True,
        help="dataset:NAME[:SPLIT] (e.g. dataset:celeba:test) or an image folder; also for the held-out loss",
    )
    add_quality_flags(p)
    p.add_argument(
        "--config", help="JSON config for runs whose checkpoints carry none and that have no config.json"
    )
    p.add_argument(
        "--loss_timesteps",
        type=int,
        default=10,
        metavar="N",
        help="the held-out loss at N timesteps spread evenly over [0, T), as in visualize (default: 10)",
    )
    p.add_argument(
        "--loss_num", type=int, default=64, help="reference images for the held-out loss (default: 64)"
    )
    p.add_argument("--output_dir", default="evaluation", help="output folder (default: evaluation)")


def run(args: argparse.Namespace) -> int:
    from ddpm_lens.analysis.inception_features import InceptionFeatures
    from ddpm_lens.analysis.reference_cache import default_cache_dir
    from ddpm_lens.analysis.training_evaluation import evaluate_runs
    from ddpm_lens.analysis.training_runs import find_runs
    from ddpm_lens.output.evaluation_run import check_evaluation_dir, write_evaluation
    from ddpm_lens.train.distributed import cleanup, init_distributed, is_main

    check_evaluation_dir(args.output_dir)  # created only when its first file is written
    runs = find_runs(args.run_dirs, config=args.config)
    info = init_distributed(args.device)
    try:
        main = is_main(info)
        if main:
            total = sum(len(r.checkpoints) for r in runs)
            print(
                f"evaluating {total} checkpoints of {len(runs)} run(s) against {args.reference}", flush=True
            )
        evaluation = evaluate_runs(
            runs,
            reference=args.reference,
            num=args.num,
            network=InceptionFeatures(info.device),
            data_dir=args.data_dir,
            steps=args.steps,
            seed=args.seed,
            batch_size=args.batch_size,
            loss_timesteps=args.loss_timesteps,
            loss_num=args.loss_num,
            use_ema=args.use_ema,
            device=info.device,
            cache_dir=args.cache_dir or default_cache_dir(),
            dist=info,
            progress=not args.no_progress and main,
        )
    finally:
        cleanup(info)
    if not main:
        return 0
    written = write_evaluation(args.output_dir, evaluation, argv=getattr(args, "argv", None))
    print(written["evaluation_table.txt"].read_text(encoding="utf-8"), end="")
    index = written["index.html"]
    print(f"wrote {len(written)} files; open {index} ({index.resolve().as_uri()})")
    return 0
