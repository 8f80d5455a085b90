"""argparse flags generated from an options dataclass, and the dataclass back from the args.

Each field's metadata (see :func:`ddpm_lens.analysis.options.option`) gives its help, its
group and argparse extras; ``flag="--no_x"`` makes a switch that turns a True default off;
``kind="ema"`` is the ``--use_ema`` / ``--no_ema`` pair.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from ddpm_lens.cli._flags import add_ema_flags

GROUP_TITLES = {
    "models": "models",
    "inputs": "inputs",
    "figures": "figures",
    "statistics": "statistics",
    "run": "run",
}


def add_option_flags(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = dict(f.metadata)
        group_name = meta.pop("group")
        group = groups.get(group_name) or groups.setdefault(
            group_name, parser.add_argument_group(GROUP_TITLES.get(group_name, group_name))
        )
        help_text = meta.pop("help")
        if meta.pop("kind", None) == "ema":
            add_ema_flags(group)
            continue
        flag = meta.pop("flag", f"--{f.name}")
        if f.default is True:  # a switch that turns it off
            group.add_argument(flag, dest=f.name, action="store_false", help=help_text)
            continue
        if f.default is False:
            group.add_argument(flag, dest=f.name, action="store_true", help=help_text)
            continue
        kind = _scalar_type(hints[f.name])
        if f.default is not None and "default:" not in help_text:
            shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
            help_text += f" (default: {shown})"
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        kwargs = {"dest": f.name, "default": None if meta.get("required") else default, "help": help_text}
        if kind is not None:
            kwargs["type"] = kind
        group.add_argument(flag, **kwargs, **meta)


def options_from_args(cls: type, args: argparse.Namespace, **extra):
    """An instance of ``cls`` from the parsed ``args`` (fields the parser did not define keep
    their defaults) and ``extra``."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return cls(**{**values, **extra})


def _scalar_type(hint) -> type | None:
    """int / float / str of a field's annotation (``int | None``, ``tuple[int, ...]``)."""
    for arg in (hint, *typing.get_args(hint)):
        for inner in (arg, *typing.get_args(arg)):
            if inner in (int, float):
                return inner
    return None
