"""Across-sample summaries of two models' layer statistics, paired tests, and the seed hypotheses.

Input is a tidy list of rows, one per sample x condition x layer x model, e.g.::

    {"sample": 0, "condition": "noisy_t500", "t": 500, "layer": "encoder_level_2",
     "model": "baseline", "mean": 0.12, "std": 0.45, "mean_abs": 0.3, "sparsity": 0.23,
     "edge_energy": 0.05, "autocorr": 0.81}

Two model labels ``a`` (reference, default "baseline") and ``b`` (default "curriculum")
are compared sample by sample: every difference is b - a on the same input.
"""

import math
from collections import Counter

import numpy as np
from scipy import stats as scipy_stats

from ddpm_lens.analysis.stat_registry import SUMMARIZED
from ddpm_lens.util.errors import UserError

EDGE_LAYERS = ("encoder_level_0", "encoder_level_1")
TEST_NAME = "Wilcoxon signed-rank, two-sided, on paired differences b - a"
CONFIDENCE = 0.95


def summarize(rows, *, stats=SUMMARIZED, a: str = "baseline", b: str = "curriculum") -> list[dict]:
    """One summary row per layer x condition x statistic.

    Ordered by layer, then condition (each as the rows first name them), then ``stats``.

    Fields: ``layer``, ``condition``, ``t`` (when the rows carry it), ``statistic``, ``a``,
    ``b`` (the labels), ``n`` (paired samples), ``a_mean``, ``a_ci_low``, ``a_ci_high``,
    the same for ``b`` and for ``diff`` (b - a per sample): the mean over samples and its
    95 % Student-t interval (mean +- t_{0.975, n-1} s / sqrt(n), s with ddof=1; NaN when
    n = 1). ``agree`` counts samples whose b - a has the sign of ``diff_mean``
    (``agree_text`` "4/5"). ``p_value`` is scipy's Wilcoxon signed-rank test, two-sided, on
    the differences (zero differences dropped, scipy's default); 1.0 when all differences
    are zero, NaN when n < 2; ``test`` names it.

    Small samples: without ties or zeros scipy uses the exact null distribution, under
    which the smallest two-sided p for n samples is 2 / 2**n; for n = 5 that is 0.0625,
    so 5 samples can never reach p < 0.05, however consistent the difference.
    """
    out = []
    for cell in _cells(rows, stats, a, b):
        for stat in stats:
            va, vb = cell["values"][stat]
            diff = vb - va
            diff_mean = float(diff.mean())
            agree = int(np.count_nonzero(np.sign(diff) == np.sign(diff_mean)))
            row = {"layer": cell["layer"], "condition": cell["condition"]}
            if "t" in cell:
                row["t"] = cell["t"]
            row.update({"statistic": stat, "a": a, "b": b, "n": len(diff)})
            for prefix, values in (("a", va), ("b", vb), ("diff", diff)):
                mean, low, high = _mean_interval(values)
                row.update({f"{prefix}_mean": mean, f"{prefix}_ci_low": low, f"{prefix}_ci_high": high})
            row.update(
                {
                    "agree": agree,
                    "agree_text": f"{agree}/{len(diff)}",
                    "p_value": _wilcoxon_p(diff),
                    "test": TEST_NAME,
                }
            )
            out.append(row)
    return out


def hypotheses(rows, *, a: str = "baseline", b: str = "curriculum", edge_layers=EDGE_LAYERS) -> list[dict]:
    """Verdicts on the seed study's expectations, with the numbers behind them.

    Each entry is ``{"id", "claim", "verdict", "evidence", "details"}``; ``details`` has one
    dict per layer x condition cell (n, a_mean, b_mean, diff_mean, b_greater, p_value, ...).
    Differences are b - a per sample; a cell's "mean" is over its samples.

    Directional hypotheses (H1 sparsity, all layers; H3 ``edge_energy``, ``edge_layers``
    only; H4 ``autocorr``, all layers). A cell *favours b* when its mean difference is > 0
    AND b > a in a strict majority of its samples. The verdict is

    - "supported" when every cell favours b;
    - "not supported" when the mean difference is <= 0 in a strict majority of cells;
    - "mixed" otherwise.

    H2 (consistency of the sparsity difference across samples): a cell is consistent when
    b - a is > 0 in all its samples or < 0 in all of them (zeros break consistency).
    "supported" when every cell is consistent, "not supported" when a strict majority of
    cells is not, "mixed" otherwise.

    A hypothesis whose statistic or layers are absent from the rows gets the verdict
    "not tested". Semantic region separation (the seed's fourth expectation) needs
    labels and is not tested here. Evidence strings quote the cell counts, the mean
    difference (sparsity in percentage points) and the best attainable p for the sample size.
    """
    rows = list(rows)
    return [
        _directional(
            rows, "H1", "sparsity", None, a, b, claim=f"{b} activations are sparser than {a}'s in every layer"
        ),
        _consistency(rows, "H2", "sparsity", a, b),
        _directional(
            rows,
            "H3",
            "edge_energy",
            tuple(edge_layers),
            a,
            b,
            claim=f"{b} has sharper edge responses than {a} in {', '.join(edge_layers)}",
        ),
        _directional(
            rows,
            "H4",
            "autocorr",
            None,
            a,
            b,
            claim=f"{b} activations are more spatially structured (less noisy) than {a}'s",
        ),
    ]


def _directional(rows, hid, stat, layers, a, b, *, claim) -> dict:
    cells = _stat_cells(rows, stat, layers, a, b)
    if not cells:
        return _not_tested(hid, claim, stat, layers)
    favour = [c["favours_b"] for c in cells]
    against = sum(c["diff_mean"] <= 0 for c in cells)
    total = len(cells)
    if all(favour):
        verdict = "supported"
    elif against > total / 2:
        verdict = "not supported"
    else:
        verdict = "mixed"
    scale, unit = (100.0, " pp") if stat == "sparsity" else (1.0, "")
    mean_diff = scale * float(np.mean([c["diff_mean"] for c in cells]))
    full = sum(c["b_greater"] == c["n"] for c in cells)
    evidence = (
        f"{stat}: {b} higher (cell mean and majority of samples) in {sum(favour)}/{total} "
        f"layer×condition cells, {b} ≤ {a} on average in {against}/{total}; "
        f"{b} higher in every sample in {full}/{total} cells; "
        f"mean Δ ({b} − {a}) = {mean_diff:+.3g}{unit}; {_p_note(cells)}"
    )
    return {"id": hid, "claim": claim, "verdict": verdict, "evidence": evidence, "details": cells}


def _consistency(rows, hid, stat, a, b) -> dict:
    claim = f"the sign of the {stat} difference ({b} − {a}) is the same in every sample"
    cells = _stat_cells(rows, stat, None, a, b)
    if not cells:
        return _not_tested(hid, claim, stat, None)
    up = sum(c["b_greater"] == c["n"] for c in cells)
    down = sum(c["b_less"] == c["n"] for c in cells)
    total = len(cells)
    if up + down == total:
        verdict = "supported"
    elif total - up - down > total / 2:
        verdict = "not supported"
    else:
        verdict = "mixed"
    n_text = "/".join(str(n) for n in sorted({c["n"] for c in cells}))
    evidence = (
        f"{stat}: same sign in all n={n_text} samples in {up + down}/{total} layer×condition cells "
        f"({up} with {b} higher, {down} with {b} lower); {_p_note(cells)}"
    )
    return {"id": hid, "claim": claim, "verdict": verdict, "evidence": evidence, "details": cells}


def _not_tested(hid, claim, stat, layers) -> dict:
    where = f" for layers {', '.join(layers)}" if layers else ""
    evidence = f"no paired rows with '{stat}'{where}; compute that statistic for those layers to test this"
    return {"id": hid, "claim": claim, "verdict": "not tested", "evidence": evidence, "details": []}


def _p_note(cells) -> str:
    """The smallest Wilcoxon p among the cells, and the floor the sample size puts on it."""
    n_min = min(c["n"] for c in cells)
    p_values = [c["p_value"] for c in cells if not math.isnan(c["p_value"])]
    note = f"smallest Wilcoxon p = {min(p_values):.3g}" if p_values else "no Wilcoxon test (n < 2)"
    if n_min >= 1 and 2.0 / 2**n_min >= 0.05:
        note += f" (with n={n_min} samples p cannot go below {2.0 / 2**n_min:.3g})"
    return note


def _stat_cells(rows, stat, layers, a, b) -> list[dict]:
    """Per layer x condition numbers for one statistic, restricted to ``layers`` (None = all)."""
    present = [r for r in rows if stat in r and (layers is None or r.get("layer") in layers)]
    if not present:
        return []
    cells = []
    for cell in _cells(present, (stat,), a, b):
        va, vb = cell["values"][stat]
        diff = vb - va
        cells.append(
            {
                "layer": cell["layer"],
                "condition": cell["condition"],
                "n": len(diff),
                "a_mean": float(va.mean()),
                "b_mean": float(vb.mean()),
                "diff_mean": float(diff.mean()),
                "b_greater": int(np.count_nonzero(diff > 0)),
                "b_less": int(np.count_nonzero(diff < 0)),
                "favours_b": bool(diff.mean() > 0 and np.count_nonzero(diff > 0) > len(diff) / 2),
                "p_value": _wilcoxon_p(diff),
            }
        )
    return cells


def _cells(rows, stats, a, b) -> list[dict]:
    """Group rows into layer x condition cells of paired (a, b) values per statistic.

    Cells are ordered by layer, then condition, each in order of first appearance.
    Returns dicts with ``layer``, ``condition``, ``t`` (if every row of the cell carries the
    same one) and ``values``: stat -> (a values (n,), b values (n,)) ordered by sample.
    """
    rows = list(rows)
    models = {r.get("model") for r in rows}
    for label in (a, b):
        if label not in models:
            raise UserError(
                f"model '{label}' has no rows; the rows name {sorted(map(str, models))}, pass one of those"
            )
    keys = Counter(
        (r["layer"], r["condition"], r["sample"], r["model"]) for r in rows if r["model"] in (a, b)
    )
    duplicated = [k for k, count in keys.items() if count > 1]
    if duplicated:
        raise ValueError(f"several rows for (layer, condition, sample, model) = {duplicated[0]}")
    grouped: dict[tuple, dict] = {}  # (layer, condition) -> model -> sample -> row
    for r in rows:
        if r["model"] in (a, b):
            grouped.setdefault((r["layer"], r["condition"]), {a: {}, b: {}})[r["model"]][r["sample"]] = r
    layer_rank = {layer: i for i, layer in enumerate(dict.fromkeys(key[0] for key in grouped))}
    condition_rank = {cond: i for i, cond in enumerate(dict.fromkeys(key[1] for key in grouped))}
    cells = []
    for (layer, condition), by_model in sorted(
        grouped.items(), key=lambda item: (layer_rank[item[0][0]], condition_rank[item[0][1]])
    ):
        if set(by_model[a]) != set(by_model[b]):
            unpaired = sorted(set(by_model[a]) ^ set(by_model[b]), key=str)
            raise ValueError(
                f"{layer} / {condition}: samples {unpaired} have rows for only one of '{a}', '{b}'"
            )
        samples = sorted(by_model[a], key=str)
        cell = {"layer": layer, "condition": condition, "values": {}}
        ts = {r.get("t") for m in (a, b) for r in by_model[m].values()}
        if len(ts) == 1 and None not in ts:
            cell["t"] = ts.pop()
        for stat in stats:
            missing = [s for m in (a, b) for s in samples if stat not in by_model[m][s]]
            if missing:
                names = sorted(
                    k
                    for k in by_model[a][samples[0]]
                    if k not in ("sample", "condition", "t", "layer", "model")
                )
                raise UserError(f"statistic '{stat}' is missing from the rows; available: {names}")
            cell["values"][stat] = tuple(
                np.array([float(by_model[m][s][stat]) for s in samples], dtype=np.float64) for m in (a, b)
            )
        cells.append(cell)
    return cells


def _mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and its two-sided Student-t confidence interval (NaN bounds when n < 2)."""
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return mean, float("nan"), float("nan")
    half = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def _wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences; 1.0 if all zero, NaN if n < 2."""
    if len(diff) < 2:
        return float("nan")
    if not np.any(diff):
        return 1.0
    return float(scipy_stats.wilcoxon(diff, alternative="two-sided").pvalue)
