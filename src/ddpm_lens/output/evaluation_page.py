"""``index.html`` of an evaluation: set-up, the FID table with each run's best, plots, every
checkpoint's numbers, loss by t. Styled with the report page's CSS (read from its template)."""

from __future__ import annotations

import re
from importlib import resources

from ddpm_lens import __version__
from ddpm_lens.output.evaluation_table import best_rows, checkpoint_label, table_grid
from ddpm_lens.output.report_page import render_template

_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


def report_css() -> str:
    """The ``<style>`` block of the report template, so that both pages look alike."""
    text = _template("report.html")
    m = _STYLE.search(text)
    return m.group(1) if m else ""


def page_context(evaluation, *, files: list[str], quality_plots: list[dict], loss_plots: list[dict]) -> dict:
    rows, settings = evaluation.rows, evaluation.settings
    runs, labels, cells = table_grid(rows, "fid")
    best = {run: _label_of(rows, r) for run, r in best_rows(rows, "fid").items()}
    net = settings.get("network", {})
    ns = sorted({r["n"] for r in rows})
    refs = sorted({r["n_reference"] for r in rows})
    facts = [
        ("reference", settings.get("reference")),
        ("reference images", ", ".join(map(str, refs))),
        ("samples per checkpoint", ", ".join(map(str, ns))),
        ("sampler", settings.get("sampler")),
        ("sample seed", settings.get("seed")),
        ("weights", "EMA where present" if settings.get("use_ema") else "raw training weights"),
        ("feature network", net.get("network")),
        ("network weights SHA-1", net.get("weights_sha1")),
        ("resize", net.get("resize")),
        ("input range", net.get("input_range")),
        ("held-out loss", f"first {settings.get('loss_num')} reference images"),
        ("device", f"{settings.get('device')} × {settings.get('processes', 1)} process(es)"),
    ]
    return {
        "css": report_css(),
        "runs": runs,
        "settings": settings,
        "facts": [(k, v) for k, v in facts if v not in (None, "")],
        "n_text": f"n = {_join(ns)} samples against {_join(refs)} reference images",
        "files": files,
        "table": {"labels": labels, "cells": cells, "best": best},
        "rows": [
            {
                **r,
                "kid_milli": None if r.get("kid_mean") is None else r["kid_mean"] * 1e3,
                "kid_std_milli": None if r.get("kid_std") is None else r["kid_std"] * 1e3,
            }
            for r in rows
        ],
        "quality_plots": quality_plots,
        "loss_plots": loss_plots,
        "version": __version__,
    }


def render_page(context: dict) -> str:
    return render_template("evaluation.html", context, safe=("css",))  # the package's own CSS


def _join(values) -> str:
    return ", ".join(map(str, values))


def _label_of(rows, row) -> str:
    same_epoch = sum(1 for r in rows if r["run"] == row["run"] and r.get("epoch") == row.get("epoch"))
    return checkpoint_label(row, same_epoch > 1)


def _template(name: str) -> str:
    return resources.files("ddpm_lens.output").joinpath("templates", name).read_text(encoding="utf-8")
