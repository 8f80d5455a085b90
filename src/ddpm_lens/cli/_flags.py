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
        help="use the EMA weights (ema.shadow) where the checkpoint has them (default)",
    )
    ema.add_argument("--no_ema", dest="use_ema", action="store_false", help="use the raw training weights")
