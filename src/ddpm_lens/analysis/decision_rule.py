"""The decision rule: a test per layer x condition cell, Holm across a hypothesis's cells,
effect sizes, and the verdict. Pure functions on numpy arrays.

Per cell the two models' values are compared by

- **paired** (the unit of inference is the input image; one checkpoint per arm): the
  Wilcoxon signed-rank test, two-sided, on the per-sample differences d = b - a, as
  ``scipy.stats.wilcoxon`` computes it (zero differences dropped, so n is the number of
  non-zero differences; exact null distribution for small n). Effect size: paired Cohen's
  d_z = mean(d) / sd(d); beside it the Hodges-Lehmann estimate (the median of the Walsh
  averages (d_i + d_j) / 2, i <= j) with the interval that inverts the same signed-rank test.
  The signed-rank test is about the pseudo-median, not the mean; the Hodges-Lehmann
  estimate is that pseudo-median's estimate, so the test, its estimate and its interval
  speak of one quantity (the mean difference is shown too, and may differ in sign for
  skewed differences). Kept over a paired permutation test of the mean: it is robust to
  the heavy tails these differences have, and its p-values are exact for small n.
- **unpaired** (the unit is the checkpoint; two or more per arm): Welch's t-test,
  two-sided, on the per-checkpoint means. Effect size: Cohen's d with the pooled sd.

Holm's step-down correction then runs across the cells a hypothesis requires, at level
``alpha`` (0.05 unless ``--alpha``). A cell is significant when its adjusted p < alpha and
its direction is the sign of the test's statistic (signed-rank sum W+ - W-, or the mean
difference). The verdict:

- ``supported``: every required cell significant in the claimed direction;
- ``contradicted``: some required cell significant in the other direction;
- ``not all cells significant``: some, not all, cells significant in the claimed
  direction, none against (at low power the usual outcome even when every cell shares the
  effect: read the per-layer and omnibus intervals of :func:`pooled_interval`);
- ``inconclusive``: no cell significant (too little evidence; see :func:`smallest_p`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats

ALPHA = 0.05
CONFIDENCE = 0.95  # of every interval
CONSISTENCY_SHARE = 0.9  # H2: "the same sign across samples" means at least this share agrees
PARTLY = "not all cells significant"  # the verdict once called "mixed"
PAIRED_TEST = (
    "Wilcoxon signed-rank, two-sided, on paired differences b − a "
    "(zeros dropped as scipy does; exact for small n)"
)
UNPAIRED_TEST = "Welch's t-test, two-sided, on per-checkpoint means"
SHARE_TEST = (
    f"exact binomial test of the share of samples whose b − a has the majority sign against "
    f"{CONSISTENCY_SHARE:g}, two-sided (twice the smaller one-sided p; zeros dropped)"
)
CORRECTION = "Holm, across the layer × condition cells of each hypothesis"
VERDICTS = ("supported", "contradicted", PARTLY, "inconclusive", "not tested")


def rule_text(alpha: float = ALPHA) -> list[str]:
    """The decision rule in sentences, as the report and summary.json state it."""
    return [
        "Per layer × condition cell: a paired two-sided test on the per-sample differences b − a "
        "(Wilcoxon signed-rank as scipy computes it: zero differences dropped, exact null distribution "
        "for small n); with two or more checkpoints per arm instead Welch's t-test on the "
        "per-checkpoint means.",
        f"Holm's correction across the cells each hypothesis requires; a cell is significant when its "
        f"adjusted p < α = {alpha:g}, in the direction of its test statistic.",
        "Effect sizes: paired d_z = mean(d) / sd(d) and the Hodges–Lehmann estimate (the pseudo-median "
        "the signed-rank test is about) with the 95 % interval that inverts that test (Cohen's d with "
        "the pooled sd across checkpoints).",
        f"H2 (the sign is the same across samples): per cell, the share of samples whose difference has "
        f"the majority sign, tested against {CONSISTENCY_SHARE:g} with an exact binomial test; significant "
        f"above {CONSISTENCY_SHARE:g} = consistent, below = not consistent.",
        f"Verdicts: supported = every required cell significant in the claimed direction; contradicted = "
        f"a required cell significant the other way; {PARTLY} = some cells significant as claimed, none "
        "against, the others did not reach significance (often low power, not a sign that the effect "
        "differs between cells: read the per-layer and omnibus intervals); inconclusive = no cell "
        "significant (too little evidence).",
        "With one checkpoint per arm the verdicts compare network A with network B (this baseline and "
        "this curriculum network), not the training recipes: more images make that comparison sharper, "
        "not a verdict on the recipes, which needs two or more checkpoints per arm.",
    ]


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (scipy); 1.0 when every
    difference is zero, NaN for fewer than two."""
    diff = np.asarray(diff, dtype=np.float64)
    if len(diff) < 2:
        return float("nan")
    if not np.any(diff):
        return 1.0
    return float(scipy_stats.wilcoxon(diff, alternative="two-sided").pvalue)


def signed_rank_direction(diff: np.ndarray) -> int:
    """+1 / -1 / 0: the sign of W+ - W- (the signed-rank sums of the non-zero differences)."""
    d = np.asarray(diff, dtype=np.float64)
    d = d[d != 0]
    if len(d) == 0:
        return 0
    ranks = scipy_stats.rankdata(np.abs(d))
    return int(np.sign(ranks[d > 0].sum() - ranks[d < 0].sum()))


def share_test(diff: np.ndarray, share: float = CONSISTENCY_SHARE) -> dict:
    """Is the share of non-zero differences with the majority sign above ``share``?

    ``{"agree", "n_nonzero", "agree_share", "p_value", "direction", "test"}``: ``agree`` of
    ``n_nonzero`` differences have the majority sign; p is twice the smaller one-sided exact
    binomial p against ``share`` (capped at 1); direction +1 when the observed share is above
    ``share``, -1 below. 60 % of 1000 samples agreeing is significantly *below* 0.9 (-1),
    not "consistent". Without a non-zero difference: p 1.0, direction 0.
    """
    d = np.asarray(diff, dtype=np.float64)
    pos, neg = int(np.count_nonzero(d > 0)), int(np.count_nonzero(d < 0))
    n, agree = pos + neg, max(pos, neg)
    out = {"agree": agree, "n_nonzero": n, "test": SHARE_TEST}
    if n == 0:
        return {**out, "agree_share": float("nan"), "p_value": 1.0, "direction": 0}
    above = scipy_stats.binomtest(agree, n, share, alternative="greater").pvalue
    below = scipy_stats.binomtest(agree, n, share, alternative="less").pvalue
    observed = agree / n
    direction = 1 if observed > share else -1 if observed < share else 0
    return {
        **out,
        "agree_share": observed,
        "p_value": float(min(1.0, 2 * min(above, below))),
        "direction": direction,
    }


def smallest_share_p(n: int, share: float = CONSISTENCY_SHARE) -> float:
    """The smallest p :func:`share_test` can give for "above ``share``" with n non-zero
    differences: 2 share**n (all of one sign). With n = 30 it is 0.085."""
    return min(1.0, 2.0 * share**n) if n >= 1 else 1.0


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Welch t-test p of two independent samples; NaN with fewer than 2 in either,
    1.0 when both are constant and equal."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    return float(scipy_stats.ttest_ind(b, a, equal_var=False).pvalue)


def smallest_p(n: int) -> float:
    """The smallest two-sided p the exact signed-rank (or sign) test can give with n non-zero
    differences: 2 / 2**n (all of one sign). With n = 5 it is 0.0625 > 0.05."""
    return 2.0 / 2**n if n >= 1 else 1.0


def samples_needed(cells: int, alpha: float = ALPHA, floor=None) -> int:
    """The fewest non-zero paired differences with which every one of ``cells`` Holm-corrected
    cells can be significant at all: floor(n) < alpha / cells, ``floor`` :func:`smallest_p`
    (2 / 2**n) unless given (a floor, not a power estimate)."""
    floor = floor or smallest_p
    n = 1
    while floor(n) >= alpha / max(cells, 1):
        n += 1
    return n


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order); NaN entries stay NaN and are not counted in m."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def paired_dz(diff: np.ndarray) -> float:
    """Paired Cohen's d_z = mean(d) / sd(d, ddof=1); 0 when every difference is 0, NaN when
    the differences are all equal but not zero, or fewer than two."""
    d = np.asarray(diff, dtype=np.float64)
    if len(d) < 2:
        return float("nan")
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if not np.any(d) else float("nan")
    return float(d.mean() / sd)


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean(b) - mean(a)) / pooled sd (ddof=1); 0 when equal constants, NaN when undefined."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    diff = b.mean() - a.mean()
    if pooled == 0:
        return 0.0 if diff == 0 else float("nan")
    return float(diff / pooled)


def hodges_lehmann(diff: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """The Hodges-Lehmann estimate of ``diff``'s pseudo-median, the median of its n(n+1)/2 Walsh
    averages (d_i + d_j) / 2 (i <= j), and the interval that inverts the signed-rank test:
    from the k-th smallest to the k-th largest Walsh average, k the largest with
    P(W+ < k) <= (1 - confidence) / 2 under the null (exact for n <= 50, normal beyond).
    Every difference counts (zeros too). NaN bounds when n < 2 or no k exists (n < 6 at 95 %).
    """
    d = np.asarray(diff, dtype=np.float64)
    n = len(d)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    i, j = np.triu_indices(n)
    walsh = (d[i] + d[j]) / 2
    estimate = float(np.median(walsh))
    k = _signed_rank_critical(n, (1 - confidence) / 2)
    if k < 1:
        return estimate, float("nan"), float("nan")
    m = len(walsh)
    low, high = np.partition(walsh, (k - 1, m - k))[[k - 1, m - k]]
    return estimate, float(low), float(high)


def _signed_rank_critical(n: int, tail: float) -> int:
    """The largest k with P(W+ <= k - 1) <= ``tail`` for the signed-rank statistic of n
    differences under the null (0 when none): exact counts for n <= 50, normal beyond."""
    if n < 1:
        return 0
    if n > 50:
        mean, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        return max(0, int(math.floor(mean - scipy_stats.norm.ppf(1 - tail) * sd + 0.5)))
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):  # W+ of ranks 1..r: each rank in or out
        counts[r:] = counts[r:] + counts[:-r].copy()
    cdf = np.cumsum(counts) / 2.0**n
    return int(np.count_nonzero(cdf <= tail))  # P(W+ <= k - 1) <= tail for k = 1..that


def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and its two-sided Student-t interval (NaN bounds when n < 2)."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def welch_interval(
    a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """mean(b) - mean(a) and its Welch-Satterthwaite t interval (NaN bounds when undefined)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df) * se)
    return diff, diff - half, diff + half


def compare(a: np.ndarray, b: np.ndarray, *, paired: bool) -> dict:
    """Everything the summary and the verdicts need about one cell: a and b's values (paired by
    position when ``paired``), b - a.

    Keys: ``n`` (pairs, or both arms' units together), ``n_a``, ``n_b``, ``a_mean``,
    ``a_ci_low``, ``a_ci_high``, the same for ``b`` and ``diff`` (paired: the mean difference
    and its t interval; unpaired: Welch's), ``hl_diff`` with ``hl_ci_low``/``_high`` (paired
    only, else NaN: :func:`hodges_lehmann`), ``p_value``, ``direction`` (+1 b higher, -1 lower, 0 neither),
    ``effect_size`` and ``test``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out: dict = {"n": len(a) if paired else len(a) + len(b), "n_a": len(a), "n_b": len(b)}
    for prefix, values in (("a", a), ("b", b)):
        out.update(zip((f"{prefix}_mean", f"{prefix}_ci_low", f"{prefix}_ci_high"), mean_interval(values)))
    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired values must have the same length, got {len(a)} and {len(b)}")
        diff = b - a
        out.update(zip(("diff_mean", "diff_ci_low", "diff_ci_high"), mean_interval(diff)))
        out.update(zip(("hl_diff", "hl_ci_low", "hl_ci_high"), hodges_lehmann(diff)))
        out.update(
            p_value=wilcoxon_p(diff),
            direction=signed_rank_direction(diff),
            effect_size=paired_dz(diff),
            n_nonzero=int(np.count_nonzero(diff)),
            test=PAIRED_TEST,
        )
    else:
        out.update(zip(("diff_mean", "diff_ci_low", "diff_ci_high"), welch_interval(a, b)))
        out.update(hl_diff=float("nan"), hl_ci_low=float("nan"), hl_ci_high=float("nan"))
        out.update(
            p_value=welch_p(a, b),
            direction=int(np.sign(out["diff_mean"])),
            effect_size=cohens_d(a, b),
            test=UNPAIRED_TEST,
        )
    return out


def judge(cells: list[dict], *, alpha: float = ALPHA, claimed: int = 1) -> str:
    """The verdict on cells carrying ``p_adjusted`` and ``direction``; ``claimed`` is the
    direction the hypothesis predicts (+1: b higher). Marks each cell's ``significant``,
    ``favours_b`` (significant in the claimed direction) and ``against_b`` (the other way)."""
    if not cells:
        return "not tested"
    for c in cells:
        significant = bool(np.isfinite(c["p_adjusted"]) and c["p_adjusted"] < alpha and c["direction"] != 0)
        c["significant"] = significant
        c["favours_b"] = significant and c["direction"] == claimed
        c["against_b"] = significant and c["direction"] == -claimed
    if any(c["against_b"] for c in cells):
        return "contradicted"
    if all(c["favours_b"] for c in cells):
        return "supported"
    if any(c["favours_b"] for c in cells):
        return PARTLY
    return "inconclusive"


def pooled(pairs, *, paired: bool) -> dict | None:
    """The difference averaged over several cells: each unit's (sample's, or checkpoint's)
    values averaged over the cells ``pairs`` [(a (n,), b (n,)), ...], then :func:`compare`d.

    The per-layer and omnibus summary beside a verdict: a uniform small effect that few cells
    reach alone shows here. None when the cells do not hold the same units (lengths differ)."""
    if not pairs or len({(len(va), len(vb)) for va, vb in pairs}) > 1:
        return None
    a = np.mean([va for va, _ in pairs], axis=0)
    b = np.mean([vb for _, vb in pairs], axis=0)
    out = compare(a, b, paired=paired)
    return {
        k: out[k]
        for k in (
            "n",
            "diff_mean",
            "diff_ci_low",
            "diff_ci_high",
            "hl_diff",
            "hl_ci_low",
            "hl_ci_high",
            "p_value",
            "effect_size",
            "direction",
        )
    }
