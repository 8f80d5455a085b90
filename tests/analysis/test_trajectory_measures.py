"""The per-checkpoint measures on constructed data where the answer is known: the gap of a model
evaluated with its held-out set as "train" is 0; a model overfit on 64 images has a gap > 0 at
low t (CI excluding 0), the same model trained on many images a much smaller one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddpm_lens.analysis.trajectory_measures import (
    CheckpointContext,
    TrajectoryOptions,
    denoising_gap,
    layer_statistics,
)
from ddpm_lens.core.config import DiffusionConfig, ModelConfig
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.core.features import extract_features
from ddpm_lens.core.unet import build_unet
from ddpm_lens.data.datasets import build_dataset

pytestmark = pytest.mark.usefixtures("one_thread")  # 2 threads stall each other on a busy 2-core machine

SMALL = ModelConfig(hid_channels=32, ch_multipliers=(1,), num_res_blocks=1, apply_attn=(False,))


def faces(split: str, n: int, *, size: int = 8) -> torch.Tensor:
    """The first n synthetic faces of ``split``, drawn at 16 px and averaged down to ``size``."""
    ds = build_dataset("synthetic-faces", split=split, resolution=16)
    return F.avg_pool2d(torch.stack([ds[i] for i in range(n)]), 16 // size)


def context(model, train, held, **options) -> CheckpointContext:
    return CheckpointContext(
        model=model,
        diffusion=GaussianDiffusion.from_config(DiffusionConfig()),
        config=None,
        train_images=train,
        held_out_images=held,
        stats_images=held[:5],
        options=TrajectoryOptions(**options),
    )


def by(rows, measure):
    return {r["t"]: r for r in rows if r["measure"] == measure}


def test_gap_is_zero_when_the_held_out_set_is_used_as_train(tiny_model):
    held = faces("test", 6, size=16)
    ctx = context(tiny_model, held, held, loss_timesteps=(0, 10, 300), low_t=10, loss_num=6)
    rows = denoising_gap(ctx)
    gaps = by(rows, "gap")
    assert set(gaps) == {0, 10, 300}
    for r in [*gaps.values(), by(rows, "gap_low_t")[10]]:
        assert (r["value"], r["ci_low"], r["ci_high"], r["n"]) == (0.0, 0.0, 0.0, 6)
    losses = by(rows, "loss_train")
    assert all(r["value"] > 0 for r in losses.values())  # the losses themselves are not 0
    assert losses[0]["value"] != losses[300]["value"]  # and depend on t (the model is perturbed)


def test_the_same_noise_per_image_and_t_in_both_sets(tiny_model):
    """Image i of either set gets the same noise: swapping the sets negates every gap exactly."""
    a, b = faces("train", 4, size=16), faces("test", 4, size=16)
    rows_ab = by(denoising_gap(context(tiny_model, a, b, loss_timesteps=(5, 50), low_t=5)), "gap")
    rows_ba = by(denoising_gap(context(tiny_model, b, a, loss_timesteps=(5, 50), low_t=5)), "gap")
    for t in (5, 50):
        assert rows_ab[t]["value"] == pytest.approx(-rows_ba[t]["value"], rel=1e-12)
        assert rows_ab[t]["value"] != 0


def _trained(images: torch.Tensor, steps: int = 100) -> torch.nn.Module:
    """The small UNet after ``steps`` Adam steps at batch 64 on ``images``."""
    torch.manual_seed(0)
    model = build_unet(SMALL)
    diffusion = GaussianDiffusion.from_config(DiffusionConfig())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(images), (64,), generator=g)
        t = torch.randint(0, 1000, (64,), generator=g)
        loss = diffusion.train_losses(model, images[idx], t, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.slow
def test_overfit_on_64_images_opens_a_gap_at_low_t_that_many_images_close():
    """8 px faces, 100 Adam steps at batch 64: on 64 images the gap at low t is > 0 with its
    interval excluding 0; trained the same way on 2,048 images it is under half of that."""
    held = faces("test", 64)
    options = dict(loss_timesteps=(0, 10, 50, 100, 700), low_t=100, loss_num=64)
    few = faces("train", 64)
    few_rows = denoising_gap(context(_trained(few), few, held, **options))
    many = faces("train", 2048)
    many_rows = denoising_gap(context(_trained(many), many[:64], held, **options))
    small, large = by(few_rows, "gap_low_t")[100], by(many_rows, "gap_low_t")[100]
    assert small["ci_low"] > 0, small
    assert large["value"] < 0.5 * small["value"], (large, small)
    assert (
        abs(by(few_rows, "gap")[700]["value"]) < 0.1 * small["value"]
    )  # at high t there is nothing to memorize


def test_layer_statistics_read_the_tapped_activations(tiny_model):
    held = faces("test", 5, size=16)
    ctx = context(tiny_model, held, held, stats_timesteps=(100,), layers=("in_conv", "bottleneck"))
    rows = layer_statistics(ctx)
    measures = {(r["measure"], r["layer"], r["t"]) for r in rows}
    assert ("noise_robustness", "in_conv", 100) in measures and (
        "noise_robustness",
        "in_conv",
        0,
    ) not in measures
    assert all(np.isfinite(r["value"]) and r["n"] == 5 for r in rows)
    acts = extract_features(tiny_model, held, 0, ["in_conv"])["in_conv"].numpy()
    sigma = next(r for r in rows if (r["measure"], r["layer"], r["t"]) == ("sigma", "in_conv", 0))
    assert sigma["value"] == pytest.approx(acts.reshape(5, -1).std(axis=1).mean(), rel=1e-5)


@pytest.mark.slow
def test_channel_purity_reads_the_statistics_images_and_their_factors(tiny_model):
    from ddpm_lens.analysis.channel_purity import channel_purity, channel_responses
    from ddpm_lens.analysis.trajectory_measures import channel_purity_rows
    from ddpm_lens.data.factors import dataset_factors

    held = faces("test", 32, size=16)
    ctx = context(tiny_model, held, held, stats_timesteps=(100,), layers=("in_conv",))
    ctx.stats_images = held
    ctx.stats_factors = dataset_factors("synthetic-faces", count=32, split="test")
    rows = channel_purity_rows(ctx)
    assert {(r["measure"], r["t"]) for r in rows} == {
        (m, t) for m in ("purity", "purity_excess") for t in (0, 100)
    }
    acts = ctx.activations()[("noisy_t100", "in_conv")]
    direct = channel_purity(channel_responses(acts), *ctx.stats_factors)["layer"]
    got = next(r for r in rows if (r["measure"], r["t"]) == ("purity_excess", 100))
    assert (got["value"], got["ci_low"], got["n"]) == (direct["mean_excess"], direct["excess_low"], 32)
    ctx.stats_factors = None  # no labels: no rows
    assert channel_purity_rows(ctx) == []
