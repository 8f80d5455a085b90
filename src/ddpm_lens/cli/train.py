"""Train a baseline or curriculum DDPM from a config; flags override the config's values.

One CPU (a smoke run on the built-in synthetic faces, seconds to minutes)::

    ddpm-lens train --config configs/tiny.json --device cpu
    ddpm-lens train --config configs/tiny_cs.json --device cpu   # the study's CS mode, tiny

The study's configs (sun-messi/curriculum-sparse-reg) run as they are: its
``python train_curriculum.py --config-path configs/celeba64_cs.json`` is::

    ddpm-lens train --config configs/celeba64_cs.json --data-dir DATA

and its ``--distributed`` runs are ``torchrun --nproc_per_node K -m ddpm_lens train ...``. With
its staged curriculum the run lasts the stages' epochs (``--epochs`` does not change that).

One GPU (CelebA-64 under DATA/celeba/, mixed precision)::

    ddpm-lens train --config configs/celeba64_c.json --data-dir DATA --amp bf16 --channels-last

K GPUs on one machine (DistributedDataParallel; ``train.batch_size`` is the global batch)::

    torchrun --nproc_per_node K -m ddpm_lens train --config configs/celeba.json --data-dir DATA

Several machines: run the same command on each, with the rendezvous flags::

    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d \\
        --rdzv_endpoint host0:29500 -m ddpm_lens train --config configs/celeba.json --data-dir DATA

(``--node_rank 1`` on the second machine; ``host0`` is an address every machine can reach.)
Checkpoints go to ``<chkpt-dir>/<name>/`` (written by rank 0; resuming across machines needs
that folder on a shared file system). ``--resume`` continues the newest complete checkpoint
of the run, bit-exactly on the CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ddpm_lens.util.errors import UserError

HELP = "train a baseline or curriculum DDPM (one CPU to many GPUs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="JSON config, e.g. configs/celeba.json")
    parser.add_argument(
        "--data-dir",
        help="data folder (celeba: the folder holding celeba/, or celeba/ itself); sets dataset.root",
    )
    parser.add_argument("--chkpt-dir", default="chkpts", help="folder of runs (default: chkpts)")
    parser.add_argument(
        "--name", help="run name: checkpoints go to CHKPT_DIR/NAME (default: the config file's stem)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="PATH",
        help="continue the run from its newest complete checkpoint, or from the checkpoint PATH",
    )
    parser.add_argument("--seed", type=int, help="random seed of weights, data order, timesteps and noise")
    parser.add_argument(
        "--epochs", type=int, help="passes over the data (train.epochs; a staged curriculum sets its own)"
    )
    parser.add_argument(
        "--max-steps", type=int, help="stop after this many optimizer steps (train.max_steps)"
    )
    parser.add_argument("--batch-size", type=int, help="global batch per micro-step, over all processes")
    parser.add_argument("--lr", type=float, help="Adam learning rate after warm-up (train.lr)")
    parser.add_argument(
        "--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto; under torchrun use cuda)"
    )
    parser.add_argument(
        "--amp",
        choices=("none", "bf16", "fp16"),
        help="mixed precision on CUDA (train.amp); ignored on the CPU",
    )
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    parser.add_argument(
        "--channels-last",
        action="store_true",
        default=None,
        help="NHWC memory format (faster convolutions on GPUs)",
    )
    parser.add_argument("--num-workers", type=int, help="DataLoader worker processes (train.num_workers)")
    parser.add_argument("--chkpt-intv", type=int, help="epochs between checkpoints (train.chkpt_intv)")
    parser.add_argument(
        "--image-intv", type=int, help="epochs between EMA sample grids, 0 = never (train.image_intv)"
    )
    parser.add_argument(
        "--log-every",
        type=int,
        default=10,
        help="steps between loss reads, log rows and progress updates (default 10)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import Subset

    from ddpm_lens.core.config import load_config
    from ddpm_lens.data.datasets import build_dataset
    from ddpm_lens.train.distributed import cleanup, init_distributed, is_main
    from ddpm_lens.train.run_files import prepare_run_dir
    from ddpm_lens.train.trainer import Trainer
    from ddpm_lens.util.errors import UserError

    if str(args.config).endswith(".py"):  # its step-staged curriculum and modes are not read from it
        raise UserError(
            f"--config {args.config} is one of the study's U-ViT .py configs, read for its model only: "
            'train from a JSON config whose \'model\' section says "name": "uvit" '
            "(e.g. configs/tiny_uvit_c.json)"
        )
    cfg = load_config(args.config)
    flags = {
        "dataset.root": ("--data-dir", args.data_dir),
        "train.seed": ("--seed", args.seed),
        "train.epochs": ("--epochs", args.epochs),
        "train.max_steps": ("--max-steps", args.max_steps),
        "train.batch_size": ("--batch-size", args.batch_size),
        "train.lr": ("--lr", args.lr),
        "train.amp": ("--amp", args.amp),
        "train.compile": ("--compile", args.compile),
        "train.channels_last": ("--channels-last", args.channels_last),
        "train.num_workers": ("--num-workers", args.num_workers),
        "train.chkpt_intv": ("--chkpt-intv", args.chkpt_intv),
        "train.image_intv": ("--image-intv", args.image_intv),
    }
    cfg = _with_flags(cfg, flags)
    name = args.name or Path(args.config).stem
    if Path(name).name != name or name in (".", "..") or "\\" in name:
        raise UserError(
            f"--name {name} must be a plain name (no folders): checkpoints go to --chkpt-dir/NAME"
        )
    run_dir = Path(args.chkpt_dir) / name
    split = "all" if cfg.dataset.name == "celeba" else "train"  # as ddpm-torch and the study train CelebA
    dataset = build_dataset(
        cfg.dataset.name, root=cfg.dataset.root, split=split, resolution=cfg.dataset.resolution
    )  # flips are drawn by the trainer, so that resuming is exact
    if cfg.dataset.max_images is not None and cfg.dataset.max_images < len(dataset):
        dataset = Subset(dataset, range(cfg.dataset.max_images))
    info = init_distributed(args.device)
    try:
        main = is_main(info)
        resume_from = prepare_run_dir(run_dir, name, resume=args.resume, main=main)
        trainer = Trainer(
            cfg, run_dir=run_dir, dist=info, log_every=args.log_every, progress=not args.no_progress
        )
        if resume_from is not None:
            trainer.load(resume_from)
        if main:
            where = f", resuming {resume_from} at step {trainer.step}" if resume_from else ""
            print(
                f"training {name} on {info.device} x {info.world_size}: checkpoints in {run_dir}{where}",
                flush=True,
            )
        final = trainer.fit(dataset)
        if main:
            print(f"final checkpoint: {final}", flush=True)
    finally:
        cleanup(info)
    return 0


def _with_flags(cfg, flags: dict):
    """``cfg`` with the flags' values (``{"section.key": (flag, value)}``, None: not given). A
    value the config check refuses is blamed on its flag, not on the config file."""
    from ddpm_lens.core.config import with_overrides

    try:
        return with_overrides(cfg, {key: value for key, (_, value) in flags.items()})
    except UserError:
        for key, (flag, value) in flags.items():
            try:
                with_overrides(cfg, {key: value})
            except UserError as exc:
                why = str(exc).split(": ", 1)[-1]  # the check, without "config FILE"
                raise UserError(f"{flag} {value}: {why}") from None
        raise
