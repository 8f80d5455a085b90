"""The ``ddpm-lens`` command line.

Each subcommand lives in its own module under ``ddpm_lens.cli`` and exposes ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> int``. Command modules import the heavy
library code inside ``run`` so that ``ddpm-lens --help`` stays fast.

Errors the user can fix are :class:`ddpm_lens.util.errors.UserError`: printed as one line,
exit status 2, no traceback.

May import: every other stage (nothing imports ``cli``). Only argparse lives here: a
command's work is a function of ``output``, ``train`` or ``analysis`` that ``run`` calls.
A new command is a module here plus its line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ddpm_lens import __version__
from ddpm_lens.util.errors import UserError

# name -> module; the order is the order in ``--help``.
COMMANDS = {
    "demo": "ddpm_lens.cli.demo",
    "visualize": "ddpm_lens.cli.visualize",
    "report": "ddpm_lens.cli.report",
    "train": "ddpm_lens.cli.train",
    "sample": "ddpm_lens.cli.sample",
    "export": "ddpm_lens.cli.export",
    "fid": "ddpm_lens.cli.fid",
    "evaluate": "ddpm_lens.cli.evaluate",
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and a one-line message (its default also exits 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ddpm-lens",
        description="Train, load and look inside baseline and curriculum DDPMs.",
    )
    parser.add_argument("--version", action="version", version=f"ddpm-lens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=(module.__doc__ or module.HELP).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # recorded in run manifests
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run_and_exit(argv: list[str] | None = None) -> None:
    """The console script: :func:`main`, then leave without the interpreter's teardown.

    Tearing down torch's modules at exit takes a noticeable time and does
    nothing a finished command needs: when ``main`` returns, every file is renamed into
    place and every thread and process pool is joined. Streams and logging are flushed
    first. An exception from ``main`` (a bug) still ends the usual way, with its traceback.
    """
    code = main(argv)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
