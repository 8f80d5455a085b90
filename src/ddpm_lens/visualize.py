"""Compare two models' activations on the same clean and noised inputs.

:func:`build_plan` loads both checkpoints and the inputs and checks the request (bad
input is reported before any output is written); :mod:`ddpm_lens.pipeline` streams the samples through
both models.

``compare_features`` is the in-memory API for notebooks::

    cmp = compare_features(baseline_ckpt="base.pt", curriculum_ckpt="cur.pt",
                           config_baseline="configs/celeba.json", config_curriculum="configs/celeba64_c.json",
                           num_samples=5, timesteps=(100, 500, 900))
    cmp.activations["curriculum"]["encoder_level_2"].shape   # (5, 4, 256, 16, 16): sample, condition
    cmp.rows[0]                                               # one statistics row

The CLI (``ddpm-lens visualize``) writes the figures and run files with
:mod:`ddpm_lens.outputs` from the same chunks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ddpm_lens.diffusion import GaussianDiffusion
from ddpm_lens.errors import UserError, warn
from ddpm_lens.features import resolve_layers
from ddpm_lens.pipeline import (
    MODEL_KEYS,
    Chunk,
    Condition,
    LoadedModel,
    PairAccumulators,
    Plan,
    Timings,
    iter_chunks,
    load_pair,
    make_conditions,
    match_chunk,
)
from ddpm_lens.unet import layer_channels


def check_request(
    models: Sequence[LoadedModel],
    *,
    timesteps: Sequence[int],
    layers: Sequence[str],
    num_channels: int,
    grid_size: int,
) -> list[str]:
    """Validate timesteps, layer names and channel counts against both models; resolved layer names."""
    if grid_size < 1:
        raise UserError(f"--grid_size must be at least 1, got {grid_size}")
    if num_channels < 1:
        raise UserError(f"--num_channels must be at least 1, got {num_channels}")
    if num_channels > grid_size**2:
        raise UserError(
            f"--num_channels {num_channels} does not fit a {grid_size}x{grid_size} grid "
            f"({grid_size**2} cells): lower it or raise --grid_size"
        )
    names = None
    for m in models:
        T = m.config.diffusion.timesteps
        bad = [t for t in timesteps if not 0 <= t < T]
        if bad:
            raise UserError(
                f"timestep {bad[0]} is outside [0, {T}) of the {m.label} model: "
                f"pass --timesteps between 0 and {T - 1}"
            )
        resolved = resolve_layers(m.structure, layers)
        names = resolved if names is None else [n for n in names if n in resolved]
    missing = [n for n in resolve_layers(models[0].structure, layers) if n not in names]
    if missing:
        raise UserError(f"layer {missing[0]} exists in only one of the two models; choose layers both have")
    return names


def compare_features(
    *,
    baseline_ckpt: str,
    curriculum_ckpt: str,
    config_baseline: str | None = None,
    config_curriculum: str | None = None,
    images: torch.Tensor | Sequence[str] | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    num_samples: int = 5,
    timesteps: Sequence[int] = (100, 500, 900),
    layers: Sequence[str] = ("seed",),
    num_channels: int = 64,
    grid_size: int = 8,
    seed: int = 0,
    use_ema: bool = True,
    clean: bool = True,
    noisy: bool = True,
    labels: Sequence[str] = ("Baseline", "Curriculum"),
    threshold: float = 1e-3,
    batch_size: int = 10,
    match_channels: bool = False,
    device: str = "cpu",
) -> Comparison:
    """Both models' activations and statistics on the same inputs, in memory.

    ``images`` ((N, 3, H, W) in [-1, 1], or image file paths, cropped and resized to the
    baseline config's resolution) overrides the dataset; otherwise the first
    ``num_samples`` images of ``split`` of ``dataset`` (default: the baseline config's).
    """
    plan = build_plan(
        baseline_ckpt=baseline_ckpt,
        curriculum_ckpt=curriculum_ckpt,
        config_baseline=config_baseline,
        config_curriculum=config_curriculum,
        images=images,
        dataset=dataset,
        data_dir=data_dir,
        split=split,
        num_samples=num_samples,
        stats_samples=None,
        timesteps=timesteps,
        layers=layers,
        num_channels=num_channels,
        grid_size=grid_size,
        seed=seed,
        use_ema=use_ema,
        clean=clean,
        noisy=noisy,
        labels=labels,
        threshold=threshold,
        batch_size=batch_size,
        device=device,
    )
    accs = PairAccumulators(plan, match=match_channels)
    chunks = []
    for chunk in iter_chunks(plan):
        accs.update(chunk)
        chunks.append(chunk)
    if match_channels:
        corr = accs.matcher()
        for chunk in chunks:
            match_chunk(chunk, corr, plan)
    return Comparison.from_chunks(plan, chunks, accs.cka_rows())


@dataclass
class Comparison:
    """What :func:`compare_features` returns; arrays are indexed [sample, condition, ...]."""

    labels: tuple[str, str]
    conditions: list[Condition]
    layers: list[str]
    images: torch.Tensor  # (N, 3, H, W) clean inputs in [-1, 1]
    inputs: torch.Tensor  # (N, S, 3, H, W) what both models received
    activations: dict[str, dict[str, np.ndarray]]  # key -> layer -> (N, S, C, H, W)
    shown: dict[str, dict[str, np.ndarray]]  # key -> layer -> (N, S, K) shown channel indices
    rows: list[dict]
    cka: list[dict]
    models: list[dict]

    @classmethod
    def from_chunks(cls, plan: Plan, chunks: list[Chunk], cka: list[dict]) -> Comparison:
        cat = np.concatenate
        return cls(
            labels=tuple(m.label for m in plan.models),
            conditions=plan.conditions,
            layers=plan.layers,
            images=torch.cat([c.x0 for c in chunks]),
            inputs=torch.cat([c.inputs for c in chunks]),
            activations={
                k: {l: cat([c.acts[k][l] for c in chunks]) for l in plan.layers} for k in MODEL_KEYS
            },
            shown={k: {l: cat([c.shown[k][l] for c in chunks]) for l in plan.layers} for k in MODEL_KEYS},
            rows=[r for c in chunks for r in c.rows],
            cka=cka,
            models=[m.describe() for m in plan.models],
        )


def build_plan(
    *,
    baseline_ckpt,
    curriculum_ckpt,
    config_baseline,
    config_curriculum,
    images,
    dataset,
    data_dir,
    split,
    num_samples,
    stats_samples,
    timesteps,
    layers,
    num_channels,
    grid_size,
    seed,
    use_ema,
    clean,
    noisy,
    labels,
    threshold,
    batch_size,
    device,
    digests=None,
) -> Plan:
    """Load the models and inputs and check the request.

    Every error is raised here, except a bad second checkpoint when its config is given: that
    file loads in the background (see :func:`ddpm_lens.pipeline.load_pair`) and its error is
    raised by the first forward pass that needs it, still before any output is written.
    """
    from ddpm_lens.devices import pick_device

    if num_samples < 1:
        raise UserError(f"--num_samples must be at least 1, got {num_samples}")
    stats_samples = max(stats_samples or num_samples, num_samples)
    if batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {batch_size}")
    if len(labels) != 2:
        raise UserError(f"--labels takes two names (baseline, curriculum), got {len(labels)}")
    dev = pick_device(device)
    timings = Timings()
    models = load_pair(
        ckpts=(baseline_ckpt, curriculum_ckpt),
        configs=(config_baseline, config_curriculum),
        labels=labels,
        use_ema=use_ema,
        device=dev,
        digests=digests,
        timings=timings,
    )
    names = check_request(
        models, timesteps=timesteps, layers=layers, num_channels=num_channels, grid_size=grid_size
    )
    narrow = sorted(
        {
            f"{layer} ({layer_channels(m.structure)[layer]})"
            for m in models
            for layer in names
            if layer_channels(m.structure)[layer] < num_channels
        }
    )
    if narrow:
        warn(f"{', '.join(narrow)} have fewer than {num_channels} channels; showing all of their channels")
    base_cfg = models[0].config
    if models[1].config.diffusion != base_cfg.diffusion:
        warn("the two configs' diffusion settings differ; both models get inputs noised with the baseline's")
    resolution = base_cfg.dataset.resolution
    tic = time.perf_counter()
    source = _image_source(
        images,
        dataset or base_cfg.dataset.name,
        data_dir or base_cfg.dataset.root,
        split,
        resolution,
        stats_samples,
    )
    plan = Plan(
        models=models,
        conditions=make_conditions(timesteps, clean=clean, noisy=noisy),
        layers=names,
        num_channels=num_channels,
        num_samples=num_samples,
        stats_samples=stats_samples,
        seed=seed,
        threshold=threshold,
        batch_size=batch_size,
        device=dev,
        diffusion=GaussianDiffusion.from_config(base_cfg.diffusion),
        images=source,
        timings=timings,
    )
    timings.add("load", time.perf_counter() - tic)  # the inputs; the loaders count their own time
    return plan


def _image_source(images, dataset, data_dir, split, resolution, needed):
    from ddpm_lens.data import build_dataset, load_images

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
            f"asked for {needed} samples but the {dataset if images is None else 'given'} images "
            f"({split if images is None else 'files'}) hold only {len(source)}: lower --num_samples"
        )
    return source
