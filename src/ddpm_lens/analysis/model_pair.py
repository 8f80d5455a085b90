"""The models of a comparison: configs and architectures first, then their weights.

Two arms, baseline and curriculum, each of one or more checkpoints (training runs of one
recipe). The first of each arm is *the pair* the figures draw; :func:`arm_models` orders
them baseline 0, curriculum 0, then the other baseline and curriculum checkpoints.
:func:`open_pair` reads every config, builds every architecture on the meta device and looks
at every file, so a bad config, layer name or file is reported before any weights load.
:func:`load_pair` then loads the weights (memory-mapped, weights only); with a
:class:`~ddpm_lens.analysis.prefetch.Prefetch` all but the first load in the background.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from ddpm_lens.analysis.prefetch import Prefetch, done, foreground_digest
from ddpm_lens.analysis.timings import Timings
from ddpm_lens.core.checkpoint import Weights, load_checkpoint, looks_loadable
from ddpm_lens.core.config import Config, load_config
from ddpm_lens.core.unet import UNet, build_unet

MODEL_KEYS = ("baseline", "curriculum")  # row names and file names, whatever the panel labels say


@dataclass
class LoadedModel:
    key: str  # baseline | curriculum: its arm, the rows' "model"
    label: str  # panel heading
    ckpt: str
    config_path: str | None
    config: Config
    structure: UNet  # the architecture, possibly on the meta device: what request checks read
    loaded: Future | None  # -> (UNet with weights, Weights); None until load_pair
    digest: Future  # the checkpoint file's SHA-256
    index: int = 0  # which checkpoint of its arm: the rows' "checkpoint"; 0 draws the figures

    @property
    def id(self) -> str:
        """Unique in a run: the arm for its first checkpoint ("baseline"), else "baseline_1", ..."""
        return self.key if self.index == 0 else f"{self.key}_{self.index}"

    @property
    def model(self) -> UNet:
        """The model with its weights (waits for a background load; re-raises its error)."""
        return self.loaded.result()[0]

    @property
    def weights(self) -> Weights:
        return self.loaded.result()[1]

    @property
    def sha256(self) -> str:
        return self.digest.result()

    def describe(self) -> dict:
        return {
            "key": self.key,
            "index": self.index,
            "label": self.label,
            "checkpoint": self.weights.path,
            "sha256": self.sha256,
            "config": self.config.source,
            "epoch": self.weights.epoch,
            "weights": self.weights.description,
        }


def arm_models(
    ckpts: Sequence[Sequence[str]], configs: Sequence[Sequence[str] | None], labels: Sequence[str]
) -> list[tuple[str, int, str, str, str | None]]:
    """(key, index, label, checkpoint, config) of every model, the pair first: ``ckpts`` and
    ``configs`` hold one sequence per arm (configs: one per checkpoint, or None)."""
    specs = []
    for key, label, arm, arm_configs in zip(MODEL_KEYS, labels, ckpts, configs):
        for i, ckpt in enumerate(arm):
            name = label if i == 0 else f"{label} {i + 1}"
            specs.append((key, i, name, ckpt, arm_configs[i] if arm_configs else None))
    return sorted(specs, key=lambda s: (s[1] > 0, s[1] > 0 and s[0] != MODEL_KEYS[0], s[1]))


def open_pair(
    *,
    ckpts: Sequence[Sequence[str]],
    configs: Sequence[Sequence[str] | None],
    labels: Sequence[str],
    use_ema: bool,
    device: torch.device,
    prefetch: Prefetch | None = None,
    timings: Timings | None = None,
) -> list[LoadedModel]:
    """Every model's config and architecture (:func:`arm_models`' order). A file that carries
    its config (no config path given) or does not look loadable is loaded here, in order, so
    that its error comes first; the others wait for :func:`load_pair`."""
    timings = timings or Timings()
    out = []
    for key, index, label, ckpt, config in arm_models(ckpts, configs, labels):
        digest = prefetch.digest(ckpt) if prefetch else foreground_digest(ckpt)
        if config is not None and looks_loadable(ckpt):
            cfg = load_config(config)
            with torch.device("meta"):
                structure = build_unet(cfg.model)
            loaded = None
        else:
            model, weights, cfg = _load(ckpt, config, use_ema, device, timings)
            structure, loaded = model, done((model, weights))
        out.append(LoadedModel(key, label, ckpt, config, cfg, structure, loaded, digest, index))
    return out


def load_pair(
    models: list[LoadedModel],
    *,
    use_ema: bool,
    device: torch.device,
    prefetch: Prefetch | None = None,
    timings: Timings | None = None,
) -> None:
    """Load the weights :func:`open_pair` left: the first in the foreground, the others in
    the background, in order, when ``prefetch`` is given (``LoadedModel.model`` waits for them)."""
    timings = timings or Timings()
    for i, m in enumerate(models):
        if m.loaded is not None:
            continue
        if i > 0 and prefetch is not None:
            future = prefetch.submit(_load, m.ckpt, m.config_path, use_ema, device, timings)
            m.loaded = _first_two(future)
        else:
            model, weights, _ = _load(m.ckpt, m.config_path, use_ema, device, timings)
            m.loaded = done((model, weights))


class _first_two(Future):
    """``(model, weights)`` of a ``(model, weights, config)`` future."""

    def __init__(self, inner: Future):
        super().__init__()
        self._inner = inner

    def result(self, timeout=None):
        return self._inner.result(timeout)[:2]

    def done(self) -> bool:
        return self._inner.done()


def layout(device: torch.device) -> torch.memory_format:
    """Weights and inputs in NHWC on the CPU, where oneDNN's convolutions are faster so."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def _load(ckpt: str, config: str | None, use_ema: bool, device: torch.device, timings: Timings):
    tic = time.perf_counter()
    out = load_checkpoint(config, ckpt, use_ema=use_ema, device=device, memory_format=layout(device))
    timings.add("load", time.perf_counter() - tic)
    return out
