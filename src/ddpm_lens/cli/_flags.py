"""Flags that several subcommands share, spelled and documented once."""

from __future__ import annotations

import argparse


def add_ema_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--use_ema`` (default) / ``--no_ema``, stored as ``args.use_ema``."""
    ema = parser.add_mutually_exclusive_group()
    ema.add_argument(
        "--use_ema",
        dest="use_ema",
        action="store_true",
        default=True,
        help="use the EMA weights where the checkpoint has them (ema.shadow; a U-ViT folder's "
        "nnet_ema.pth) (default)",
    )
    ema.add_argument("--no_ema", dest="use_ema", action="store_false", help="use the raw training weights")


def seed(text: str) -> int:
    """An argparse type: a seed, an integer of 0 or more (numpy's seeding refuses negatives)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value
