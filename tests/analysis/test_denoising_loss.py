import numpy as np
import pytest
import torch

from ddpm_lens.analysis.denoising_loss import loss_table, per_image_losses
from ddpm_lens.analysis.inputs import noise_for, timestep_grid
from ddpm_lens.analysis.options import visualize_options
from ddpm_lens.analysis.plan import build_plan


def test_timesteps_spread_over_the_whole_range():
    ts = timestep_grid(1000, 20)
    assert len(ts) == 20 and ts[0] == 0 and ts[-1] == 999 and ts == sorted(set(ts))
    assert timestep_grid(10, 20) == list(range(10))  # no repeats on a short schedule
    assert timestep_grid(1000, 1) == [0]
    with pytest.raises(ValueError):
        timestep_grid(1000, 0)


@pytest.fixture(scope="module")
def tiny_plan(tiny_pair):
    opts = visualize_options(
        baseline_ckpt=str(tiny_pair[0]),
        curriculum_ckpt=str(tiny_pair[1]),
        num_samples=3,
        device="cpu",
        prefetch=False,
        progress=False,
        batch_size=4,
    )
    return build_plan(opts)


def test_loss_at_one_t_equals_a_hand_computation(tiny_plan, one_thread):
    t = 300
    losses = per_image_losses(tiny_plan, [t, 700])
    ab = tiny_plan.diffusion.alphas_cumprod[t].float()
    for m in tiny_plan.models:
        hand = []
        for i in range(3):
            x0 = tiny_plan.images[i][None].float()
            noise = noise_for(0, i, t, tuple(x0.shape[1:]))[None]  # the same noise for both models
            x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
            with torch.no_grad():
                eps = m.model(x_t, torch.tensor([t]))
            hand.append(float(((eps - noise) ** 2).mean()))
        np.testing.assert_allclose(losses[m.id][:, 0], hand, rtol=1e-5)
    rows = loss_table(losses, [t, 700], arms={"baseline": ["baseline"], "curriculum": ["curriculum"]})
    assert [r["t"] for r in rows] == [t, 700] and rows[0]["unit"] == "image" and rows[0]["n"] == 3
    assert rows[0]["a_loss"] == pytest.approx(losses["baseline"][:, 0].mean())
    assert rows[0]["diff_mean"] == pytest.approx(
        (losses["curriculum"][:, 0] - losses["baseline"][:, 0]).mean()
    )
    assert rows[0]["a_ci_low"] < rows[0]["a_loss"] < rows[0]["a_ci_high"]
    assert rows[1]["a_loss"] != rows[0]["a_loss"]


def test_p_values_are_holm_adjusted_across_the_timesteps():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(12, 3))
    b = a + np.array([1.0, 0.0, 0.0]) + 0.01 * rng.standard_normal((12, 3))  # only t=0 differs
    rows = loss_table(
        {"baseline": a, "curriculum": b},
        [0, 5, 9],
        arms={"baseline": ["baseline"], "curriculum": ["curriculum"]},
    )
    p = [r["p_value"] for r in rows]
    order = np.argsort(p)
    expected = np.maximum.accumulate([min(1.0, (3 - k) * p[i]) for k, i in enumerate(order)])
    assert [rows[i]["p_adjusted"] for i in order] == pytest.approx(list(expected))
    assert rows[0]["p_adjusted"] < 0.05 and all(r["p_adjusted"] >= r["p_value"] for r in rows)


def test_identical_models_and_checkpoint_units():
    rng = np.random.default_rng(0)
    same = rng.uniform(size=(6, 2))
    (row, _) = loss_table(
        {"baseline": same, "curriculum": same},
        [0, 9],
        arms={"baseline": ["baseline"], "curriculum": ["curriculum"]},
    )
    assert (row["diff_mean"], row["p_value"]) == (0.0, 1.0)
    losses = {f"{k}{s}": rng.uniform(size=(4, 1)) + (0.5 if k == "c" else 0.0) for k in "bc" for s in "012"}
    (row,) = loss_table(losses, [5], arms={"baseline": ["b0", "b1", "b2"], "curriculum": ["c0", "c1", "c2"]})
    assert (row["unit"], row["n"]) == ("checkpoint", 6)
    b_means = [losses[f"b{s}"].mean() for s in "012"]
    assert row["a_loss"] == pytest.approx(np.mean(b_means))
