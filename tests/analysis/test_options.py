import pytest

from ddpm_lens.analysis.options import VisualizeOptions
from ddpm_lens.util.errors import UserError

BOTH = {"baseline_ckpt": ("a.pt",), "curriculum_ckpt": ("b.pt",)}


def test_a_timestep_given_twice_is_refused_naming_it():
    # it reached the CKA accumulator as two conditions of one name: "images must come in order"
    with pytest.raises(UserError, match=r"--timesteps lists 500 twice: give each timestep once"):
        VisualizeOptions(**BOTH, timesteps=(100, 500, 500)).resolved()
    assert VisualizeOptions(**BOTH, timesteps=(900, 100)).resolved().timesteps == (900, 100)


def test_a_negative_seed_is_refused():
    # numpy's SeedSequence raised "expected non-negative integer" once the models had loaded
    with pytest.raises(UserError, match=r"--seed must be 0 or more, got -1"):
        VisualizeOptions(**BOTH, seed=-1).resolved()
    assert VisualizeOptions(**BOTH, seed=0).resolved().seed == 0
