import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ddpm_lens.analysis import decision_rule as rule


def test_holm_against_a_hand_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    np.testing.assert_allclose(rule.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(rule.holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    # NaN (an untestable cell) is kept and not counted: m = 2
    out = rule.holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert rule.holm([]).shape == (0,)


def test_wilcoxon_drops_zero_differences_from_n_as_scipy_does():
    assert rule.wilcoxon_p([0, 2, 3, 4, 5]) == pytest.approx(0.125)  # n = 4 non-zero, not 5
    assert rule.smallest_p(4) == pytest.approx(0.125) and rule.smallest_p(5) == pytest.approx(0.0625)
    assert rule.wilcoxon_p([1, 2, 3, 4, 5]) == pytest.approx(0.0625)
    assert rule.wilcoxon_p([0, 0, 0]) == 1.0 and math.isnan(rule.wilcoxon_p([1.0]))
    d = [1.0, -1.5, 2.0, 3.0, 4.0, -0.5, 6.0]
    assert rule.wilcoxon_p(d) == pytest.approx(scipy_stats.wilcoxon(d).pvalue)
    assert rule.signed_rank_direction(d) == 1 and rule.signed_rank_direction([-3, 1, 0]) == -1
    assert rule.signed_rank_direction([0, 0]) == 0


def test_samples_needed_for_holm_over_the_seed_cells():
    # 24 cells at 0.05: a cell needs p < 0.00208; 2 / 2**9 = 0.0039 is not, 2 / 2**10 = 0.00195 is
    assert rule.samples_needed(24, 0.05) == 10
    assert rule.samples_needed(1, 0.05) == 6  # 2 / 2**5 = 0.0625 is not below 0.05


def test_effect_sizes_and_intervals_by_hand():
    d = np.array([1.0, 2.0, 3.0, 6.0])  # mean 3, sd sqrt(14/3)
    assert rule.paired_dz(d) == pytest.approx(3 / math.sqrt(14 / 3))
    assert rule.paired_dz(np.zeros(4)) == 0.0 and math.isnan(rule.paired_dz(np.ones(4)))
    a, b = np.array([1.0, 2.0, 3.0]), np.array([4.0, 6.0, 8.0])  # means 2, 6; sds 1, 2: pooled sqrt(2.5)
    assert rule.cohens_d(a, b) == pytest.approx(4 / math.sqrt(2.5))
    assert rule.welch_p(a, b) == pytest.approx(scipy_stats.ttest_ind(b, a, equal_var=False).pvalue)
    diff, low, high = rule.welch_interval(a, b)
    ci = scipy_stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert (diff, low, high) == pytest.approx((4.0, ci.low, ci.high))
    # n = 6: 21 Walsh averages, median 3.5; at 95 % the exact null allows k = 1: (min, max)
    assert rule.hodges_lehmann(np.arange(1.0, 7.0)) == (3.5, 1.0, 6.0)
    assert rule.hodges_lehmann(np.ones(7)) == (1.0, 1.0, 1.0)
    estimate, low, high = rule.hodges_lehmann(np.arange(5.0))  # n = 5: no exact 95 % interval
    assert estimate == 2.0 and math.isnan(low) and math.isnan(high)


def test_hodges_lehmann_is_what_the_signed_rank_test_is_about():
    # seven small losses, three large gains: the mean is positive, the signed-rank sum (and the
    # pseudo-median it tests) negative; the estimate shown beside p must have the test's sign
    d = np.array([-1.0] * 7 + [10.0] * 3)
    out = rule.compare(np.zeros(10), d, paired=True)
    assert out["diff_mean"] > 0 and out["direction"] == -1
    assert out["hl_diff"] == -1.0 and np.sign(out["hl_diff"]) == out["direction"]
    # the interval inverts the test: it covers a symmetric shift 95 % of the time (exact and normal n)
    rng = np.random.default_rng(0)
    for n in (12, 60):
        covered = [
            low <= 0.3 <= high
            for low, high in (rule.hodges_lehmann(0.3 + rng.laplace(size=n))[1:] for _ in range(400))
        ]
        assert 0.92 <= np.mean(covered) <= 0.985


def test_the_share_test_asks_for_most_samples_not_a_majority():
    # 60 % of 1000 samples share a sign: a sign test calls that consistent (p ~ 1e-10); the share
    # test finds it significantly below 90 %
    d = np.r_[np.ones(600), -np.ones(400)]
    assert scipy_stats.binomtest(600, 1000).pvalue < 1e-9
    out = rule.share_test(d)
    assert (out["agree"], out["agree_share"], out["direction"]) == (600, 0.6, -1) and out["p_value"] < 1e-50
    high = rule.share_test(np.r_[-np.ones(97), np.ones(3), np.zeros(5)])  # 97 % of the non-zero agree
    assert (high["n_nonzero"], high["direction"]) == (100, 1) and high["p_value"] < 0.05
    assert rule.share_test(np.ones(30))["p_value"] == pytest.approx(rule.smallest_share_p(30))
    assert rule.share_test(np.zeros(4))["direction"] == 0
    assert rule.samples_needed(24, 0.05, floor=rule.smallest_share_p) == 66  # 2 * 0.9**66 < 0.05 / 24


def test_compare_paired_and_unpaired_fields():
    rng = np.random.default_rng(0)
    a = rng.normal(size=12)
    paired = rule.compare(a, a + 1.0 + 0.1 * rng.normal(size=12), paired=True)
    assert paired["n"] == 12 and paired["direction"] == 1 and paired["p_value"] < 0.001
    assert paired["diff_mean"] == pytest.approx(1.0, abs=0.1) and paired["effect_size"] > 5
    assert paired["hl_ci_low"] < paired["hl_diff"] < paired["hl_ci_high"]
    assert "Wilcoxon" in paired["test"]
    unpaired = rule.compare(np.array([0.1, 0.2, 0.15]), np.array([0.9, 1.0, 0.95]), paired=False)
    assert (unpaired["n"], unpaired["n_a"], unpaired["n_b"]) == (6, 3, 3)
    assert unpaired["p_value"] < 0.01 and unpaired["direction"] == 1 and "Welch" in unpaired["test"]
    assert math.isnan(unpaired["hl_diff"])
    with pytest.raises(ValueError, match="same length"):
        rule.compare(a, a[:3], paired=True)


def cell(p_adjusted, direction):
    return {"p_adjusted": p_adjusted, "direction": direction}


def test_judge_the_four_verdicts():
    assert rule.judge([cell(0.01, 1), cell(0.001, 1)]) == "supported"
    assert rule.judge([cell(0.01, 1), cell(0.3, 1)]) == rule.PARTLY
    assert rule.judge([cell(0.01, 1), cell(0.01, -1)]) == "contradicted"
    assert rule.judge([cell(0.2, 1), cell(0.06, -1)]) == "inconclusive"
    assert rule.judge([cell(float("nan"), 1)]) == "inconclusive"
    assert rule.judge([]) == "not tested"
    assert rule.judge([cell(0.04, 1)], alpha=0.01) == "inconclusive"  # --alpha
    assert rule.judge([cell(0.01, -1)], claimed=-1) == "supported"
    marked = [cell(0.01, 1), cell(0.01, -1), cell(0.5, 1)]
    rule.judge(marked)
    assert [(c["significant"], c["favours_b"], c["against_b"]) for c in marked] == [
        (True, True, False),
        (True, False, True),
        (False, False, False),
    ]
