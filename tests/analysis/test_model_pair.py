import pytest

from ddpm_lens.analysis.model_pair import arm_models
from ddpm_lens.analysis.options import visualize_options
from ddpm_lens.util.errors import UserError


def test_the_pair_comes_first_then_each_arms_other_checkpoints():
    specs = arm_models([["b0", "b1", "b2"], ["c0", "c1"]], [None, ["x0", "x1"]], ["Base", "Cur"])
    assert [(key, i, ckpt, cfg) for key, i, _, ckpt, cfg in specs] == [
        ("baseline", 0, "b0", None),
        ("curriculum", 0, "c0", "x0"),
        ("baseline", 1, "b1", None),
        ("baseline", 2, "b2", None),
        ("curriculum", 1, "c1", "x1"),
    ]
    assert [label for _, _, label, _, _ in specs] == ["Base", "Cur", "Base 2", "Base 3", "Cur 2"]


def test_options_take_one_or_several_checkpoints_and_configs_per_arm():
    one = visualize_options(baseline_ckpt="a.pt", curriculum_ckpt="b.pt", config_baseline="a.json").resolved()
    assert (one.baseline_ckpt, one.curriculum_ckpt, one.config_baseline, one.config_curriculum) == (
        ("a.pt",),
        ("b.pt",),
        ("a.json",),
        None,
    )
    many = visualize_options(
        baseline_ckpt=["a1.pt", "a2.pt"],
        curriculum_ckpt=("b1.pt", "b2.pt", "b3.pt"),
        config_baseline=["a.json"],
    ).resolved()
    assert many.config_baseline == ("a.json", "a.json")  # one config for the whole arm
    with pytest.raises(UserError, match="one config or one per checkpoint"):
        visualize_options(
            baseline_ckpt=["a1", "a2", "a3"], curriculum_ckpt="b", config_baseline=["x", "y"]
        ).resolved()
    with pytest.raises(UserError, match="--alpha"):
        visualize_options(baseline_ckpt="a", curriculum_ckpt="b", alpha=1.5).resolved()
    with pytest.raises(UserError, match="--loss_timesteps"):
        visualize_options(baseline_ckpt="a", curriculum_ckpt="b", loss_timesteps=-1).resolved()
