"""The k-arm figures and hypothesis table of ``ddpm-lens trajectories --figures N``::

    OUT/figures/<layer>/<condition>_sample<i>.png   one per layer x condition x figure input:
                                                    a panel per arm (final checkpoints), in arm order
    OUT/arm_hypotheses.csv                          H1-H4, every arm against the first, one row per
                                                    hypothesis x arm x layer x condition cell

The figures are :func:`~ddpm_lens.output.arm_figure.arm_figures` (each panel its own arm's
highest-variance channels; with ``match_channels`` every later arm's channels matched to the
first arm's); the table is :func:`~ddpm_lens.analysis.arm_hypotheses.hypotheses_against_first`
on the final checkpoints' statistics rows (Holm across every arm's cells together).
"""

from __future__ import annotations

from pathlib import Path

from ddpm_lens.analysis import decision_rule as rule
from ddpm_lens.analysis.arm_features import ArmFeatures
from ddpm_lens.analysis.arm_hypotheses import hypotheses_against_first
from ddpm_lens.output import png, render
from ddpm_lens.output.arm_figure import arm_figures
from ddpm_lens.output.csv_table import csv_text
from ddpm_lens.output.report_page import json_safe

CELL_COLUMNS = (
    "id",
    "a",
    "b",
    "layer",
    "condition",
    "n",
    "a_mean",
    "b_mean",
    "diff_mean",
    "p_value",
    "p_adjusted",
)


def write_arm_figures(out: Path, features: ArmFeatures, *, match_channels: bool = False) -> list[dict]:
    """Every figure under ``out/figures/``; one entry (file, layer, condition, sample) each."""
    palette = render.palette()
    entries = []
    for layer in features.layers:
        for j, cond in enumerate(features.conditions):
            arms = [(label, features.activations[label][layer][:, j]) for label in features.labels]
            n = len(arms[0][1])
            titles = [f"{layer} | {cond.name} | Sample {i}" for i in range(n)]
            for i, figure in enumerate(arm_figures(arms, titles=titles, match_channels=match_channels)):
                rel = f"figures/{layer}/{cond.name}_sample{i}.png"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                png.write_png(out / rel, figure, palette=palette)
                entries.append({"file": rel, "layer": layer, "condition": cond.name, "sample": i})
    return entries


def arm_hypotheses(features: ArmFeatures, *, alpha: float) -> list[dict]:
    """H1-H4, each arm after the first against the first, with a badge class per verdict."""
    table = hypotheses_against_first(features.rows, features.labels, alpha=alpha)
    css = {"supported": "ok", "contradicted": "bad", rule.PARTLY: "warn"}
    return [{**h, "css": css.get(h["verdict"], "muted")} for h in table]


def hypothesis_cells_csv(table: list[dict]) -> str:
    """One row per hypothesis x arm x cell, with its raw and Holm-adjusted p."""
    rows = [
        {
            "id": h["id"],
            "a": h["a"],
            "b": h["b"],
            "verdict": h["verdict"],
            **{k: c.get(k) for k in CELL_COLUMNS[3:]},
        }
        for h in table
        for c in h["details"]
    ]
    columns = [*CELL_COLUMNS[:3], "verdict", *CELL_COLUMNS[3:]]
    return csv_text([json_safe(r) for r in rows], columns) if rows else ""
