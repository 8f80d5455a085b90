import numpy as np
import pytest
import torch
from conftest import write_tiny_checkpoint

from ddpm_lens.analysis.arm_features import arm_features
from ddpm_lens.analysis.arm_hypotheses import hypotheses_against_first
from ddpm_lens.analysis.compare import compare_features
from ddpm_lens.util.errors import UserError

OPTIONS = dict(
    num_samples=2, stats_samples=3, timesteps=(500,), layers=["in_conv", "bottleneck"], batch_size=4
)


@pytest.fixture(scope="module")
def third(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("arm") / "tiny_cr_3.pt", seed=2)


@pytest.mark.slow
def test_each_arm_gets_the_pairs_inputs_rows_and_activations(tiny_pair, third):
    arms = arm_features(
        [("Base", str(tiny_pair[0])), ("C", str(tiny_pair[1])), ("CR", str(third))], **OPTIONS
    )
    pair = compare_features(baseline_ckpt=str(tiny_pair[0]), curriculum_ckpt=str(tiny_pair[1]), **OPTIONS)
    assert arms.labels == ["Base", "C", "CR"] and arms.layers == pair.layers
    assert torch.equal(arms.images, pair.images[:2])
    for label, key in (("Base", "baseline"), ("C", "curriculum")):
        for layer in arms.layers:
            np.testing.assert_array_equal(arms.activations[label][layer], pair.activations[key][layer][:2])
        mine = [{**r, "model": key} for r in arms.rows if r["model"] == label]
        assert mine == [r for r in pair.rows if r["model"] == key]
    # The third arm: its own model on the same inputs, one row per sample x condition x layer.
    cr = [r for r in arms.rows if r["model"] == "CR"]
    assert len(cr) == 3 * 2 * 2 and arms.activations["CR"]["in_conv"].shape[:2] == (2, 2)
    assert not np.array_equal(arms.activations["CR"]["bottleneck"], arms.activations["C"]["bottleneck"])
    table = hypotheses_against_first(arms.rows, arms.labels)
    assert [(h["id"], h["b"]) for h in table[:2]] == [("H1", "C"), ("H1", "CR")]
    assert all(h["cells"] == 2 * len(h["details"]) for h in table if h["details"])


def test_arm_lists_and_pair_fields_are_refused(tiny_pair):
    with pytest.raises(UserError, match="at least two arms"):
        arm_features([("A", str(tiny_pair[0]))])
    with pytest.raises(UserError, match="distinct labels"):
        arm_features([("A", str(tiny_pair[0])), ("A", str(tiny_pair[1]))])
    with pytest.raises(TypeError, match="from arms"):
        arm_features([("A", str(tiny_pair[0])), ("B", str(tiny_pair[1]))], baseline_ckpt="x.pt")
