import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from stats_reference import edge_energy, layer_stats

from ddpm_lens.analysis.stats import spatial_autocorrelation
from ddpm_lens.analysis.summary import hypotheses, summarize
from ddpm_lens.util.errors import UserError

LAYERS = ("in_conv", "encoder_level_0", "encoder_level_1", "encoder_level_2", "encoder_level_3", "bottleneck")
CONDITIONS = (("clean_t0", 0), ("noisy_t100", 100), ("noisy_t500", 500), ("noisy_t900", 900))


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
    assert "Wilcoxon" in sparsity["test"]
    assert (mean["diff_mean"], mean["agree_text"]) == (pytest.approx(1.8), "4/5")
    assert mean["p_value"] == pytest.approx(scipy_stats.wilcoxon([1.0, -1.0, 2.0, 3.0, 4.0]).pvalue)
    assert mean["p_value"] > 0.0625


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
    with pytest.raises(ValueError, match="only one of"):
        summarize(hand_table()[:-1], stats=("sparsity",))
    with pytest.raises(ValueError, match="several rows"):
        summarize(hand_table() + hand_table()[:1], stats=("sparsity",))


def study_rows(zero_in, seed=0):
    """Rows from real statistics: 5 samples x 4 conditions x 6 layers x 2 models.

    Both models see the same activations, except that in layer l the model ``zero_in(l)``
    ("baseline", "curriculum" or None) has a random half of its entries zeroed.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for sample in range(5):
        for condition, t in CONDITIONS:
            for layer in LAYERS:
                act = rng.normal(size=(4, 6, 6))  # (C, H, W)
                zeroed = act * (rng.random(act.shape) < 0.5)
                for model in ("baseline", "curriculum"):
                    x = zeroed if zero_in(layer) == model else act
                    s = layer_stats(x, shown=[0, 1, 2, 3])
                    values = {k: s[k] for k in ("mean", "std", "mean_abs", "sparsity")}
                    values["edge_energy"] = float(edge_energy(x).mean())
                    values["autocorr"] = float(spatial_autocorrelation(x).mean())
                    rows.append(row(sample, model, layer, condition, t, **values))
    return rows


def by_id(rows, **kwargs):
    return {h["id"]: h for h in hypotheses(rows, **kwargs)}


def test_hypotheses_supported_when_curriculum_zeroes_half_its_entries():
    h = by_id(study_rows(lambda layer: "curriculum"))
    assert h["H1"]["verdict"] == "supported"
    assert len(h["H1"]["details"]) == 24
    assert all(c["b_greater"] == 5 and c["n"] == 5 for c in h["H1"]["details"])
    assert "24/24" in h["H1"]["evidence"] and "pp" in h["H1"]["evidence"]
    assert "0.0625" in h["H1"]["evidence"]  # the smallest p 5 samples allow
    # half the entries zeroed: sparsity rises by about 50 pp
    assert all(0.4 < c["diff_mean"] < 0.6 for c in h["H1"]["details"])
    assert h["H2"]["verdict"] == "supported" and "24/24" in h["H2"]["evidence"]
    assert [c["layer"] for c in h["H3"]["details"]] == ["encoder_level_0"] * 4 + ["encoder_level_1"] * 4


def test_hypotheses_not_supported_for_identical_models():
    h = by_id(study_rows(lambda layer: None))
    assert all(h[k]["verdict"] == "not supported" for k in ("H1", "H2", "H3", "H4"))
    assert "0/24" in h["H1"]["evidence"] and "24/24" in h["H1"]["evidence"]
    assert "+0" in h["H1"]["evidence"]


def test_hypotheses_mixed_when_half_the_layers_go_each_way():
    h = by_id(study_rows(lambda layer: "curriculum" if LAYERS.index(layer) < 3 else "baseline"))
    assert h["H1"]["verdict"] == "mixed"
    assert "12/24" in h["H1"]["evidence"]
    # every cell still moves the same way in all 5 samples: consistent, in both directions
    assert h["H2"]["verdict"] == "supported"
    assert "12 with curriculum higher, 12 with curriculum lower" in h["H2"]["evidence"]


def test_h3_only_looks_at_the_edge_layers():
    rows = []
    for sample in range(5):
        for layer in LAYERS:
            for model, value in (("baseline", 1.0), ("curriculum", 2.0)):
                sharper = layer.startswith("encoder_level_0") or layer.startswith("encoder_level_1")
                edge = value if sharper else 3.0 - value  # curriculum sharper only in the edge layers
                rows.append(row(sample, model, layer, edge_energy=edge + 0.01 * sample, autocorr=0.5))
    h = by_id(rows)
    assert h["H3"]["verdict"] == "supported" and "2/2" in h["H3"]["evidence"]
    assert h["H4"]["verdict"] == "not supported"
    assert h["H1"]["verdict"] == "not tested" and h["H1"]["details"] == []
    assert by_id(rows, edge_layers=("bottleneck",))["H3"]["verdict"] == "not supported"
    assert by_id(rows, edge_layers=("absent_layer",))["H3"]["verdict"] == "not tested"
