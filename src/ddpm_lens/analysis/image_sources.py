"""The two sides of a sample-quality comparison: a folder, a checkpoint's samples, or a dataset.

A source spec is one of

- a folder of images (``samples/``): its images in sorted path order, recursively, centre-cropped
  to squares (and resized to the first image's size where sizes differ);
- a checkpoint file (``.pt``, ``.pth``, ``.safetensors``; any format ddpm-lens loads): images
  sampled with DDIM (eta 0, ``steps`` steps), image ``i`` from the noise fixed by ``(seed, i)``, so
  neither the batch size nor the number of processes changes any image;
- ``dataset:NAME[:SPLIT]`` (``dataset:celeba:test`` with ``data_dir``, ``dataset:synthetic-faces``):
  the first images of the split (default ``test``), prepared as for training at ``resolution``.

Every source hands out images by index, (B, 3, R, R) float32 in [-1, 1]::

    source = open_source("dataset:synthetic-faces:test", num=200, resolution=32)
    x = source.images(range(0, 50))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ddpm_lens.util.errors import UserError, warn

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors", ".ckpt")
DATASET_PREFIX = "dataset:"
DEFAULT_SPLIT = "test"
DEFAULT_STEPS = 50


@dataclass
class ImageSource:
    spec: str
    kind: str  # folder | checkpoint | dataset
    n: int
    resolution: int
    read: Callable[[Sequence[int]], torch.Tensor] = field(repr=False)
    description: dict = field(default_factory=dict)
    cache_key: dict | None = None  # datasets: what their reference statistics are cached under

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """Images ``indices`` of this source: (len(indices), 3, R, R) in [-1, 1]."""
        return self.read(list(indices))


def source_kind(spec: str) -> str:
    """``folder``, ``checkpoint`` or ``dataset`` for a spec; UserError when it is none of them."""
    if spec.startswith(DATASET_PREFIX):
        return "dataset"
    path = Path(spec).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    what = "does not exist" if not path.exists() else "is neither a folder nor a checkpoint file"
    raise UserError(
        f"image source {spec!r} {what}: give a folder of images, a checkpoint "
        f"({', '.join(CHECKPOINT_SUFFIXES)}) or dataset:NAME[:SPLIT] (e.g. dataset:celeba:test)"
    )


def open_source(
    spec: str,
    *,
    num: int,
    resolution: int | None = None,
    data_dir: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    use_ema: bool = True,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ImageSource:
    """The source ``spec`` giving ``num`` images (fewer, with a warning, for a smaller folder or split).

    ``resolution`` is needed for datasets; a folder is resized to it when given. ``config``,
    ``use_ema``, ``steps``, ``seed`` and ``device`` are for checkpoints; ``data_dir`` for datasets.
    """
    if num < 1:
        raise UserError(f"--num must be at least 1, got {num}")
    kind = source_kind(spec)
    if kind == "dataset":
        return _dataset_source(spec, num=num, resolution=resolution, data_dir=data_dir)
    if kind == "folder":
        return _folder_source(spec, num=num, resolution=resolution)
    return _checkpoint_source(
        spec, num=num, config=config, use_ema=use_ema, steps=steps, seed=seed, device=device
    )


def parse_dataset_spec(spec: str) -> tuple[str, str]:
    """``dataset:NAME[:SPLIT]`` -> (NAME, SPLIT)."""
    parts = spec[len(DATASET_PREFIX) :].split(":")
    if not parts[0] or len(parts) > 2:
        raise UserError(f"bad dataset source {spec!r}: write dataset:NAME or dataset:NAME:SPLIT")
    return parts[0], parts[1] if len(parts) == 2 and parts[1] else DEFAULT_SPLIT


def _dataset_source(spec, *, num, resolution, data_dir) -> ImageSource:
    from ddpm_lens.data.datasets import build_dataset

    name, split = parse_dataset_spec(spec)
    if resolution is None:
        raise UserError(f"{spec} needs a resolution: pass --resolution")
    root = None if data_dir is None else str(Path(data_dir).expanduser().resolve())
    dataset = build_dataset(name, root=root, split=split, resolution=resolution)
    n = _available(spec, num, len(dataset))
    key = {"dataset": name, "split": split, "resolution": resolution, "n": n}
    if name != "synthetic-faces":
        key["root"] = root  # another folder holds other images
    return ImageSource(
        spec,
        "dataset",
        n,
        resolution,
        read=lambda idx: torch.stack([dataset[i] for i in idx]),
        description={"kind": "dataset", **key},
        cache_key=key,
    )


def _folder_source(spec, *, num, resolution) -> ImageSource:
    import functools

    from ddpm_lens.data.datasets import ImageFiles, build_dataset, center_crop_resize, open_rgb

    paths = build_dataset("folder", root=spec, resolution=1).paths  # sorted, readable images
    size = resolution or min(open_rgb(paths[0]).size)
    # centre-cropped squares; PIL leaves an image of the target size as it is
    dataset = ImageFiles(paths, prepare=functools.partial(center_crop_resize, resolution=size))
    n = _available(spec, num, len(dataset))
    return ImageSource(
        spec,
        "folder",
        n,
        size,
        read=lambda idx: torch.stack([dataset[i] for i in idx]),
        description={"kind": "folder", "path": str(Path(spec).resolve()), "n": n, "resolution": size},
    )


def _checkpoint_source(spec, *, num, config, use_ema, steps, seed, device) -> ImageSource:
    from ddpm_lens.analysis.model_pair import layout
    from ddpm_lens.core.checkpoint import load_checkpoint
    from ddpm_lens.core.diffusion import GaussianDiffusion

    device = torch.device(device)
    model, weights, cfg = load_checkpoint(
        config, spec, use_ema=use_ema, device=device, memory_format=layout(device)
    )
    diffusion = GaussianDiffusion.from_config(cfg.diffusion).to(device)
    source = sampled_source(model, diffusion, cfg, num=num, steps=steps, seed=seed, device=device, spec=spec)
    source.description.update(weights=weights.which, epoch=weights.epoch)
    return source


def sampled_source(
    model, diffusion, cfg, *, num: int, steps: int, seed: int, device, spec: str
) -> ImageSource:
    """A loaded model's DDIM samples (eta 0): image ``i`` starts from :func:`sample_noise` (seed, i).

    Inputs go in the memory layout of ``model_pair.layout`` (NHWC on the CPU), as the model's weights should.
    """
    from ddpm_lens.analysis.model_pair import layout

    if not 1 <= steps <= cfg.diffusion.timesteps:
        raise UserError(f"--steps must be in 1..{cfg.diffusion.timesteps}, got {steps}")
    res, channels = cfg.dataset.resolution, cfg.model.in_channels

    def read(idx: list[int]) -> torch.Tensor:
        noise = torch.stack([sample_noise(seed, i, (channels, res, res)) for i in idx]).to(device)
        noise = noise.contiguous(memory_format=layout(torch.device(device)))
        x = diffusion.sample(
            model, tuple(noise.shape), sampler="ddim", steps=steps, noise=noise, device=device
        )
        return x.cpu()

    description = {
        "kind": "checkpoint",
        "path": str(Path(spec).resolve()),
        "sampler": f"DDIM, {steps} steps, eta 0, uniform spacing",
        "seed": seed,
        "n": num,
        "resolution": res,
    }
    return ImageSource(spec, "checkpoint", num, res, read=read, description=description)


def sample_noise(seed: int, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """x_T of sample ``index``: fixed by (seed, index) alone."""
    key = int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randn(shape, generator=torch.Generator().manual_seed(key))


def _available(spec: str, num: int, size: int) -> int:
    if size < num:
        warn(f"{spec} holds {size} images, fewer than --num {num}: using all {size}")
    return min(num, size)
