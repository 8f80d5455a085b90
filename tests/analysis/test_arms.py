"""An arm pools independent runs of one recipe: epochs of one run, other recipes and one run
against several are refused before any weights are copied (build_plan, the visualizer's path)."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, write_study_run, write_tiny_checkpoint

import ddpm_lens.analysis.model_pair as model_pair
import ddpm_lens.core.checkpoint as checkpoint
from ddpm_lens.analysis.arms import run_name
from ddpm_lens.analysis.options import VisualizeOptions
from ddpm_lens.analysis.plan import build_plan
from ddpm_lens.util.errors import UserError


@pytest.fixture
def no_weights_copied(monkeypatch):
    calls = []
    real = checkpoint.model_from_weights

    def build(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(model_pair, "model_from_weights", build)
    return calls


def _plan(baseline, curriculum):
    return build_plan(
        VisualizeOptions(
            baseline_ckpt=tuple(map(str, baseline)),
            curriculum_ckpt=tuple(map(str, curriculum)),
            dataset="synthetic-faces",
            num_samples=1,
            device="cpu",
        )
    )


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory):
    """Two study run folders per recipe (baseline, C): each run's checkpoints by epoch, the first
    baseline run with epochs 1 and 2, the others with epoch 2 only."""
    root = tmp_path_factory.mktemp("chkpts")
    runs = {}
    for name in ("tiny_study", "tiny_study_c"):
        runs[name] = [
            write_study_run(
                root / name / stamp,
                config=f"configs/{name}.json",
                seed=s,
                run_seed=s,
                epochs=(1, 2) if (name, s) == ("tiny_study", 1) else (2,),
            )
            for s, stamp in ((1, "20251219_113720"), (2, "20251220_090000"))
        ]
    return runs


def test_epochs_of_one_study_run_are_not_pooled_as_seeds(study_runs, no_weights_copied):
    """It used to run: epochs 1 and 2 of one run read as two independent baseline seeds."""
    (b_run, _), (c1, c2) = study_runs["tiny_study"], study_runs["tiny_study_c"]
    with pytest.raises(UserError) as err:
        _plan(b_run, [c1[-1], c2[-1]])
    message = str(err.value)
    assert "--baseline_ckpt" in message and "epochs 1 and 2 of one training run" in message
    assert message.endswith("to follow one run across training, use `ddpm-lens trajectories`")
    assert "\n" not in message and no_weights_copied == []


def test_the_last_epoch_of_each_run_pools_as_seeds(study_runs):
    (b1, b2), (c1, c2) = study_runs["tiny_study"], study_runs["tiny_study_c"]
    plan = _plan([b1[-1], b2[-1]], [c1[-1], c2[-1]])
    assert [(m.key, m.index) for m in plan.models] == [
        ("baseline", 0),
        ("curriculum", 0),
        ("baseline", 1),
        ("curriculum", 1),
    ]
    assert plan.models[0].config.train.seed == 1 and plan.models[2].config.train.seed == 2  # config.json


def test_epochs_of_one_ddpm_torch_or_ddpm_lens_run_are_refused(tmp_path, tiny_pair):
    run = tmp_path / "tiny"
    a = write_tiny_checkpoint(run / "tiny_20260101_000000_3.pt", seed=0)
    b = write_tiny_checkpoint(run / "tiny_20260101_010000_4.pt", seed=1)
    obj = torch.load(b, weights_only=True)
    obj["epoch"] = 4  # write_tiny_checkpoint stores epoch 3 in every file
    torch.save(obj, b)
    c = write_tiny_checkpoint(tmp_path / "other" / "tiny_c_1.pt", config="configs/tiny_c.json", seed=2)
    with pytest.raises(UserError, match="epochs 3 and 4 of one training run"):
        _plan([a, b], [tiny_pair[1], c])


def test_other_recipes_in_one_arm_are_refused(study_runs, no_weights_copied):
    (b1, b2), (_, c2) = study_runs["tiny_study"], study_runs["tiny_study_c"]
    with pytest.raises(UserError, match=r"--curriculum_ckpt .* are different recipes \(curriculum: none vs"):
        _plan([b1[-1], b2[-1]], [b1[0], c2[-1]])
    assert no_weights_copied == []


def test_one_checkpoint_against_several_is_refused_naming_the_unused():
    """It used to read only the first of each arm (the others changed nothing) and say so nowhere."""
    with pytest.raises(
        UserError, match=r"--baseline_ckpt has 1 checkpoint and --curriculum_ckpt 3: .*2 would"
    ):
        VisualizeOptions(baseline_ckpt=("a.pt",), curriculum_ckpt=("b1.pt", "b2.pt", "b3.pt")).resolved()
    two_three = VisualizeOptions(baseline_ckpt=("a1", "a2"), curriculum_ckpt=("b1", "b2", "b3")).resolved()
    assert len(two_three.curriculum_ckpt) == 3


def test_steps_of_one_uvit_run_are_refused_and_two_runs_last_steps_pool(tmp_path):
    """``ckpts/<step>.ckpt/`` folders carry a step, no epoch: they used to pass as two runs."""
    from types import SimpleNamespace

    from ddpm_lens.analysis.arms import check_arm
    from ddpm_lens.core.config import load_config

    cfg = load_config(ROOT / "configs/tiny_uvit.json")

    def model(path, step):
        return SimpleNamespace(weights=SimpleNamespace(path=str(path), epoch=None, step=step), config=cfg)

    one = tmp_path / "default" / "ckpts"
    with pytest.raises(UserError, match=r"are steps 40000 and 80000 of one training run"):
        check_arm([model(one / "40000.ckpt", 40000), model(one / "80000.ckpt", 80000)], "--arm A")
    other = tmp_path / "seed2" / "ckpts"
    check_arm([model(one / "80000.ckpt", 80000), model(other / "80000.ckpt", 80000)], "--arm A")


def test_run_name_drops_the_save_time_and_epoch():
    assert run_name("workdir/uvit/default/ckpts/40000.ckpt") == ""
    assert run_name("chkpts/celeba/celeba_20251219_113720_16.pt") == "celeba"
    assert run_name("celeba64_c_16.pt") == "celeba64_c"
    assert run_name("tiny_c_2.pt") == "tiny_c"


def test_a_study_run_and_the_shipped_config_of_its_recipe_share_an_arm(study_runs):
    """config.json writes model.out_channels 3, the shipped configs leave it out: one recipe."""
    from ddpm_lens.analysis.arms import _recipe
    from ddpm_lens.core.config import load_config

    ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
    run = load_config(study_runs["tiny_study"][0][0].parent / "config.json")
    shipped = load_config(ROOT / "configs" / "tiny_study.json")
    assert run.model != shipped.model and _recipe(run, "model") == _recipe(shipped, "model")
