"""Several checkpoints per arm, end to end on tiny models: rows carry the checkpoint, CKA gets
the same-recipe reference, and the verdicts compare checkpoints."""

import numpy as np
import pytest

from ddpm_lens.analysis.compare import compare_features
from ddpm_lens.analysis.hypotheses import hypotheses


@pytest.fixture(scope="module")
def two_by_two(tiny_pair, tmp_path_factory):
    from conftest import write_tiny_checkpoint

    d = tmp_path_factory.mktemp("arms")
    extra_b = write_tiny_checkpoint(d / "b2.pt", seed=5)
    extra_c = write_tiny_checkpoint(d / "c2.pt", config="configs/tiny_c.json", seed=6)
    return compare_features(
        baseline_ckpt=[str(tiny_pair[0]), str(extra_b)],
        curriculum_ckpt=[str(tiny_pair[1]), str(extra_c)],
        num_samples=2,
        stats_samples=5,
        timesteps=(500,),
        layers=["in_conv", "bottleneck"],
    )


def test_rows_carry_the_checkpoint_and_figures_come_from_the_first(two_by_two, tiny_pair):
    cmp = two_by_two
    assert {(r["model"], r["checkpoint"]) for r in cmp.rows} == {
        ("baseline", 0),
        ("baseline", 1),
        ("curriculum", 0),
        ("curriculum", 1),
    }
    assert len(cmp.rows) == 5 * 2 * 2 * 4  # samples x conditions x layers x models
    assert [m["checkpoint"] for m in cmp.models[:2]] == [str(tiny_pair[0]), str(tiny_pair[1])]
    assert set(cmp.activations) == {"baseline", "curriculum"}  # the pair's activations
    first = [
        r for r in cmp.rows if r["model"] == "baseline" and r["checkpoint"] == 0 and r["layer"] == "in_conv"
    ]
    act = cmp.activations["baseline"]["in_conv"][0, 0].astype(np.float64)
    assert first[0]["mean"] == pytest.approx(act.mean(), rel=1e-9)


def test_cka_of_the_pair_and_each_arms_reference(two_by_two):
    pairs = {r["pair"] for r in two_by_two.cka}
    assert pairs == {"baseline_vs_curriculum", "baseline_vs_baseline_1", "curriculum_vs_curriculum_1"}
    for r in two_by_two.cka:
        assert r["n_images"] == 5 and r["cka_ci_low"] - 1e-9 <= r["cka_debiased"] <= r["cka_ci_high"] + 1e-9
        assert np.isfinite(r["cka_null"])


def test_verdicts_compare_checkpoints(two_by_two):
    h = {x["id"]: x for x in hypotheses(two_by_two.rows)}
    assert h["H1"]["unit"] == "checkpoint" and "Welch" in h["H1"]["test"]
    assert all((c["n_a"], c["n_b"]) == (2, 2) for c in h["H1"]["details"])
    assert h["H2"]["unit"] == "sample"  # consistency across samples, on the first checkpoints


def test_the_matched_channel_r_has_a_mismatched_image_null():
    from types import SimpleNamespace

    from ddpm_lens.analysis.pair_accumulators import PairAccumulators
    from ddpm_lens.analysis.similarity import assign_channels

    rng = np.random.default_rng(0)
    n, c, h, w = 6, 8, 8, 8
    plan = SimpleNamespace(
        options=SimpleNamespace(num_samples=n, stats_samples=n),
        layers=["L"],
        conditions=[SimpleNamespace(name="clean_t0", t=0)],
        models=[SimpleNamespace(id="baseline"), SimpleNamespace(id="curriculum")],
    )
    layout = rng.normal(size=(c, h, w))  # what aligned inputs share, whatever the image

    def matched_and_null(a, b):
        acc = PairAccumulators(plan, cka=False, match=True)
        for first in (0, 3):  # two chunks of three images: the null pairs cross the boundary
            maps = {"baseline": a[first : first + 3], "curriculum": b[first : first + 3]}
            layers = {k: {"L": SimpleNamespace(acts=v[:, None])} for k, v in maps.items()}
            acc.update(SimpleNamespace(first=first, layers=layers))
        assert acc.null_corr[("L", "clean_t0")].n == (n - 1) * h * w
        corr, null = acc.matcher()[("L", "clean_t0")], acc.null_matcher()[("L", "clean_t0")]
        return assign_channels(corr)["mean_correlation"], assign_channels(null)["mean_correlation"]

    # unrelated models on aligned inputs: each channel is the shared layout + its own noise
    a = layout + rng.normal(size=(n, c, h, w))
    b = layout[::-1] + rng.normal(size=(n, c, h, w))
    matched, null = matched_and_null(a, b)
    assert matched > 0.3 and abs(matched - null) < 0.05  # high r, but no more than unrelated inputs give
    # related models: b's channels are a's, permuted, plus a little noise; no shared layout
    a = rng.normal(size=(n, c, h, w))
    matched, null = matched_and_null(a, a[:, ::-1] + 0.3 * rng.normal(size=(n, c, h, w)))
    assert matched > 0.9 and null < 0.3
