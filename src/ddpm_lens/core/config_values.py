"""Typed JSON values -> frozen dataclass fields, with one-line errors naming the file and key.

Shared by every config section (:mod:`ddpm_lens.core.config`, :mod:`ddpm_lens.core.curriculum_config`).
A field's type comes from its annotation string (``int``, ``float``, ``bool``, ``str``,
``tuple[int, ...]``, each optionally ``| None``); string fields may have a fixed set of choices::

    values = parse_fields(TrainConfig, "train", {"lr": 2e-5}, "configs/celeba.json", CHOICES)
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from typing import Any

from ddpm_lens.util.errors import UserError


def without_private(raw: dict) -> dict:
    """The dict without keys beginning with ``_`` (``_comment``, ``_usage``: notes, not settings)."""
    return {k: v for k, v in raw.items() if not (isinstance(k, str) and k.startswith("_"))}


def parse_fields(
    cls, name: str, raw: Any, source: str, choices: dict[str, tuple[str, ...]], *, keys: dict | None = None
) -> dict[str, Any]:
    """The typed field values of ``cls`` in section ``name`` (a JSON object).

    ``keys`` maps JSON keys to field names where they differ (``"lambda"`` -> ``lam``).
    Unknown keys and wrong types are a :class:`UserError` naming ``source`` and the key.
    """
    if not isinstance(raw, dict):
        raise UserError(f"config {source}: '{name}' must be a JSON object, got {type(raw).__name__}")
    keys = {f: j for j, f in (keys or {}).items()}  # field name -> JSON key
    types = {f.name: f.type for f in fields(cls)}
    json_names = {keys.get(f, f): f for f in types}  # JSON key -> field name
    raw = without_private(raw)
    unknown = sorted(set(raw) - set(json_names))
    if unknown:
        raise UserError(
            f"config {source}: unknown key '{name}.{unknown[0]}' (valid: {', '.join(json_names)})"
        )
    return {
        json_names[k]: coerce(f"{name}.{k}", v, types[json_names[k]], source, choices) for k, v in raw.items()
    }


def coerce(key: str, value: Any, annotation: str, source: str, choices: dict[str, tuple[str, ...]]) -> Any:
    """``value`` checked against ``annotation`` (ints stay ints, ints become floats, lists tuples)."""

    def bad(expected: str):
        return UserError(f"config {source}: '{key}' must be {expected}, got {json.dumps(value)}")

    optional = annotation.endswith("| None")
    base = annotation.replace(" | None", "")
    if value is None:
        if optional:
            return None
        raise bad(base.replace("tuple[", "a list of ").replace(", ...]", "s"))
    if base == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise bad("a string")
        valid = choices.get(re.sub(r"\[\d+\]", "", key))  # stages[3].name -> stages.name
        if valid and value not in valid:
            raise UserError(f"config {source}: '{key}' is {json.dumps(value)}; valid: {', '.join(valid)}")
        return value
    if base.startswith("tuple["):
        item = base[len("tuple[") :].split(",")[0]
        if not isinstance(value, list):
            raise bad(f"a list of {item}s")
        return tuple(coerce(f"{key}[{i}]", v, item, source, choices) for i, v in enumerate(value))
    raise AssertionError(f"unhandled annotation {annotation}")
