import numpy as np
import pytest

from ddpm_lens.analysis import decision_rule as rule
from ddpm_lens.analysis.hypotheses import NETWORKS, hypotheses
from ddpm_lens.analysis.map_measures import high_frequency_share, noise_robustness
from ddpm_lens.analysis.summary import summarize

LAYERS = ("in_conv", "encoder_level_0", "encoder_level_1", "encoder_level_2", "encoder_level_3", "bottleneck")
CONDITIONS = (("clean_t0", 0), ("noisy_t100", 100), ("noisy_t500", 500), ("noisy_t900", 900))
MEASURES = ("hoyer", "hf_share", "noise_robustness")


def constructed_rows(n, shift, *, checkpoints=1, ckpt_shift=0.0, conditions=CONDITIONS, seed=0):
    """Rows of n samples x conditions x 6 layers x 2 models (x checkpoints per arm): every
    measure of the curriculum model is the baseline's + ``shift`` + noise (sd 0.05); each
    checkpoint adds its own offset (sd ``ckpt_shift``), the seed-to-seed spread. Every
    checkpoint sees the same samples, as in a run."""
    rng = np.random.default_rng(seed)
    base_of = {
        (sample, condition, layer): rng.uniform(0.2, 0.6, size=len(MEASURES))
        for sample in range(n)
        for condition, _ in conditions
        for layer in LAYERS
    }
    rows = []
    for ckpt in range(checkpoints):
        offsets = {m: rng.normal(scale=ckpt_shift, size=len(MEASURES)) for m in ("baseline", "curriculum")}
        for sample in range(n):
            for condition, t in conditions:
                for layer in LAYERS:
                    base = base_of[(sample, condition, layer)]
                    for model in ("baseline", "curriculum"):
                        v = base + offsets[model]
                        if model == "curriculum":
                            v = v + shift + 0.05 * rng.normal(size=len(MEASURES))
                        values = dict(zip(MEASURES, map(float, v)))
                        if t == 0:
                            values["noise_robustness"] = None  # not defined for the clean input
                        values["sparsity"] = float(rng.uniform())
                        rows.append(
                            {
                                "sample": sample,
                                "condition": condition,
                                "t": t,
                                "layer": layer,
                                "model": model,
                                "checkpoint": ckpt,
                                **values,
                            }
                        )
    return rows


def by_id(rows, **kwargs):
    return {h["id"]: h for h in hypotheses(rows, **kwargs)}


def test_large_shift_with_70_samples_is_supported():
    # 70: H2 needs 2 * 0.9**n < 0.05 / 24 (n >= 66) even when every sample agrees
    h = by_id(constructed_rows(70, 0.3))
    assert [h[k]["verdict"] for k in ("H1", "H2", "H3", "H4")] == ["supported"] * 4
    assert len(h["H1"]["details"]) == 24 and len(h["H4"]["details"]) == 18  # noisy conditions only
    assert [(c["layer"], c["condition"]) for c in h["H3"]["details"]] == [
        ("encoder_level_0", "clean_t0"),
        ("encoder_level_1", "clean_t0"),
    ]
    assert {c["agree_share"] for c in h["H2"]["details"]} == {1.0} and "100.0%" in h["H2"]["evidence"]
    cell = h["H1"]["details"][0]
    for key in ("layer", "condition", "n", "a_mean", "b_mean", "diff_mean", "p_value", "hl_diff"):
        assert key in cell
    assert cell["statistic"] == "hoyer" and cell["n"] == 70 and cell["favours_b"] is True
    assert cell["p_adjusted"] >= cell["p_value"] and cell["p_adjusted"] < 0.05 and cell["effect_size"] > 2
    assert "24/24" in h["H1"]["evidence"] and h["H1"]["unit"] == "sample"
    assert "Wilcoxon" in h["H1"]["test"] and "Holm" in h["H1"]["test"]


def test_five_samples_are_inconclusive_and_say_what_to_run():
    h = by_id(constructed_rows(5, 0.3))
    assert [h[k]["verdict"] for k in ("H1", "H2", "H3", "H4")] == ["inconclusive"] * 4
    assert "cannot give p below 0.0625" in h["H1"]["evidence"]
    assert "--stats_samples 10" in h["H1"]["evidence"]  # 2 / 2**10 < 0.05 / 24
    assert all(c["favours_b"] is False and c["p_value"] == pytest.approx(0.0625) for c in h["H1"]["details"])


def test_zero_differences_lower_the_p_floor_note():
    rows = constructed_rows(5, 0.3)
    baseline = {(r["sample"], r["condition"], r["layer"]): r for r in rows if r["model"] == "baseline"}
    for r in rows:  # sample 0 identical in both models: its difference is 0 and drops out
        if r["sample"] == 0 and r["model"] == "curriculum":
            r.update({m: baseline[(0, r["condition"], r["layer"])][m] for m in MEASURES})
    h = by_id(rows)
    assert "n = 4 non-zero differences" in h["H1"]["evidence"] and "0.125" in h["H1"]["evidence"]


def test_the_opposite_shift_is_contradicted():
    h = by_id(constructed_rows(70, -0.3))
    assert [h[k]["verdict"] for k in ("H1", "H3", "H4")] == ["contradicted"] * 3
    assert h["H2"]["verdict"] == "supported"  # consistently lower is still consistent
    assert all(c["against_b"] for c in h["H1"]["details"])


def test_mixed_when_only_some_layers_shift():
    rows = constructed_rows(30, 0.0)
    for r in rows:
        if r["model"] == "curriculum" and r["layer"] in ("in_conv", "encoder_level_0"):
            r["hoyer"] += 0.3
    h = by_id(rows)
    assert h["H1"]["verdict"] == rule.PARTLY
    assert "not all cells reached significance" in h["H1"]["evidence"]
    favoured = {c["layer"] for c in h["H1"]["details"] if c["favours_b"]}
    assert {"in_conv", "encoder_level_0"} <= favoured
    # the other 16 cells have no effect: Holm keeps false positives to <= 5 % of such runs
    assert sum(c["significant"] for c in h["H1"]["details"]) <= 9


def test_three_plus_three_checkpoints_test_between_checkpoints():
    # samples shift by 0.3 within each checkpoint pair, checkpoints spread by 0.02 (seed to seed)
    h = by_id(constructed_rows(4, 0.3, checkpoints=3, ckpt_shift=0.02))
    assert h["H1"]["unit"] == "checkpoint" and "Welch" in h["H1"]["test"]
    assert h["H1"]["verdict"] == "supported"
    assert "unit: checkpoint (3 baseline, 3 curriculum)" in h["H1"]["evidence"]
    cell = h["H1"]["details"][0]
    assert (cell["n_a"], cell["n_b"]) == (3, 3)
    # the same effect, but checkpoints of one recipe spread as widely as the effect: not significant
    noisy = by_id(constructed_rows(4, 0.3, checkpoints=3, ckpt_shift=0.5))
    assert noisy["H1"]["verdict"] in ("inconclusive", rule.PARTLY)
    assert h["H1"]["scope"] == "recipes" and NETWORKS not in h["H1"]["claim"]
    summary = summarize(constructed_rows(4, 0.3, checkpoints=3, ckpt_shift=0.02), stats=("hoyer",))
    assert {r["unit"] for r in summary} == {"checkpoint"} and {r["n"] for r in summary} == {6}


def test_without_the_clean_condition_noise_robustness_is_not_tested():
    rows = constructed_rows(30, 0.3, conditions=CONDITIONS[1:])
    for r in rows:
        r["noise_robustness"] = None
    h = by_id(rows)
    assert h["H4"]["verdict"] == "not tested" and "--no_clean" in h["H4"]["evidence"]
    assert h["H1"]["verdict"] == "supported"
    assert by_id(rows, edge_layers=("absent_layer",))["H3"]["verdict"] == "not tested"
    old = [{k: v for k, v in r.items() if k != "hoyer"} for r in rows]  # a run from before hoyer
    assert by_id(old)["H1"]["verdict"] == "not tested"


def test_alpha_is_the_level():
    rows = constructed_rows(8, 0.05)  # a small effect: adjusted p values near the line
    strict = by_id(rows, alpha=1e-6)
    assert all(h["verdict"] in ("inconclusive", "not tested") for h in strict.values())
    assert all(h["alpha"] == 1e-6 for h in strict.values())


def test_identical_models_give_zero_differences_and_no_verdict_either_way(tiny_pair):
    from ddpm_lens.analysis.compare import compare_features

    cmp = compare_features(baseline_ckpt=str(tiny_pair[0]), curriculum_ckpt=str(tiny_pair[0]), num_samples=3)
    rows = cmp.rows
    summary = summarize(rows, stats=("hoyer", "kurtosis", "hf_share", "noise_robustness", "sparsity", "std"))
    assert summary and all(r["diff_mean"] == 0 and r["p_value"] == 1.0 for r in summary)
    assert {r["effect_size"] for r in summary} == {0.0}
    verdicts = [h["verdict"] for h in hypotheses(rows)]
    assert not {"supported", "contradicted"} & set(verdicts), verdicts


def test_sixty_percent_agreement_is_not_a_consistent_sign():
    # the Hoyer difference is +0.3 for 60 % of 300 samples, -0.3 for the rest: the old sign test
    # called every cell "consistent" (p ~ 5e-4); the share test finds 60 % well below 90 %
    rows = constructed_rows(300, 0.0)
    flip = np.random.default_rng(1).random(300) < 0.6
    for r in rows:
        if r["model"] == "curriculum":
            r["hoyer"] += 0.3 if flip[r["sample"]] else -0.3
    h = by_id(rows)["H2"]
    assert h["verdict"] == "contradicted" and all(c["against_b"] for c in h["details"])
    shares = {round(c["agree_share"], 3) for c in h["details"]}
    assert shares == {round(flip.mean(), 3)} and f"{flip.mean():.1%}" in h["evidence"]


def square_maps(rng, n, noise_sd):
    """(n, 4, 16, 16): a sharp square of random size and place in every channel, plus noise."""
    maps = np.zeros((n, 4, 16, 16))
    for i in range(n):
        size, y, x = rng.integers(4, 9), *rng.integers(0, 8, size=2)
        maps[i, :, y : y + size, x : x + size] = 1.0
    return maps + noise_sd * rng.normal(size=maps.shape)


def test_sharper_edges_are_judged_on_the_clean_input_not_on_noise_passed_through():
    # both models see the same sharp squares; on noisy inputs b passes the noise through (sd 0.5)
    # and a does not (sd 0.02): more "high-frequency power" on noisy inputs is H4, not sharper edges
    rng, n, rows = np.random.default_rng(0), 30, []
    clean = square_maps(rng, n, 0.0)
    for layer in ("encoder_level_0", "encoder_level_1"):
        for model, sd in (("baseline", 0.02), ("curriculum", 0.5)):
            own_clean = clean + 0.01 * rng.normal(size=clean.shape)  # tiny differences, either sign
            for condition, t in CONDITIONS:
                acts = own_clean if t == 0 else own_clean + sd * rng.normal(size=clean.shape)
                hf, nr = high_frequency_share(acts), noise_robustness(acts, own_clean)
                for i in range(n):
                    rows.append(
                        {"sample": i, "condition": condition, "t": t, "layer": layer, "model": model}
                        | {"hf_share": float(hf[i]), "noise_robustness": None if t == 0 else float(nr[i])}
                    )
    h = by_id(rows)
    assert {c["condition"] for c in h["H3"]["details"]} == {"clean_t0"}
    assert h["H3"]["verdict"] == "inconclusive", h["H3"]["evidence"]
    assert h["H4"]["verdict"] == "contradicted"  # b's noisy maps are less like its clean ones
    corr = h["H3"]["h4_correlation"]
    assert corr["noisy_r"] < -0.9 and corr["noisy_n"] == 2 * 2 * 3 * n and corr["clean_n"] == 2 * 2 * n
    assert "correlation with H4" in h["H3"]["evidence"]
    no_clean = by_id([r for r in rows if r["t"] != 0])["H3"]
    assert no_clean["verdict"] == "not tested" and "clean input only" in no_clean["evidence"]


def test_one_checkpoint_per_arm_compares_networks_and_gives_no_power_advice():
    # no recipe effect, but the two networks differ by a small offset: at n = 200 the verdict is
    # real for these two networks, and it says nothing about the recipes
    rows = constructed_rows(200, 0.0)
    for r in rows:
        if r["model"] == "curriculum":
            r["hoyer"] += 0.02
    h = by_id(rows)
    assert h["H1"]["verdict"] != "inconclusive" and h["H1"]["scope"] == NETWORKS
    assert all(NETWORKS in v["claim"] for v in h.values())
    few = by_id(constructed_rows(5, 0.3))["H1"]
    assert few["verdict"] == "inconclusive" and "power" not in few["evidence"] and NETWORKS in few["claim"]


def test_a_uniform_modest_effect_shows_in_the_layer_and_omnibus_intervals():
    # d_z 0.5 in every cell at n = 20: few cells reach significance alone, the averages do
    rows = constructed_rows(20, 0.025)
    h = by_id(rows)["H1"]
    assert h["verdict"] in (rule.PARTLY, "inconclusive")
    assert [s["layer"] for s in h["layers"]] == list(LAYERS) and all(s["cells"] == 4 for s in h["layers"])
    assert all(s["diff_ci_low"] > 0 for s in h["layers"])
    assert h["omnibus"]["diff_ci_low"] > 0 and h["omnibus"]["p_value"] < 1e-3
    assert "averaged over all 24 cells" in h["evidence"]
    assert by_id(rows)["H2"]["omnibus"] is None
