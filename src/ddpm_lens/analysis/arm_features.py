"""``arm_features``: k >= 2 arms' activations and statistics on the same inputs, in memory.

The k-arm twin of :func:`~ddpm_lens.analysis.compare.compare_features`, one checkpoint per
arm: the same checks before any weights are copied (every file against its architecture,
the timesteps and layers against every model), the same inputs and noise, the same
statistics rows (``model`` is the arm's label), run through the visualizer's own stream
(:func:`~ddpm_lens.analysis.stream.iter_chunks`). It feeds the k-arm figure and table::

    arms = arm_features([("Baseline", "base.pt"), ("C", "c.pt"), ("CS", "cs.pt", "configs/celeba64_cs.json")],
                        num_samples=5, timesteps=(500,), layers=["encoder_level_2"])
    acts = [(label, arms.activations[label]["encoder_level_2"][:, 1]) for label in arms.labels]
    figures = arm_figures(acts, titles=[f"encoder_level_2 | noisy_t500 | Sample {i}" for i in range(5)])
    table = hypotheses_against_first(arms.rows, arms.labels)

Activations are kept for the ``num_samples`` figure inputs only; rows cover all
``stats_samples``. No CKA (the visualizer's pair measure) is computed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ddpm_lens.analysis.inputs import Condition, image_source, make_conditions
from ddpm_lens.analysis.model_pair import load_pair, open_pair
from ddpm_lens.analysis.options import visualize_options
from ddpm_lens.analysis.plan import Plan, check_request
from ddpm_lens.analysis.stream import iter_chunks
from ddpm_lens.analysis.timings import Timings
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.util.errors import UserError, warn

_PAIR_FIELDS = ("baseline_ckpt", "curriculum_ckpt", "config_baseline", "config_curriculum", "labels")


@dataclass
class ArmFeatures:
    """What :func:`arm_features` returns; arrays are indexed [sample, condition, ...]."""

    labels: list[str]  # the arms, the first is the reference
    conditions: list[Condition]
    layers: list[str]
    images: torch.Tensor  # (num_samples, 3, H, W) clean figure inputs in [-1, 1]
    activations: dict[str, dict[str, np.ndarray]]  # label -> layer -> (num_samples, S, C, H, W)
    rows: list[dict]  # one per sample x condition x layer x arm, over stats_samples
    models: list[dict]


def arm_features(arms: Sequence[Sequence[str | None]], /, **fields: Any) -> ArmFeatures:
    """Every arm's activations and statistics on the same inputs.

    ``arms``: (label, checkpoint) or (label, checkpoint, config) per arm, in order; the first
    is the reference the others are compared with. ``fields``: the visualizer's options
    (``num_samples``, ``stats_samples``, ``timesteps``, ``layers``, ``dataset``, ``seed``, ...;
    see :class:`~ddpm_lens.analysis.options.VisualizeOptions`) except the pair's own
    (checkpoints, configs, labels), which ``arms`` replaces. The inputs come from the first
    arm's config, as the visualizer takes them from the baseline's.
    """
    specs = [(str(a[0]), str(a[1]), a[2] if len(a) > 2 else None) for a in arms]
    labels = [label for label, _, _ in specs]
    if len(specs) < 2 or len(set(labels)) != len(labels):
        raise UserError(f"compare at least two arms with distinct labels, got {labels}")
    given = [name for name in _PAIR_FIELDS if name in fields]
    if given:
        raise TypeError(f"arm_features takes the checkpoints, configs and labels from arms, not {given}")
    fields.setdefault("device", "cpu")
    fields.setdefault("progress", False)
    opts = visualize_options(
        baseline_ckpt=specs[0][1], curriculum_ckpt=specs[1][1], labels=labels[:2], **fields
    ).resolved()
    from ddpm_lens.util.devices import pick_device

    device = pick_device(opts.device)
    models = []
    for label, ckpt, config in specs:
        (m,) = open_pair(
            ckpts=[[ckpt]],
            configs=[[config] if config else None],
            labels=[label],
            use_ema=opts.use_ema,
            device=device,
        )
        models.append(dataclasses.replace(m, key=label))
    layers = check_request(
        models,
        timesteps=opts.timesteps,
        layers=opts.layers,
        num_channels=opts.num_channels,
        grid_size=opts.grid_size,
    )
    reference = models[0].config
    if any(m.config.diffusion != reference.diffusion for m in models[1:]):
        warn(f"the configs' diffusion settings differ; every arm gets inputs noised with {labels[0]}'s")
    source = image_source(
        opts.images,
        opts.dataset or reference.dataset.name,
        opts.data_dir or reference.dataset.root,
        opts.split,
        reference.dataset.resolution,
        opts.stats_samples,
    )
    load_pair(models, device=device)
    plan = Plan(
        options=opts,
        models=models,
        conditions=make_conditions(opts.timesteps, clean=opts.clean, noisy=opts.noisy),
        layers=layers,
        device=device,
        diffusion=GaussianDiffusion.from_config(reference.diffusion),
        images=source,
    )
    rows, images = [], []
    kept: dict[str, dict[str, list[np.ndarray]]] = {
        label: {layer: [] for layer in layers} for label in labels
    }
    with threadpool_limits(limits=1, user_api="blas"), closing(iter_chunks(plan, Timings())) as chunks:
        for chunk in chunks:  # as run_stream: the models' threads fill the cores, BLAS gets one
            rows += chunk.rows
            figures = max(0, opts.num_samples - chunk.first)  # figure inputs in this chunk
            if figures:
                images.append(chunk.x0[:figures])
                for m in models:
                    for layer in layers:
                        kept[m.key][layer].append(chunk.layers[m.id][layer].acts[:figures].copy())
    return ArmFeatures(
        labels=labels,
        conditions=plan.conditions,
        layers=layers,
        images=torch.cat(images),
        activations={
            k: {layer: np.concatenate(parts) for layer, parts in v.items()} for k, v in kept.items()
        },
        rows=rows,
        models=[m.describe() for m in models],
    )
