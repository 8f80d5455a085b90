import numpy as np
import pytest
import torch

from ddpm_lens.analysis.inputs import HELD_OUT_STREAM, noise_for, timestep_grid
from ddpm_lens.analysis.training_evaluation import LOSS_POINTS, held_out_loss
from ddpm_lens.core.config import DiffusionConfig
from ddpm_lens.core.diffusion import GaussianDiffusion

pytestmark = pytest.mark.usefixtures("one_thread")  # sampling: 2 threads stall each other here


def test_the_default_loss_grid_spans_both_ends():
    assert timestep_grid(1000, LOSS_POINTS) == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert timestep_grid(4, LOSS_POINTS) == [0, 1, 2, 3]


def test_held_out_loss_is_the_training_loss_on_fixed_noise_whatever_the_batching(tiny_model):
    diffusion = GaussianDiffusion.from_config(DiffusionConfig())
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    by_one = held_out_loss(tiny_model, diffusion, images, [10, 900], seed=3, batch_size=1)
    by_all = held_out_loss(tiny_model, diffusion, images, [10, 900], seed=3, batch_size=5)
    assert by_one == pytest.approx(by_all, rel=1e-5)
    noise = torch.stack([noise_for(3, i, 900, (3, 32, 32), stream=HELD_OUT_STREAM) for i in range(5)])
    direct = diffusion.train_losses(tiny_model, images, torch.full((5,), 900), noise).mean().item()
    assert by_all[900] == pytest.approx(direct, rel=1e-5)
    assert by_all[10] != pytest.approx(by_all[900], rel=0.01)  # noise level matters
    other = held_out_loss(tiny_model, diffusion, images, [900], seed=4, batch_size=5)
    assert other[900] != by_all[900] and np.isfinite(other[900])


def test_loss_timesteps_is_a_count_of_timesteps_in_every_command():
    """`evaluate --loss_timesteps 100 500 900` used to mean three timesteps, while in `visualize`
    and `demo` `--loss_timesteps N` is the number of timesteps spread over [0, T)."""
    import pytest

    from ddpm_lens.cli import build_parser

    parser = build_parser()
    ev = parser.parse_args(
        ["evaluate", "run/", "--reference", "dataset:synthetic-faces", "--loss_timesteps", "7"]
    )
    vis = parser.parse_args(
        ["visualize", "--baseline_ckpt", "a", "--curriculum_ckpt", "b", "--loss_timesteps", "7"]
    )
    assert ev.loss_timesteps == 7 and vis.loss_timesteps == 7
    assert parser.parse_args(["evaluate", "run/", "--reference", "x"]).loss_timesteps == LOSS_POINTS
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "run/", "--reference", "x", "--loss_timesteps", "100", "500"])
    from ddpm_lens.analysis.training_evaluation import evaluate_runs
    from ddpm_lens.util.errors import UserError

    with pytest.raises(UserError, match="--loss_timesteps must be at least 1"):
        evaluate_runs([], reference="x", num=1, network=None, loss_timesteps=0)
