"""The seed study's expectations H1-H4 for k >= 2 arms: every arm against the first.

:func:`hypotheses_against_first` runs :func:`ddpm_lens.analysis.hypotheses.hypotheses` for
each arm b against the first arm a (the baseline), with the same per-cell tests, then applies
Holm's correction **across all comparisons**: for each hypothesis, the cells of every arm's
comparison together (k − 1 arms x its cells), so a family-wise error rate of α holds over
everything the table shows. Each comparison's verdict is then
:func:`~ddpm_lens.analysis.decision_rule.judge` on its own cells with those adjusted p.
With two arms it is exactly :func:`hypotheses` (same cells, same adjusted p, same verdicts).

Rows are the visualizer's statistics rows (one per sample x condition x layer x model x
checkpoint); ``model`` names the arm. The unit of inference is each comparison's own (the
image with one checkpoint per arm, the checkpoint with two or more in both arms).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ddpm_lens.analysis import decision_rule as rule
from ddpm_lens.analysis.hypotheses import EDGE_LAYERS, hypotheses, power_note
from ddpm_lens.util.errors import UserError

CORRECTION = "Holm, across the layer × condition cells of every arm's comparison with the first"


def hypotheses_against_first(
    rows, arms: Sequence[str], *, edge_layers=EDGE_LAYERS, alpha: float = rule.ALPHA
) -> list[dict]:
    """H1-H4 for each arm after the first against the first: one dict per hypothesis x arm,
    hypothesis-major (H1: b1, b2, ...; H2: ...), each as :func:`hypotheses` gives it (``id``,
    ``claim``, ``verdict``, ``evidence``, ``unit``, ``test``, ``alpha``, ``details``) plus
    ``a``, ``b`` and ``comparisons`` (how many arms share the Holm family) and ``cells`` (its
    size); every cell's ``p_adjusted`` is Holm across that family."""
    arms = list(arms)
    if len(arms) < 2 or len(set(arms)) != len(arms):
        raise UserError(f"compare at least two arms with distinct names, got {arms}")
    rows = list(rows)
    present = {r.get("model") for r in rows}
    missing = [arm for arm in arms if arm not in present]
    if missing:
        raise UserError(
            f"no statistics rows for arm {missing[0]!r}; the rows name the arms {sorted(map(str, present))}"
        )
    first = arms[0]
    per_arm = [
        hypotheses(
            [r for r in rows if r.get("model") in (first, b)],
            a=first,
            b=b,
            edge_layers=edge_layers,
            alpha=alpha,
        )
        for b in arms[1:]
    ]
    out = []
    for h_index in range(len(per_arm[0])):
        family = [results[h_index] for results in per_arm]
        details = [c for result in family for c in result["details"]]
        for c, adjusted in zip(details, rule.holm([c["p_value"] for c in details])):
            c["p_adjusted"] = float(adjusted)
        for b, result in zip(arms[1:], family):
            entry = {**result, "a": first, "b": b, "comparisons": len(family), "cells": len(details)}
            if result["details"] and len(family) > 1:  # one comparison: hypotheses()' own words
                entry["verdict"] = rule.judge(result["details"], alpha=alpha)
                entry["test"] = result["test"].split("; ")[0] + f"; {CORRECTION}"
                entry["evidence"] = _evidence(entry, details, alpha)
            out.append(entry)
    return out


def _evidence(entry: dict, family: list[dict], alpha: float) -> str:
    """The counts behind a comparison's verdict, its effect sizes and smallest adjusted p, and
    the Holm family (``family``: the cells of every comparison)."""
    details, statistic, b = entry["details"], entry["statistic"], entry["b"]
    m = len(details)
    up = sum(c["favours_b"] for c in details)
    down = sum(c["against_b"] for c in details)
    if entry["id"] == "H2":
        text = f"{statistic} signs: consistent across samples in {up}/{m} layer×condition cells"
    else:
        text = (
            f"{statistic}: {b} significantly higher in {up}/{m} layer×condition cells, "
            f"significantly lower in {down}/{m}"
        )
    text += f" (Holm over {entry['cells']} cells of {entry['comparisons']} comparisons, α = {alpha:g})"
    effects = [c["effect_size"] for c in details if np.isfinite(c["effect_size"])]
    if effects:
        text += f"; median effect size {np.median(effects):+.2f}"
    adjusted = [c["p_adjusted"] for c in details if np.isfinite(c["p_adjusted"])]
    if adjusted:
        text += f"; smallest adjusted p = {min(adjusted):.3g}"
    if entry["unit"] == "checkpoint":
        text += "; unit: checkpoint"
    if entry["verdict"] == "inconclusive":
        text += "; " + power_note(family, alpha, entry["unit"])
    return text
