"""The ``ddpm-lens`` command line.

Each subcommand lives in its own module under ``ddpm_lens.cli`` and exposes ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> int``. Command modules import the heavy
library code inside ``run`` so that ``ddpm-lens --help`` stays fast.

Errors the user can fix are :class:`ddpm_lens.util.errors.UserError`: printed as one line,
exit status 2, no traceback.

Every flag is accepted as ``--snake_case`` and as ``--kebab-case``; help and errors show the
spelling the command declares (underscores for the study's ``visualize``, hyphens for
``train``), and a library error that names a flag is reworded into that spelling.

May import: every other stage (nothing imports ``cli``). Only argparse lives here: a
command's work is a function of ``output``, ``train`` or ``analysis`` that ``run`` calls.
A new command is a module here plus its line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
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
    "trajectories": "ddpm_lens.cli.trajectories",
    "jacobian": "ddpm_lens.cli.jacobian",
}


_FLAG = re.compile(r"--[A-Za-z][A-Za-z0-9_-]*")


def _plain(flag: str) -> str:
    return "--" + flag[2:].replace("-", "_")


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and a one-line message (its default also exits 2),
    and takes every long flag in both spellings (see :meth:`accept_both_spellings`)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {self.respell(message)}\n")

    def accept_both_spellings(self) -> None:
        """Once every flag is added: ``--a_b`` also parses as ``--a-b`` and the other way round.

        The other spelling goes only into argparse's table of option strings, not into the
        action, so ``--help`` and argparse's own errors list each flag once, as declared.
        """
        self._declared = {}
        for action in self._actions:
            for flag in action.option_strings:
                if not flag.startswith("--"):
                    continue
                self._declared[_plain(flag)] = flag
                for other in (_plain(flag), "--" + flag[2:].replace("_", "-")):
                    self._option_string_actions.setdefault(other, action)

    def respell(self, message: str) -> str:
        """``message`` with each flag of this command written as the command declares it
        (library code cannot know whether it runs under ``visualize`` or ``train``)."""
        declared = getattr(self, "_declared", {})
        return _FLAG.sub(lambda m: declared.get(_plain(m.group(0)), m.group(0)), message)


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
        p.accept_both_spellings()
        p.set_defaults(_run=module.run, _parser=p)
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
        print(f"error: {args._parser.respell(str(exc))}", file=sys.stderr)
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
