"""Everything a visualizer run fixes before its first forward pass, checked up front.

:func:`build_plan` turns :class:`~ddpm_lens.analysis.options.VisualizeOptions` into a
:class:`Plan`: both files, configs and architectures, the request (timesteps, layers,
channel counts) checked against both models, the input images found, and only then the
weights copied into the models. Every error the user can fix is raised here, before any
output exists and before any heavy work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ddpm_lens.analysis.arms import check_arm
from ddpm_lens.analysis.inputs import Condition, image_source, make_conditions
from ddpm_lens.analysis.model_pair import MODEL_KEYS, LoadedModel, load_pair, open_pair
from ddpm_lens.analysis.options import VisualizeOptions
from ddpm_lens.analysis.prefetch import Prefetch
from ddpm_lens.analysis.timings import Timings
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.core.features import resolve_layers
from ddpm_lens.core.unet import layer_channels
from ddpm_lens.util.errors import UserError, warn


@dataclass
class Plan:
    options: VisualizeOptions  # resolved: num_samples and stats_samples are set
    models: list[LoadedModel]  # the pair (baseline 0, curriculum 0) first, then other checkpoints
    conditions: list[Condition]
    layers: list[str]  # resolved layer names both models have
    device: torch.device
    diffusion: GaussianDiffusion  # makes the noisy inputs (the baseline's schedule)
    images: object  # Tensor (N, 3, H, W) or a Dataset yielding (3, H, W)

    @property
    def samples_per_chunk(self) -> int:
        return max(1, self.options.batch_size // len(self.conditions))

    @property
    def pair(self) -> list[LoadedModel]:
        """The first checkpoint of each arm: what the figures draw."""
        return self.models[:2]


def check_request(
    models: Sequence[LoadedModel],
    *,
    timesteps: Sequence[int],
    layers: Sequence[str],
    num_channels: int,
    grid_size: int,
) -> list[str]:
    """Validate timesteps, layer names and channel counts against both models; resolved layer names.

    With a CS model (a bottleneck channel mask) in the comparison, the ``seed`` preset also taps
    ``bottleneck_masked``, the bottleneck after the mask, which is what the decoder receives:
    ``bottleneck`` alone would show channels the model switches off."""
    if grid_size < 1:
        raise UserError(f"--grid_size must be at least 1, got {grid_size}")
    if num_channels < 1:
        raise UserError(f"--num_channels must be at least 1, got {num_channels}")
    if num_channels > grid_size**2:
        raise UserError(
            f"--num_channels {num_channels} does not fit a {grid_size}x{grid_size} grid "
            f"({grid_size**2} cells): lower it or raise --grid_size"
        )
    if "seed" in layers and any(m.structure.channel_mask_or_none() is not None for m in models):
        layers = [*layers, "bottleneck_masked"]
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


def build_plan(
    options: VisualizeOptions, *, prefetch: Prefetch | None = None, timings: Timings | None = None
) -> Plan:
    """Check ``options`` against both models and the data, then load the weights."""
    from ddpm_lens.util.devices import pick_device

    opts = options.resolved()
    timings = timings or Timings()
    device = pick_device(opts.device)
    conditions = make_conditions(opts.timesteps, clean=opts.clean, noisy=opts.noisy)
    models = open_pair(
        ckpts=(opts.baseline_ckpt, opts.curriculum_ckpt),
        configs=(opts.config_baseline, opts.config_curriculum),
        labels=opts.labels,
        use_ema=opts.use_ema,
        allow_nonfinite=opts.allow_nonfinite,
        device=device,
        prefetch=prefetch,
        timings=timings,
    )
    for key in MODEL_KEYS:
        check_arm([m for m in models if m.key == key], f"--{key}_ckpt")
    names = check_request(
        models,
        timesteps=opts.timesteps,
        layers=opts.layers,
        num_channels=opts.num_channels,
        grid_size=opts.grid_size,
    )
    _warn_narrow(models, names, opts.num_channels)
    base_cfg = models[0].config
    if any(m.config.diffusion != base_cfg.diffusion for m in models[1:]):
        warn("the configs' diffusion settings differ; every model gets inputs noised with the baseline's")
    tic = time.perf_counter()
    dataset, data_dir = opts.dataset or base_cfg.dataset.name, opts.data_dir or base_cfg.dataset.root
    if opts.images is None and dataset == "folder" and data_dir is not None:
        _check_output_outside(opts.output_dir, data_dir)
    source = image_source(
        opts.images,
        dataset,
        data_dir,
        opts.split,
        base_cfg.dataset.resolution,
        opts.stats_samples,
        flag="--stats_samples" if opts.stats_samples > opts.num_samples else "--num_samples",
    )
    timings.add("load", time.perf_counter() - tic)  # the inputs; the loaders count their own time
    load_pair(models, device=device, prefetch=prefetch, timings=timings)
    return Plan(
        options=opts,
        models=models,
        conditions=conditions,
        layers=names,
        device=device,
        diffusion=GaussianDiffusion.from_config(base_cfg.diffusion),
        images=source,
    )


def _warn_narrow(models: Sequence[LoadedModel], names: Sequence[str], num_channels: int) -> None:
    narrow = sorted(
        {
            f"{layer} ({layer_channels(m.structure)[layer]})"
            for m in models
            for layer in names
            # a module path (--layers mid_block.attn) has no known width before the forward pass
            if layer_channels(m.structure).get(layer, num_channels) < num_channels
        }
    )
    if narrow:
        warn(f"{', '.join(narrow)} have fewer than {num_channels} channels; showing all of their channels")


def _check_output_outside(output_dir, data_dir) -> None:
    """The folder dataset reads every image under ``data_dir``: an output folder inside it would
    feed a run's figures to the next run as inputs."""
    out, data = Path(output_dir).resolve(), Path(data_dir).expanduser().resolve()
    if out.is_relative_to(data):
        raise UserError(
            f"--output_dir {output_dir} is inside --data_dir {data_dir}, whose images --dataset folder "
            "reads recursively (a second run would read this run's figures as inputs): "
            "pass an --output_dir outside it"
        )
