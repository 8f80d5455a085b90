"""The across-training study on constructed checkpoints: the long table's shape, CKA to itself,
the cache (rerun with one more checkpoint, a killed run), and bad input."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from ddpm_lens.analysis.study_arms import resolve_arms
from ddpm_lens.analysis.trajectories import _cka, run_study
from ddpm_lens.analysis.trajectory_cache import TrajectoryCache
from ddpm_lens.analysis.trajectory_measures import MEASURES, Measure, TrajectoryOptions
from ddpm_lens.util.errors import UserError
from tests.conftest import ROOT, perturb

pytestmark = pytest.mark.usefixtures("one_thread")  # 2 threads stall each other on a busy 2-core machine

OPTIONS = TrajectoryOptions(
    loss_timesteps=(0, 10, 500),
    low_t=10,
    loss_num=6,
    stats_num=5,
    stats_timesteps=(100,),
    layers=("in_conv", "bottleneck"),
    cka_num=5,
    batch_size=32,
)


def write_run(folder, name, epochs, *, seed=0, resolution=16):
    """A ddpm-lens run folder: ``<name>_<stamp>_<epoch>.pt`` per epoch, each a differently perturbed
    tiny model carrying its config (16 px synthetic faces, 8 training images), EMA != raw."""
    from ddpm_lens.core.config import load_config, with_overrides
    from ddpm_lens.core.unet import build_unet

    small = {"model.ch_multipliers": [1, 2], "model.apply_attn": [False, False], "dataset.max_images": 8}
    cfg = with_overrides(
        load_config(ROOT / "configs/tiny_study.json"), {**small, "dataset.resolution": resolution}
    )
    folder.mkdir(parents=True, exist_ok=True)
    for e in epochs:
        torch.manual_seed(seed)
        model = perturb(build_unet(cfg.model), seed=seed * 100 + e)
        raw = {k: v.clone() for k, v in model.state_dict().items()}
        ema = perturb(model, seed=seed * 100 + e + 50, scale=0.01).state_dict()
        torch.save(  # no fsync: a test's files need not survive a power cut
            {"model": raw, "ema": {"shadow": ema}, "epoch": e, "step": 4 * e, "config": cfg.to_dict()},
            folder / f"{name}_20260101_000000_{e}.pt",
        )
    return folder


@pytest.fixture(scope="module")
def four_arms(tmp_path_factory):
    root = tmp_path_factory.mktemp("arms")
    return {label: write_run(root / label, label.lower(), (1, 2), seed=k) for k, label in enumerate("BCSR")}


def _entries(cache_dir):
    """The cache's per-checkpoint entries (not its files/ and pairs/ records)."""
    return [p for p in cache_dir.iterdir() if (p / "rows.json").is_file()]


def _arms(runs):
    return resolve_arms([(label, [str(folder)], None) for label, folder in runs.items()])


@pytest.mark.slow
def test_four_arms_give_one_row_per_arm_checkpoint_measure_layer_t(four_arms, tmp_path):
    study = run_study(_arms(four_arms), OPTIONS, cache_dir=tmp_path / "cache", progress=False)
    keys = [(r["arm"], r["checkpoint"], r["measure"], r["layer"], r["t"]) for r in study.rows]
    assert len(keys) == len(set(keys))
    checkpoints = {(c["arm"], c["checkpoint"]) for c in study.checkpoints}
    assert len(checkpoints) == 8
    per_measure = collections.defaultdict(set)
    for r in study.rows:
        per_measure[r["measure"]].add((r["arm"], r["checkpoint"]))
    for measure in (
        "loss_train",
        "loss_held_out",
        "gap",
        "gap_low_t",
        "hoyer",
        "hf_share",
        "sigma",
        "noise_robustness",
        "cka_to_final",
    ):
        assert per_measure[measure] == checkpoints, measure
    assert per_measure["cka_to_first_arm"] == {c for c in checkpoints if c[0] != "B"}
    # each checkpoint x measure: one row per layer x t of its grid
    per_cell = collections.Counter((r["arm"], r["checkpoint"], r["measure"]) for r in study.rows)
    assert {per_cell[(a, c, "gap")] for a, c in checkpoints} == {3}
    assert {per_cell[(a, c, "hoyer")] for a, c in checkpoints} == {4}  # 2 layers x (clean, t=100)
    assert {per_cell[(a, c, "noise_robustness")] for a, c in checkpoints} == {2}
    # the final checkpoint against itself: CKA 1 in every layer and condition
    finals = [r for r in study.rows if r["measure"] == "cka_to_final" and r["checkpoint"].endswith("_2.pt")]
    assert finals and all(r["value"] == pytest.approx(1.0, abs=1e-9) for r in finals)
    firsts = [r for r in study.rows if r["measure"] == "cka_to_final" and r["checkpoint"].endswith("_1.pt")]
    assert all(r["value"] < 0.999 for r in firsts)  # a different model is not 1
    assert len(study.comparisons) == 3 * 2 * 2  # 3 arms x 2 equal steps x the grid's t <= low_t
    assert {c["x"] for c in study.comparisons} == {4, 8}  # steps the checkpoints record
    assert all(np.isfinite(c["p_adjusted"]) for c in study.comparisons)
    assert set(study.verdicts) == {"C", "S", "R"}


def test_cka_of_a_checkpoint_with_itself_is_one(four_arms, tmp_path):
    run_study(_arms({"B": four_arms["B"]}), OPTIONS, cache_dir=tmp_path, progress=False)
    cache = TrajectoryCache(tmp_path)
    entry = cache.get(_entries(tmp_path)[0].name)
    results = _cka(entry, entry)
    assert len(results) == 4  # 2 layers x 2 conditions
    assert all(r["cka_debiased"] == pytest.approx(1.0, abs=1e-9) for _, _, r in results)


def test_rerun_with_one_more_checkpoint_measures_only_it(four_arms, tmp_path):
    import shutil

    run = shutil.copytree(four_arms["B"], tmp_path / "run")
    first = run_study(_arms({"B": run}), OPTIONS, cache_dir=tmp_path / "cache", progress=False)
    write_run(run, "b", (3,), seed=0)
    second = run_study(_arms({"B": run}), OPTIONS, cache_dir=tmp_path / "cache", progress=False)
    assert [c["cached"] for c in second.checkpoints] == [True, True, False]
    old = {(r["checkpoint"], r["measure"], r["layer"], r["t"]): r["value"] for r in first.rows}
    for r in second.rows:  # the per-checkpoint measures of the cached checkpoints are the same numbers
        key = (r["checkpoint"], r["measure"], r["layer"], r["t"])
        if key in old and r["measure"] != "cka_to_final":
            assert r["value"] == old[key]


def test_a_killed_run_resumes_without_mixed_results(four_arms, tmp_path):
    calls = []

    def dies_on_second(ctx):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while measuring the second checkpoint
        return []

    measures = {**MEASURES, "dies": Measure("dies", dies_on_second, "")}
    with pytest.raises(KeyboardInterrupt):
        run_study(
            _arms({"B": four_arms["B"]}), OPTIONS, cache_dir=tmp_path, measures=measures, progress=False
        )
    entries = _entries(tmp_path)
    assert len(entries) == 1 and not list(tmp_path.glob(".tmp-*"))  # the first whole, nothing of the second
    resumed = run_study(
        _arms({"B": four_arms["B"]}), OPTIONS, cache_dir=tmp_path, measures=measures, progress=False
    )
    assert [c["cached"] for c in resumed.checkpoints] == [True, False]
    fresh = run_study(_arms({"B": four_arms["B"]}), OPTIONS, cache_dir=tmp_path / "fresh", progress=False)
    assert [r["value"] for r in resumed.rows] == [r["value"] for r in fresh.rows]


def test_other_options_never_read_an_old_entry(four_arms, tmp_path):
    run_study(_arms({"B": four_arms["B"]}), OPTIONS, cache_dir=tmp_path, progress=False)
    other = TrajectoryOptions(**{**OPTIONS.__dict__, "seed": 1})
    study = run_study(_arms({"B": four_arms["B"]}), other, cache_dir=tmp_path, progress=False)
    assert not any(c["cached"] for c in study.checkpoints)


def test_arms_at_different_resolutions_are_refused(four_arms, tmp_path):
    big = write_run(tmp_path / "big", "big", (1,), resolution=32)
    with pytest.raises(UserError, match="different resolutions"):
        run_study(_arms({"B": four_arms["B"], "Big": big}), OPTIONS, cache_dir=tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()  # refused before any work


def test_timesteps_outside_the_schedule_are_refused(four_arms, tmp_path):
    bad = TrajectoryOptions(**{**OPTIONS.__dict__, "loss_timesteps": (0, 1000)})
    with pytest.raises(UserError, match=r"outside 0\.\.999"):
        run_study(_arms({"B": four_arms["B"]}), bad, cache_dir=tmp_path, progress=False)
