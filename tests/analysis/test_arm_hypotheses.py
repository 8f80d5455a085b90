import numpy as np
import pytest

from ddpm_lens.analysis.arm_hypotheses import hypotheses_against_first
from ddpm_lens.analysis.decision_rule import holm
from ddpm_lens.analysis.hypotheses import hypotheses
from ddpm_lens.util.errors import UserError

LAYERS = ("in_conv", "encoder_level_0", "encoder_level_1", "bottleneck")
CONDITIONS = (("clean_t0", 0), ("noisy_t500", 500))


def arm_rows(n, shifts, *, seed=0, checkpoints=1):
    """n samples x conditions x layers for each arm: the first arm's value per cell and sample,
    plus the arm's shift and noise (sd 0.05) for every other arm."""
    rng = np.random.default_rng(seed)
    rows = []
    for ckpt in range(checkpoints):
        for sample in range(n):
            for condition, t in CONDITIONS:
                for layer in LAYERS:
                    base = rng.uniform(0.2, 0.6, size=3)
                    for i, (arm, shift) in enumerate(shifts.items()):
                        v = base + (0 if i == 0 else shift + 0.05 * rng.normal(size=3))
                        rows.append(
                            {
                                "sample": sample,
                                "condition": condition,
                                "t": t,
                                "layer": layer,
                                "model": arm,
                                "checkpoint": ckpt,
                                "hoyer": float(v[0]),
                                "hf_share": float(v[1]),
                                "noise_robustness": None if t == 0 else float(v[2]),
                            }
                        )
    return rows


def test_two_arms_are_exactly_the_pair_hypotheses():
    rows = arm_rows(12, {"baseline": 0, "curriculum": 0.03})
    pair = hypotheses(rows)
    arms = hypotheses_against_first(rows, ["baseline", "curriculum"])
    assert len(arms) == len(pair) == 4
    for h, g in zip(pair, arms):
        assert g["b"] == "curriculum" and g["comparisons"] == 1
        assert {k: g[k] for k in h} == h


def test_every_arm_against_the_first_with_holm_across_all_comparisons():
    rows = arm_rows(20, {"Baseline": 0, "C": 0.0, "CS": 0.2, "CR": -0.2})
    table = hypotheses_against_first(rows, ["Baseline", "C", "CS", "CR"])
    assert [(g["id"], g["b"]) for g in table[:4]] == [("H1", "C"), ("H1", "CS"), ("H1", "CR"), ("H2", "C")]
    verdicts = {(g["id"], g["b"]): g["verdict"] for g in table}
    assert verdicts[("H1", "CS")] == "supported" and verdicts[("H1", "CR")] == "contradicted"
    assert verdicts[("H1", "C")] == "inconclusive"
    assert verdicts[("H4", "CS")] == "supported"  # noisy cells only
    h1 = [g for g in table if g["id"] == "H1"]
    cells = [c for g in h1 for c in g["details"]]
    assert len(cells) == 3 * 8 and all(g["cells"] == 24 and g["comparisons"] == 3 for g in h1)
    np.testing.assert_allclose([c["p_adjusted"] for c in cells], holm([c["p_value"] for c in cells]))
    # Holm over the family is never smaller than Holm over one comparison alone.
    alone = hypotheses([r for r in rows if r["model"] in ("Baseline", "C")], a="Baseline", b="C")[0]
    assert all(c["p_adjusted"] >= d["p_adjusted"] for c, d in zip(h1[0]["details"], alone["details"]))
    assert "Holm over 24 cells of 3 comparisons" in h1[1]["evidence"]
    assert "CS significantly higher in 8/8" in h1[1]["evidence"]


def test_the_shared_family_multiplies_the_smallest_adjusted_p_by_the_comparisons():
    # Holm's smallest adjusted p is m times the smallest p: 8 cells alone, 24 with two more arms.
    rows = arm_rows(9, {"a": 0, "b": 0.06, "c": 0.0, "d": 0.0}, seed=3)
    alone = hypotheses([r for r in rows if r["model"] in ("a", "b")], a="a", b="b")[0]
    family = hypotheses_against_first(rows, ["a", "b", "c", "d"])[0]
    smallest_alone = min(c["p_adjusted"] for c in alone["details"])
    smallest_family = min(c["p_adjusted"] for c in family["details"])
    assert smallest_family == pytest.approx(min(1.0, 3 * smallest_alone))


def test_bad_arm_lists_are_user_errors():
    rows = arm_rows(4, {"a": 0, "b": 0.1})
    with pytest.raises(UserError, match="at least two arms"):
        hypotheses_against_first(rows, ["a"])
    with pytest.raises(UserError, match="distinct"):
        hypotheses_against_first(rows, ["a", "a"])
    with pytest.raises(UserError, match="no statistics rows for arm 'c'"):
        hypotheses_against_first(rows, ["a", "b", "c"])
