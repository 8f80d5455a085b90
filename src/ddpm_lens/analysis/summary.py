"""Across-sample summaries of two models' layer statistics, with the decision rule's tests.

Input is a tidy list of rows, one per sample x condition x layer x model (x checkpoint), e.g.::

    {"sample": 0, "condition": "noisy_t500", "t": 500, "layer": "encoder_level_2",
     "model": "baseline", "checkpoint": 0, "hoyer": 0.21, "sparsity": 0.002, ...}

Two model labels ``a`` (reference, default "baseline") and ``b`` (default "curriculum") are
compared; every difference is b - a. **The unit of inference** (:func:`inference_unit`):
with one checkpoint per arm it is the input image, and the two models' values are paired
sample by sample; with two or more checkpoints in each arm it is the checkpoint, and each
checkpoint's mean over the samples is one observation (:mod:`ddpm_lens.analysis.decision_rule`
says which test each gets). A row without ``checkpoint`` is checkpoint 0; a statistic that is
None in a row (e.g. noise robustness in the clean condition) is left out of that cell.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ddpm_lens.analysis import decision_rule as rule
from ddpm_lens.analysis.stat_registry import SUMMARIZED
from ddpm_lens.util.errors import UserError

CONFIDENCE = rule.CONFIDENCE
TEST_NAME = rule.PAIRED_TEST
ID_KEYS = ("sample", "condition", "t", "layer", "model", "checkpoint")


def inference_unit(rows, a: str = "baseline", b: str = "curriculum") -> dict:
    """``{"unit": "sample" | "checkpoint", "checkpoints": {a: k_a, b: k_b}}``: the checkpoint is
    the unit when both arms have at least two (then per-checkpoint means are compared)."""
    counts = {m: len({r.get("checkpoint", 0) for r in rows if r.get("model") == m}) for m in (a, b)}
    unit = "checkpoint" if min(counts.values()) >= 2 else "sample"
    return {"unit": unit, "checkpoints": counts}


def summarize(
    rows, *, stats=SUMMARIZED, a: str = "baseline", b: str = "curriculum", unit: str | None = None
) -> list[dict]:
    """One summary row per layer x condition x statistic (cells where a statistic is defined).

    Ordered by layer, then condition (each as the rows first name them), then ``stats``.
    Fields: ``layer``, ``condition``, ``t`` (when the rows carry it), ``statistic``, ``a``,
    ``b``, ``unit`` and those of :func:`ddpm_lens.analysis.decision_rule.compare` (n, both
    means with 95 % t-intervals, the difference with its interval, the Hodges-Lehmann
    estimate with its signed-rank interval, ``p_value``, ``effect_size``, ``test``), plus ``p_adjusted``
    (Holm across the layer x condition cells of the same statistic) and, for paired samples,
    ``agree``: how many differences have the sign of ``diff_mean`` (``agree_text`` "4/5").

    Small samples: the exact signed-rank test cannot go below 2 / 2**n with n non-zero
    differences; for n = 5 that is 0.0625, so 5 samples never reach p < 0.05.
    """
    rows = list(rows)
    unit = unit or inference_unit(rows, a, b)["unit"]
    paired = unit == "sample"
    out = []
    for cell in cells(rows, stats, a, b, unit=unit):
        for stat in stats:
            if stat not in cell["values"]:
                continue
            va, vb = cell["values"][stat]
            row = {"layer": cell["layer"], "condition": cell["condition"]}
            if "t" in cell:
                row["t"] = cell["t"]
            row.update({"statistic": stat, "a": a, "b": b, "unit": unit})
            row.update(rule.compare(va, vb, paired=paired))
            row["effect_measure"] = "d_z (paired)" if paired else "Cohen's d (pooled sd)"
            if paired:
                diff = vb - va
                agree = int(np.count_nonzero(np.sign(diff) == np.sign(row["diff_mean"])))
                row.update(agree=agree, agree_text=f"{agree}/{len(diff)}")
            out.append(row)
    for stat in stats:
        mine = [r for r in out if r["statistic"] == stat]
        for r, adjusted in zip(mine, rule.holm([r["p_value"] for r in mine])):
            r["p_adjusted"] = float(adjusted)
    return out


def cells(rows, stats, a: str, b: str, *, unit: str = "sample") -> list[dict]:
    """Group rows into layer x condition cells of (a values, b values) per statistic.

    ``unit`` "sample": the first checkpoint of each arm, values paired by sample (a pair
    where either value is None is left out); "checkpoint": each checkpoint's mean over its
    samples. Cells are ordered by layer, then condition, each in order of first appearance.
    Returns dicts with ``layer``, ``condition``, ``t`` (if every row of the cell carries the
    same one) and ``values``: stat -> (a (n_a,), b (n_b,)) float64, only for statistics
    defined in the cell.
    """
    rows = list(rows)
    models = {r.get("model") for r in rows}
    for label in (a, b):
        if label not in models:
            raise UserError(
                f"model '{label}' has no rows; the rows name {sorted(map(str, models))}, pass one of those"
            )
    keys = Counter(
        (r["layer"], r["condition"], r["sample"], r["model"], r.get("checkpoint", 0))
        for r in rows
        if r["model"] in (a, b)
    )
    duplicated = [k for k, count in keys.items() if count > 1]
    if duplicated:
        raise ValueError(f"several rows for (layer, condition, sample, model, checkpoint) = {duplicated[0]}")
    grouped: dict[tuple, dict] = {}  # (layer, condition) -> model -> checkpoint -> sample -> row
    for r in rows:
        if r["model"] in (a, b):
            by_model = grouped.setdefault((r["layer"], r["condition"]), {a: {}, b: {}})
            by_model[r["model"]].setdefault(r.get("checkpoint", 0), {})[r["sample"]] = r
    layer_rank = {layer: i for i, layer in enumerate(dict.fromkeys(key[0] for key in grouped))}
    condition_rank = {cond: i for i, cond in enumerate(dict.fromkeys(key[1] for key in grouped))}
    out = []
    for (layer, condition), by_model in sorted(
        grouped.items(), key=lambda item: (layer_rank[item[0][0]], condition_rank[item[0][1]])
    ):
        all_rows = [r for m in (a, b) for ck in by_model[m].values() for r in ck.values()]
        samples = _common_samples(layer, condition, by_model, a, b)
        cell = {"layer": layer, "condition": condition, "values": {}}
        ts = {r.get("t") for r in all_rows}
        if len(ts) == 1 and None not in ts:
            cell["t"] = ts.pop()
        for stat in stats:
            if any(stat not in r for r in all_rows):
                names = sorted(k for k in all_rows[0] if k not in ID_KEYS)
                raise UserError(f"statistic '{stat}' is missing from the rows; available: {names}")
            values = _values(by_model, stat, samples, a, b, unit)
            if values is not None:
                cell["values"][stat] = values
        out.append(cell)
    return out


def _common_samples(layer, condition, by_model, a, b) -> list:
    """The samples every checkpoint of both arms has in this cell (they must be the same)."""
    sets = [set(ck) for m in (a, b) for ck in by_model[m].values()]
    if any(s != sets[0] for s in sets):
        unpaired = sorted(set.union(*sets) - set.intersection(*sets), key=str)
        raise ValueError(f"{layer} / {condition}: samples {unpaired} have rows for only some of the models")
    return sorted(sets[0], key=str)


def _values(by_model, stat, samples, a, b, unit) -> tuple[np.ndarray, np.ndarray] | None:
    """(a values, b values) of ``stat`` in one cell, or None where it is not defined."""

    def value(r):
        v = r[stat]
        return None if v is None else float(v)

    if unit == "sample":
        first = {m: by_model[m][min(by_model[m])] for m in (a, b)}
        pairs = [(value(first[a][s]), value(first[b][s])) for s in samples]
        pairs = [p for p in pairs if None not in p]
        if not pairs:
            return None
        return tuple(np.array(side, dtype=np.float64) for side in zip(*pairs))
    means = []
    for m in (a, b):
        per_ckpt = []
        for ckpt in sorted(by_model[m]):
            vals = [value(by_model[m][ckpt][s]) for s in samples]
            vals = [v for v in vals if v is not None]
            if vals:
                per_ckpt.append(float(np.mean(vals)))
        means.append(np.array(per_ckpt, dtype=np.float64))
    return None if min(len(v) for v in means) == 0 else (means[0], means[1])


def sparsity_scale_correlation(rows) -> dict | None:
    """How much the seed's sparsity is a scale measure: Pearson r between ``sparsity`` and
    1 / ``std`` over the rows (each sample x condition x layer x model), ``{"r", "n"}``; None
    without such rows. For a residual layer without ReLU, |x| < 1e-3 holds for about
    2e-3 p(0) of the activations, and p(0) ~ 1 / sigma."""
    pairs = [
        (float(r["sparsity"]), 1.0 / float(r["std"]))
        for r in rows
        if isinstance(r.get("sparsity"), (int, float))
        and isinstance(r.get("std"), (int, float))
        and r["std"] > 0
    ]
    if len(pairs) < 3:
        return None
    s, inv = np.array(pairs).T
    if np.ptp(s) == 0 or np.ptp(inv) == 0:
        return None
    return {"r": float(np.corrcoef(s, inv)[0, 1]), "n": len(pairs)}
