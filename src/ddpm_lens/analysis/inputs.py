"""What both models are fed: conditions (clean, noisy at t), seeded noise, the image source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.util.errors import UserError


@dataclass(frozen=True)
class Condition:
    name: str  # clean_t0 | noisy_t<T>
    t: int  # timestep the model is told; 0 for the clean image
    noisy: bool


def make_conditions(timesteps: Sequence[int], *, clean: bool = True, noisy: bool = True) -> list[Condition]:
    out = [Condition("clean_t0", 0, False)] if clean else []
    if noisy:
        out += [Condition(f"noisy_t{t}", int(t), True) for t in timesteps]
    if not out:
        raise UserError("nothing to compare: --no_clean and --no_noisy together leave no condition; drop one")
    return out


def noise_for(
    seed: int, sample: int, t: int, shape: tuple[int, ...], *, stream: int | None = None
) -> torch.Tensor:
    """The noise of sample ``sample`` at timestep ``t``: fixed by (seed, sample, t) alone.

    ``stream`` picks an independent set of draws for the same (seed, sample, t): None is the
    visualizer's inputs (and its denoising loss), ``HELD_OUT_STREAM`` the held-out loss of
    ``ddpm-lens evaluate``."""
    entropy = [seed, sample, t] if stream is None else [seed, sample, t, stream]
    key = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randn(shape, generator=torch.Generator().manual_seed(key))


HELD_OUT_STREAM = 1


def timestep_grid(num_timesteps: int, count: int) -> list[int]:
    """``count`` timesteps spread evenly over [0, T): both ends included, rounded, distinct."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    return sorted({int(t) for t in np.linspace(0, num_timesteps - 1, count).round()})


def make_inputs(
    x0: torch.Tensor,
    first_sample: int,
    conditions: Sequence[Condition],
    diffusion: GaussianDiffusion,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (n*S, 3, H, W) ordered sample-major, condition-minor, and their timesteps (n*S,)."""
    xs, ts = [], []
    for i, img in enumerate(x0):
        for cond in conditions:
            if cond.noisy:
                noise = noise_for(seed, first_sample + i, cond.t, tuple(img.shape))
                img_t = diffusion.q_sample(img[None], torch.tensor([cond.t]), noise[None])[0]
            else:
                img_t = img
            xs.append(img_t)
            ts.append(cond.t)
    return torch.stack(xs), torch.tensor(ts, dtype=torch.long)


def clean_references(x0: torch.Tensor, conditions: Sequence[Condition]) -> tuple[torch.Tensor, torch.Tensor]:
    """What noise robustness compares each noisy input with: the clean image, told the same
    timestep t as that noisy input. Inputs (n*k, 3, H, W) sample-major over the k noisy
    conditions, and their timesteps; empty (k = 0) without a clean condition or a noisy one.

    Comparing a noisy input at t with the clean input at t = 0 would mix two changes, the noise
    and the timestep embedding (the clean input at t vs at t = 0 alone gives r 0.65 at the
    bottleneck); with the clean image at the same t, only the noise differs."""
    noisy = [c for c in conditions if c.noisy]
    if not noisy or all(c.noisy for c in conditions):
        return x0[:0], torch.zeros(0, dtype=torch.long)
    x = x0.repeat_interleave(len(noisy), dim=0)
    t = torch.tensor([c.t for c in noisy], dtype=torch.long).repeat(len(x0))
    return x, t


def image_source(
    images, dataset: str, data_dir, split: str, resolution: int, needed: int, *, flag: str = "--num_samples"
):
    """The clean images: ``images`` (a tensor (N, 3, H, W) in [-1, 1] or file paths) or the
    ``split`` of ``dataset``; indexable, each item (3, H, W). Checks that ``needed`` exist
    (``flag``: the option that asked for them)."""
    from ddpm_lens.data.datasets import build_dataset, load_images

    if images is not None and not torch.is_tensor(images):
        images = load_images(images, resolution)  # file paths
    if images is not None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise UserError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        source = images
    else:
        source = build_dataset(dataset, root=data_dir, split=split, resolution=resolution)
    if len(source) < needed:
        raise UserError(
            f"asked for {needed} samples ({flag} {needed}) but the {dataset if images is None else 'given'} "
            f"images ({split if images is None else 'files'}) hold only {len(source)}: lower {flag}"
        )
    return source
