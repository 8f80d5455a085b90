"""The seed study's expectations H1-H4, judged by the stated decision rule.

- H1: b's activations are sparser than a's in every layer; ``hoyer``, every layer x condition.
- H2: the sign of that difference is the same across samples; the signs of the ``hoyer``
  differences, every layer x condition.
- H3: b has sharper edge responses in the shallow layers; ``hf_share``, the ``edge_layers``
  x every condition.
- H4: b's features are less perturbed by the input noise (more structured);
  ``noise_robustness``, every layer x noisy condition.

Each cell gets the test of :mod:`ddpm_lens.analysis.decision_rule` (the signed-rank test on
per-sample differences, or Welch's test on per-checkpoint means when each arm has two or
more checkpoints; H2 always the exact sign test on the samples of the first checkpoints),
Holm's correction across the hypothesis's cells and the verdict of
:func:`~ddpm_lens.analysis.decision_rule.judge`. The seed's own measures (sparsity
|x| < 1e-3, edge energy, autocorrelation) stay in the summary; the verdicts do not use them
(sparsity reads ~1/sigma, and edge energy and autocorrelation are one measure). Semantic
region separation, the seed's fifth expectation, needs labels and is not tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddpm_lens.analysis import decision_rule as rule
from ddpm_lens.analysis.summary import cells, inference_unit

EDGE_LAYERS = ("encoder_level_0", "encoder_level_1")


@dataclass(frozen=True)
class Hypothesis:
    id: str
    statistic: str
    claim: str  # with {a}, {b} and {layers}
    edge_only: bool = False  # only the edge layers
    consistency: bool = False  # H2: the sign test, either direction counts


HYPOTHESES = (
    Hypothesis("H1", "hoyer", "{b} activations are sparser (Hoyer sparseness) than {a}'s in every layer"),
    Hypothesis(
        "H2",
        "hoyer",
        "the sign of the Hoyer sparseness difference ({b} − {a}) is the same across samples",
        consistency=True,
    ),
    Hypothesis(
        "H3",
        "hf_share",
        "{b} has sharper edge responses (more power above half Nyquist) than {a} in {layers}",
        edge_only=True,
    ),
    Hypothesis(
        "H4",
        "noise_robustness",
        "{b} features are less perturbed by the input noise (more structured) than {a}'s in every layer",
    ),
)


def hypotheses(
    rows, *, a: str = "baseline", b: str = "curriculum", edge_layers=EDGE_LAYERS, alpha: float = rule.ALPHA
) -> list[dict]:
    """Verdicts on H1-H4, each ``{"id", "claim", "statistic", "verdict", "evidence", "unit",
    "test", "alpha", "details"}``; ``details`` holds one dict per cell (layer, condition,
    statistic, n, a_mean, b_mean, diff_mean, median_diff and its interval, p_value,
    p_adjusted, effect_size, direction, significant, favours_b, against_b).

    A hypothesis whose statistic or layers are absent from the rows is "not tested", and so
    is H4 when the run has no clean condition (noise robustness needs it).
    """
    rows = list(rows)
    unit = inference_unit(rows, a, b)
    layers_text = ", ".join(edge_layers)
    return [
        _judge(h, rows, a, b, tuple(edge_layers) if h.edge_only else None, unit, alpha, layers_text)
        for h in HYPOTHESES
    ]


def _judge(h: Hypothesis, rows, a, b, layers, unit, alpha, layers_text) -> dict:
    claim = h.claim.format(a=a, b=b, layers=layers_text)
    unit_name = "sample" if h.consistency else unit["unit"]
    out = {"id": h.id, "claim": claim, "statistic": h.statistic, "unit": unit_name, "alpha": alpha}
    present = [r for r in rows if h.statistic in r and (layers is None or r.get("layer") in layers)]
    if not present:
        where = f" for layers {', '.join(layers)}" if layers else ""
        why = f"no rows with '{h.statistic}'{where}; compute that statistic for those layers to test this"
        return {**out, "verdict": "not tested", "test": "", "evidence": why, "details": []}
    details = []
    for cell in cells(present, (h.statistic,), a, b, unit=unit_name):
        if h.statistic not in cell["values"]:
            continue
        va, vb = cell["values"][h.statistic]
        c = {"layer": cell["layer"], "condition": cell["condition"], "statistic": h.statistic}
        c.update(rule.compare(va, vb, paired=unit_name == "sample"))
        if unit_name == "sample":
            c.update(b_greater=int(np.count_nonzero(vb > va)), b_less=int(np.count_nonzero(vb < va)))
        if h.consistency:  # the claimed "direction" is consistency itself: the sign test's
            c.update(p_value=rule.sign_test_p(vb - va), test=rule.SIGN_TEST, direction=int(np.any(vb != va)))
        details.append(c)
    if not details:
        why = (
            f"{h.statistic} compares each noisy input with the clean input of the same sample; this run "
            "has no clean condition (--no_clean), so it was not computed"
        )
        return {**out, "verdict": "not tested", "test": "", "evidence": why, "details": []}
    for c, adjusted in zip(details, rule.holm([c["p_value"] for c in details])):
        c["p_adjusted"] = float(adjusted)
    verdict = rule.judge(details, alpha=alpha)
    test = details[0]["test"]
    evidence = _evidence(h, details, verdict, a, b, alpha, unit_name, unit)
    test = f"{test}; {rule.CORRECTION}"
    return {**out, "verdict": verdict, "test": test, "evidence": evidence, "details": details}


def _evidence(h: Hypothesis, details, verdict, a, b, alpha, unit_name, unit) -> str:
    m = len(details)
    up = sum(c["favours_b"] for c in details)
    down = sum(c["against_b"] for c in details)
    adjusted = [c["p_adjusted"] for c in details if np.isfinite(c["p_adjusted"])]
    effects = [c["effect_size"] for c in details if np.isfinite(c["effect_size"])]
    if h.consistency:
        text = f"{h.statistic} signs: consistent across samples in {up}/{m} layer×condition cells"
    else:
        text = (
            f"{h.statistic}: {b} significantly higher in {up}/{m} layer×condition cells, "
            f"significantly lower in {down}/{m} (Holm, α = {alpha:g})"
        )
    if effects:
        text += f"; median effect size {np.median(effects):+.2f}"
    if adjusted:
        text += f"; smallest adjusted p = {min(adjusted):.3g}"
    if unit_name == "checkpoint":
        k = unit["checkpoints"]
        text += f"; unit: checkpoint ({k[a]} {a}, {k[b]} {b})"
    if verdict == "inconclusive":
        text += "; " + power_note(details, alpha, unit_name)
    return text


def power_note(details, alpha: float, unit_name: str) -> str:
    """Why nothing could be significant: the smallest p reachable at this n, and what to run."""
    m = len(details)
    if unit_name == "checkpoint":
        return f"with so few checkpoints no cell reached adjusted p < {alpha:g}; add checkpoints per arm"
    n = min(c.get("n_nonzero", c["n"]) for c in details)
    need = rule.samples_needed(m, alpha)
    floor = rule.smallest_p(n)
    text = f"with n = {n} non-zero differences the exact test cannot give p below {floor:.3g}"
    if floor * m >= alpha:
        text += (
            f", and after Holm over {m} cells a cell needs p < {alpha / m:.3g}, which needs at least "
            f"{need} samples: rerun with --stats_samples {need} or (for power) many more"
        )
    else:
        text += f"; no cell reached adjusted p < {alpha:g}: more samples (--stats_samples) add power"
    return text
