import math

import pytest
from scipy import stats as scipy_stats

from ddpm_lens.analysis.summary import inference_unit, summarize
from ddpm_lens.util.errors import UserError


def row(sample, model, layer="encoder_level_2", condition="noisy_t500", t=500, **values):
    return {"sample": sample, "condition": condition, "t": t, "layer": layer, "model": model, **values}


def hand_table():
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    up = [0.5, 1.0, 1.5, 2.0, 2.5]  # all positive
    mixed = [1.0, -1.0, 2.0, 3.0, 4.0]  # one negative
    rows = []
    for i in range(5):
        rows.append(row(i, "baseline", sparsity=a[i], mean=a[i]))
        rows.append(row(i, "curriculum", sparsity=a[i] + up[i], mean=a[i] + mixed[i]))
    return rows


def test_summarize_intervals_agreement_and_exact_wilcoxon_by_hand():
    out = summarize(hand_table(), stats=("sparsity", "mean"))
    assert [(r["layer"], r["condition"], r["t"], r["statistic"]) for r in out] == [
        ("encoder_level_2", "noisy_t500", 500, "sparsity"),
        ("encoder_level_2", "noisy_t500", 500, "mean"),
    ]
    sparsity, mean = out
    t975 = scipy_stats.t.ppf(0.975, 4)
    # baseline 1..5: mean 3, s = sqrt(2.5)
    assert sparsity["a_mean"] == 3.0
    assert sparsity["a_ci_high"] == pytest.approx(3.0 + t975 * math.sqrt(2.5) / math.sqrt(5))
    # differences 0.5..2.5: mean 1.5, s = sqrt(0.625)
    half = t975 * math.sqrt(0.625) / math.sqrt(5)
    assert sparsity["diff_mean"] == pytest.approx(1.5)
    assert (sparsity["diff_ci_low"], sparsity["diff_ci_high"]) == pytest.approx((1.5 - half, 1.5 + half))
    assert sparsity["b_mean"] == pytest.approx(4.5)
    assert (sparsity["n"], sparsity["agree"], sparsity["agree_text"]) == (5, 5, "5/5")
    # exact null, all 5 positive: p = 2 / 2**5
    assert sparsity["p_value"] == pytest.approx(0.0625)
    assert "Wilcoxon" in sparsity["test"] and sparsity["unit"] == "sample"
    assert sparsity["p_adjusted"] == sparsity["p_value"]  # one cell per statistic: Holm changes nothing
    assert sparsity["effect_size"] == pytest.approx(1.5 / math.sqrt(0.625))  # d_z = mean / sd
    assert sparsity["hl_diff"] == pytest.approx(1.5)
    assert (mean["diff_mean"], mean["agree_text"]) == (pytest.approx(1.8), "4/5")
    assert mean["p_value"] == pytest.approx(scipy_stats.wilcoxon([1.0, -1.0, 2.0, 3.0, 4.0]).pvalue)
    assert mean["p_value"] > 0.0625


def test_summarize_holm_adjusts_across_the_cells_of_a_statistic():
    rows = hand_table() + [{**r, "layer": "bottleneck"} for r in hand_table()]
    out = summarize(rows, stats=("sparsity", "mean"))
    sparsity = [r for r in out if r["statistic"] == "sparsity"]
    assert len(sparsity) == 2 and all(r["p_adjusted"] == pytest.approx(2 * 0.0625) for r in sparsity)


def test_none_values_are_left_out_and_checkpoints_set_the_unit():
    rows = [{**r, "robust": None if r["sample"] == 0 else r["mean"]} for r in hand_table()]
    out = {r["statistic"]: r for r in summarize(rows, stats=("sparsity", "robust"))}
    assert out["sparsity"]["n"] == 5 and out["robust"]["n"] == 4
    undefined = [{**r, "robust": None} for r in hand_table()]
    assert [r["statistic"] for r in summarize(undefined, stats=("sparsity", "robust"))] == ["sparsity"]
    two = hand_table() + [{**r, "checkpoint": 1} for r in hand_table()]
    assert inference_unit(two) == {"unit": "checkpoint", "checkpoints": {"baseline": 2, "curriculum": 2}}
    (row,) = summarize(two, stats=("sparsity",))
    assert (row["unit"], row["n"], row["n_a"]) == ("checkpoint", 4, 2)
    one_sided = hand_table() + [{**r, "checkpoint": 1} for r in hand_table() if r["model"] == "curriculum"]
    assert inference_unit(one_sided)["unit"] == "sample"  # one baseline: the first of each, paired
    (row,) = summarize(one_sided, stats=("sparsity",))
    assert row["n"] == 5 and row["diff_mean"] == pytest.approx(1.5)


def test_summarize_zero_differences_and_single_sample():
    same = [row(i, m, sparsity=0.2 + i) for i in range(3) for m in ("baseline", "curriculum")]
    (out,) = summarize(same, stats=("sparsity",))
    assert (out["p_value"], out["diff_mean"], out["diff_ci_low"]) == (1.0, 0.0, 0.0)
    one = [row(0, "baseline", sparsity=0.1), row(0, "curriculum", sparsity=0.3)]
    (out,) = summarize(one, stats=("sparsity",))
    assert out["n"] == 1 and out["diff_mean"] == pytest.approx(0.2)
    assert math.isnan(out["p_value"]) and math.isnan(out["a_ci_low"]) and math.isnan(out["diff_ci_high"])


def test_summarize_uses_the_given_model_labels_and_rejects_bad_input():
    rows = [{**r, "model": {"baseline": "B0", "curriculum": "C1"}[r["model"]]} for r in hand_table()]
    rows.append(row(0, "other", sparsity=99.0, mean=99.0))  # a third model is ignored
    (out,) = summarize(rows, stats=("sparsity",), a="B0", b="C1")
    assert (out["a"], out["b"], out["diff_mean"]) == ("B0", "C1", pytest.approx(1.5))
    with pytest.raises(UserError, match="'curriculum' has no rows.*B0"):
        summarize(rows, stats=("sparsity",), a="B0")
    with pytest.raises(UserError, match="'edge_energy' is missing"):
        summarize(hand_table(), stats=("edge_energy",))
    with pytest.raises(ValueError, match="only some of"):
        summarize(hand_table()[:-1], stats=("sparsity",))
    with pytest.raises(ValueError, match="several rows"):
        summarize(hand_table() + hand_table()[:1], stats=("sparsity",))
