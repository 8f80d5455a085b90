"""Rows of dicts as CSV text: the one writer behind stats.csv, cka.csv and summary.csv."""

from __future__ import annotations

import csv
import io


def csv_text(rows: list[dict], columns: list[str] | None = None) -> str:
    """CSV of ``rows`` in ``columns`` (default: every key, in first-seen order).

    Floats are written with ``repr`` (round-trip exact), None as an empty cell, a ``shape``
    list as ``CxHxW`` and other lists space-separated; keys outside ``columns`` are left out.
    """
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: _cell(c, r.get(c)) for c in columns})
    return buf.getvalue()


def _cell(column: str, value):
    if isinstance(value, list):
        return ("x" if column == "shape" else " ").join(map(str, value))
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value
