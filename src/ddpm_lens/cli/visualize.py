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

HELP = "compare two checkpoints' layer activations: the study's figures, stats and report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ddpm_lens.analysis.options import VisualizeOptions
    from ddpm_lens.cli.option_flags import add_option_flags

    add_option_flags(p, VisualizeOptions)


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from ddpm_lens.analysis.prefetch import Prefetch

    started = time.perf_counter()
    # Hash the checkpoints for the manifest on the second core while torch is imported below.
    prefetch = Prefetch([*args.baseline_ckpt, *args.curriculum_ckpt] if args.prefetch else ())

    from ddpm_lens.analysis.options import VisualizeOptions
    from ddpm_lens.cli.option_flags import options_from_args
    from ddpm_lens.output.visualization_run import visualize

    try:
        options = options_from_args(VisualizeOptions, args)
        run = visualize(options, argv=getattr(args, "argv", sys.argv[1:]), prefetch=prefetch)
    finally:
        prefetch.close()
    if run.result.skipped_cka:
        print(f"note: CKA skipped for {', '.join(run.result.skipped_cka)} (the models' spatial sizes differ)")
    t = run.timings
    print(
        f"wrote {run.figures} figures, stats for {run.plan.options.stats_samples} samples and the run files "
        f"to {run.out}/ "
        f"in {time.perf_counter() - started:.1f} s (load {t.load:.1f} s, forward {t.forward:.1f} s, "
        f"stats {t.stats:.1f} s, {f'denoising loss {t.loss:.1f} s, ' if t.loss else ''}"
        f"render {t.render:.1f} s and write {t.write:.1f} s summed over threads)"
    )
    if run.report_index is not None:
        print(
            f"report: open {run.report_index} ({run.report_index.resolve().as_uri()}); "
            f"built in {run.report_s:.1f} s of the total"
        )
    return 0
