"""The seed study's expectations H1-H4, judged by the stated decision rule.

- H1: b's activations are sparser than a's in every layer; ``hoyer``, every layer x condition.
- H2: the sign of that difference is the same across samples: per layer x condition, the
  share of samples whose ``hoyer`` difference has the majority sign, tested against 0.9
  (:func:`~ddpm_lens.analysis.decision_rule.share_test`; 60 % agreeing is not "the same").
- H3: b has sharper edge responses in the shallow layers; ``hf_share``, the ``edge_layers``
  x **the clean condition only**: on a noisy input most of the power above half Nyquist is
  the input noise passed through (a sharp square reads 0.05, the same square + noise of sd
  0.5 reads 0.47; 32×32, seed 0), so on noisy inputs H3 would re-measure H4. Its correlation with H4's
  measure is reported beside the verdict.
- H4: b's features are less perturbed by the input noise (more structured);
  ``noise_robustness``, every layer x noisy condition.

Each cell gets the test of :mod:`ddpm_lens.analysis.decision_rule` (the signed-rank test on
per-sample differences, or Welch's test on per-checkpoint means when each arm has two or
more checkpoints; H2 always the share test on the samples of the first checkpoints),
Holm's correction across the hypothesis's cells and the verdict of
:func:`~ddpm_lens.analysis.decision_rule.judge`; beside it, per layer and over all cells
(omnibus), the difference averaged over the hypothesis's cells with its interval. With one
checkpoint per arm the verdicts are about network A vs network B, not the recipes. The
seed's own measures (sparsity |x| < 1e-3, edge energy, autocorrelation) stay in the
summary; the verdicts do not use them (sparsity reads ~1/sigma, and edge energy and
autocorrelation are one measure). Semantic region separation, the seed's fifth
expectation, needs labels and is not tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddpm_lens.analysis import decision_rule as rule
from ddpm_lens.analysis.summary import cells, inference_unit

EDGE_LAYERS = ("encoder_level_0", "encoder_level_1")
NETWORKS = "network A vs network B"  # the scope of verdicts from one checkpoint per arm


@dataclass(frozen=True)
class Hypothesis:
    id: str
    statistic: str
    claim: str  # with {a}, {b} and {layers}
    edge_only: bool = False  # only the edge layers
    consistency: bool = False  # H2: the share test, either sign counts
    clean_only: bool = False  # H3: only the clean condition


HYPOTHESES = (
    Hypothesis("H1", "hoyer", "{b} activations are sparser (Hoyer sparseness) than {a}'s in every layer"),
    Hypothesis(
        "H2",
        "hoyer",
        f"the sign of the Hoyer sparseness difference ({{b}} − {{a}}) is the same for at least "
        f"{rule.CONSISTENCY_SHARE:.0%} of samples",
        consistency=True,
    ),
    Hypothesis(
        "H3",
        "hf_share",
        "{b} has sharper edge responses (more power above half Nyquist, on the clean input) "
        "than {a} in {layers}",
        edge_only=True,
        clean_only=True,
    ),
    Hypothesis(
        "H4",
        "noise_robustness",
        "{b} features are less perturbed by the input noise (more structured) than {a}'s in every layer",
    ),
)


def is_clean(row) -> bool:
    """A row of the clean condition (``clean_t0``; a noisy condition may also have t = 0)."""
    return str(row.get("condition", "")).startswith("clean")


def hypotheses(
    rows, *, a: str = "baseline", b: str = "curriculum", edge_layers=EDGE_LAYERS, alpha: float = rule.ALPHA
) -> list[dict]:
    """Verdicts on H1-H4, each ``{"id", "claim", "statistic", "verdict", "evidence", "unit",
    "scope", "test", "alpha", "details", "layers", "omnibus"}``; ``details`` holds one dict per
    cell (layer, condition, statistic, n, a_mean, b_mean, diff_mean, hl_diff and its interval,
    p_value, p_adjusted, effect_size, direction, significant, favours_b, against_b; H2 also
    agree, n_nonzero, agree_share); ``layers`` and ``omnibus`` the difference averaged over each
    layer's cells and over all cells (:func:`~ddpm_lens.analysis.decision_rule.pooled`; None
    for H2). H3 also carries ``h4_correlation`` (:func:`h4_correlation`).

    ``scope`` is "recipes" with two or more checkpoints per arm, else :data:`NETWORKS`.
    A hypothesis whose statistic or layers are absent from the rows is "not tested", and so
    are H3 and H4 when the run has no clean condition.
    """
    rows = list(rows)
    unit = inference_unit(rows, a, b)
    layers_text = ", ".join(edge_layers)
    out = [
        _judge(h, rows, a, b, tuple(edge_layers) if h.edge_only else None, unit, alpha, layers_text)
        for h in HYPOTHESES
    ]
    for h in out:
        if h["id"] == "H3" and h["details"]:
            h["h4_correlation"] = corr = h4_correlation(rows, edge_layers, (a, b))
            h["evidence"] += "; " + _correlation_text(corr)
    return out


def _judge(h: Hypothesis, rows, a, b, layers, unit, alpha, layers_text) -> dict:
    claim = h.claim.format(a=a, b=b, layers=layers_text)
    unit_name = "sample" if h.consistency else unit["unit"]
    scope = "recipes" if unit_name == "checkpoint" else NETWORKS
    if scope == NETWORKS:
        claim += f" [{NETWORKS}: this {b} checkpoint vs this {a} one, not the training recipes]"
    out = {"id": h.id, "claim": claim, "statistic": h.statistic, "unit": unit_name, "scope": scope}
    out.update(alpha=alpha, layers=None, omnibus=None)
    present = [r for r in rows if h.statistic in r and (layers is None or r.get("layer") in layers)]
    if not present:
        where = f" for layers {', '.join(layers)}" if layers else ""
        why = f"no rows with '{h.statistic}'{where}; compute that statistic for those layers to test this"
        return {**out, "verdict": "not tested", "test": "", "evidence": why, "details": []}
    if h.clean_only:
        present = [r for r in present if is_clean(r) or r["model"] not in (a, b)]
    details, values = [], []
    for cell in cells(present, (h.statistic,), a, b, unit=unit_name) if present else []:
        if h.statistic not in cell["values"]:
            continue
        va, vb = cell["values"][h.statistic]
        c = {"layer": cell["layer"], "condition": cell["condition"], "statistic": h.statistic}
        c.update(rule.compare(va, vb, paired=unit_name == "sample"))
        if unit_name == "sample":
            c.update(b_greater=int(np.count_nonzero(vb > va)), b_less=int(np.count_nonzero(vb < va)))
        if h.consistency:  # the claimed "direction" is a share above the threshold
            c.update(rule.share_test(vb - va))
        details.append(c)
        values.append((cell["layer"], va, vb))
    if not details:
        if h.clean_only:
            why = (
                f"{h.statistic} is judged on the clean input only (on a noisy input most of its "
                "high-frequency power is the input noise passed through); this run has no clean "
                "condition (--no_clean)"
            )
        else:
            why = (
                f"{h.statistic} compares each noisy input with the clean input of the same sample at "
                "the same t; this run has no clean condition (--no_clean), so it was not computed"
            )
        return {**out, "verdict": "not tested", "test": "", "evidence": why, "details": []}
    for c, adjusted in zip(details, rule.holm([c["p_value"] for c in details])):
        c["p_adjusted"] = float(adjusted)
    verdict = rule.judge(details, alpha=alpha)
    if not h.consistency:
        paired = unit_name == "sample"
        by_layer = {}
        for layer, va, vb in values:
            by_layer.setdefault(layer, []).append((va, vb))
        out["layers"] = [
            {"layer": layer, "cells": len(pairs), **summary}
            for layer, pairs in by_layer.items()
            if (summary := rule.pooled(pairs, paired=paired)) is not None
        ]
        out["omnibus"] = rule.pooled([(va, vb) for _, va, vb in values], paired=paired)
    test = details[0]["test"]
    evidence = _evidence(h, details, verdict, a, b, alpha, unit_name, unit, out["omnibus"])
    test = f"{test}; {rule.CORRECTION}"
    return {**out, "verdict": verdict, "test": test, "evidence": evidence, "details": details}


def _evidence(h: Hypothesis, details, verdict, a, b, alpha, unit_name, unit, omnibus) -> str:
    m = len(details)
    up = sum(c["favours_b"] for c in details)
    down = sum(c["against_b"] for c in details)
    adjusted = [c["p_adjusted"] for c in details if np.isfinite(c["p_adjusted"])]
    effects = [c["effect_size"] for c in details if np.isfinite(c["effect_size"])]
    if h.consistency:
        shares = [c["agree_share"] for c in details if np.isfinite(c["agree_share"])]
        text = (
            f"share of samples whose {h.statistic} difference has the majority sign: "
            + (f"{min(shares):.1%}–{max(shares):.1%}" if shares else "—")
            + f"; significantly above {rule.CONSISTENCY_SHARE:.0%} in {up}/{m} layer×condition cells, "
            f"significantly below in {down}/{m} (Holm, α = {alpha:g})"
        )
    else:
        text = (
            f"{h.statistic}: {b} significantly higher in {up}/{m} layer×condition cells, "
            f"significantly lower in {down}/{m} (Holm, α = {alpha:g})"
        )
        if effects:
            text += f"; median effect size {np.median(effects):+.2f}"
    if adjusted:
        text += f"; smallest adjusted p = {min(adjusted):.3g}"
    if verdict == rule.PARTLY:
        text += f"; not all cells reached significance ({m - up} of {m} did not)"
    if omnibus is not None and np.isfinite(omnibus["diff_ci_low"]):
        text += (
            f"; averaged over all {m} cells, {b} − {a} = {omnibus['diff_mean']:+.3g} "
            f"[{omnibus['diff_ci_low']:+.3g}, {omnibus['diff_ci_high']:+.3g}] (95 %), "
            f"p = {omnibus['p_value']:.3g}"
        )
    if unit_name == "checkpoint":
        k = unit["checkpoints"]
        text += f"; unit: checkpoint ({k[a]} {a}, {k[b]} {b})"
    if verdict == "inconclusive":
        text += "; " + power_note(details, alpha, unit_name, consistency=h.consistency)
    return text


def power_note(details, alpha: float, unit_name: str, *, consistency: bool = False) -> str:
    """Why nothing could be significant: the smallest p reachable at this n and, when n alone
    rules significance out, the least --stats_samples that could change that. No advice to
    add images for power: with one checkpoint per arm they sharpen network A vs network B,
    not a verdict on the recipes."""
    m = len(details)
    if unit_name == "checkpoint":
        return f"with so few checkpoints no cell reached adjusted p < {alpha:g}; add checkpoints per arm"
    n = min(c.get("n_nonzero", c["n"]) for c in details)
    floor_of = rule.smallest_share_p if consistency else rule.smallest_p
    need = rule.samples_needed(m, alpha, floor=floor_of)
    floor = floor_of(n)
    text = f"with n = {n} non-zero differences the exact test cannot give p below {floor:.3g}"
    if floor * m >= alpha:
        text += (
            f", and after Holm over {m} cells a cell needs p < {alpha / m:.3g}, which needs at least "
            f"{need} samples: rerun with --stats_samples {need} at least"
        )
    else:
        text += f"; no cell reached adjusted p < {alpha:g}"
    return text


def h4_correlation(rows, edge_layers=EDGE_LAYERS, models=("baseline", "curriculum")) -> dict:
    """How much H3's measure re-measures H4's, in the edge layers, both models' rows:

    ``clean_r`` (``clean_n``): Pearson r between a row's hf_share on the clean input (what H3
    judges) and the mean noise_robustness of the same sample, layer, model and checkpoint over
    the noisy conditions; ``noisy_r`` (``noisy_n``): r between hf_share and noise_robustness
    on the noisy rows themselves (what H3 judged before: the noise passed through). None where
    fewer than 3 pairs or a constant side."""
    clean_hf, robust = {}, {}
    noisy_pairs = []
    for r in rows:
        if r.get("layer") not in edge_layers or r.get("model") not in models:
            continue
        key = (r["sample"], r["layer"], r["model"], r.get("checkpoint", 0))
        hf, nr = r.get("hf_share"), r.get("noise_robustness")
        if is_clean(r) and isinstance(hf, (int, float)):
            clean_hf[key] = float(hf)
        elif isinstance(nr, (int, float)):
            robust.setdefault(key, []).append(float(nr))
            if isinstance(hf, (int, float)):
                noisy_pairs.append((float(hf), float(nr)))
    clean_pairs = [(clean_hf[k], float(np.mean(robust[k]))) for k in clean_hf if k in robust]
    out = {}
    for name, pairs in (("clean", clean_pairs), ("noisy", noisy_pairs)):
        out[f"{name}_r"], out[f"{name}_n"] = _pearson(pairs), len(pairs)
    return out


def _pearson(pairs) -> float | None:
    if len(pairs) < 3:
        return None
    x, y = np.array(pairs, dtype=np.float64).T
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def _correlation_text(corr: dict) -> str:
    def r(key):
        return "—" if corr[f"{key}_r"] is None else f"{corr[f'{key}_r']:+.2f}"

    return (
        f"correlation with H4's noise_robustness: r = {r('clean')} for the judged clean hf_share "
        f"(n = {corr['clean_n']}), r = {r('noisy')} for hf_share on the noisy inputs (n = {corr['noisy_n']}, "
        "not judged: there it mostly measures the input noise passed through)"
    )
