"""The models of a comparison: configs, architectures and files checked first, then the weights.

Two arms, baseline and curriculum, each of one or more checkpoints (training runs of one
recipe). The first of each arm is *the pair* the figures draw; :func:`arm_models` orders
them baseline 0, curriculum 0, then the other baseline and curriculum checkpoints.
:func:`open_pair` reads every file (memory-mapped, weights only: their index of tensors, not
the tensors' bytes), every config (given, or carried by the file), builds every architecture
on the meta device and checks that each file fits its architecture, so a bad file, config or
layer name of any model, and then the data, is reported before any weights are copied.
:func:`load_pair` then copies the weights into the models; with a
:class:`~ddpm_lens.analysis.prefetch.Prefetch` all but the first copy run in the background.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from ddpm_lens.analysis.prefetch import Prefetch, done, foreground_digest
from ddpm_lens.analysis.timings import Timings
from ddpm_lens.core.checkpoint import (
    Weights,
    check_fit,
    load_weights,
    model_from_weights,
    resolve_config,
)
from ddpm_lens.core.config import Config
from ddpm_lens.core.sparse_unet import check_mask_buffers
from ddpm_lens.core.unet import UNet, build_unet

MODEL_KEYS = ("baseline", "curriculum")  # row names and file names, whatever the panel labels say


@dataclass
class LoadedModel:
    key: str  # baseline | curriculum
    label: str  # panel heading
    ckpt: str
    config_path: str | None
    config: Config
    structure: UNet  # the architecture, possibly on the meta device: what request checks read
    loaded: Future | None  # -> (UNet with weights, Weights); None until load_pair
    digest: Future  # the checkpoint file's SHA-256
    pending: Weights | None = None  # read and checked by open_pair, copied into a model by load_pair
    index: int = 0  # which checkpoint of its arm: the rows' "checkpoint"; 0 draws the figures
    about: Weights | None = None  # the file's metadata (no tensors), known once open_pair read it

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
        """Where the weights came from (path, EMA or raw, epoch, stage); their tensors are the model's."""
        return self.about if self.about is not None else self.loaded.result()[1]

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
            "step": self.weights.step,  # a U-ViT <step>.ckpt/ folder's (it has no epoch)
            "weights": self.weights.description,
            "curriculum_stage": self.weights.curriculum_stage,  # the study's key: 0-based, -1 without
            "stage_name": self.weights.stage_name,
            "saved": self.weights.timestamp,
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
    allow_nonfinite: bool = False,
) -> list[LoadedModel]:
    """Every model's file, config and architecture (:func:`arm_models`' order), each file
    checked against its architecture; nothing is copied out of the files yet (``device`` is
    where :func:`load_pair` will put the weights)."""
    timings = timings or Timings()
    out = []
    for key, index, label, ckpt, config in arm_models(ckpts, configs, labels):
        digest = prefetch.digest(ckpt) if prefetch else foreground_digest(ckpt)
        tic = time.perf_counter()
        weights = load_weights(ckpt, use_ema=use_ema, allow_nonfinite=allow_nonfinite)
        cfg = resolve_config(config, weights, flag=f"--config_{key}")  # this command's flag for the arm
        with torch.device("meta"):
            structure = build_unet(cfg.model, sparsity=cfg.sparsity)
        check_mask_buffers(structure, weights.state_dict, ckpt=weights.path, config=cfg.source)
        check_fit(structure, weights.state_dict, ckpt=weights.path, config=cfg.source)
        timings.add("load", time.perf_counter() - tic)
        about = dataclasses.replace(weights, state_dict={})
        out.append(LoadedModel(key, label, ckpt, config, cfg, structure, None, digest, weights, index, about))
    return out


def load_pair(
    models: list[LoadedModel],
    *,
    device: torch.device,
    prefetch: Prefetch | None = None,
    timings: Timings | None = None,
) -> None:
    """Copy the weights :func:`open_pair` read into the models: the first in the foreground,
    the others in the background, in order, when ``prefetch`` is given (``LoadedModel.model``
    waits for them)."""
    timings = timings or Timings()
    for i, m in enumerate(models):
        if m.loaded is not None:
            continue
        if i > 0 and prefetch is not None:
            m.loaded = prefetch.submit(_build, m, device, timings)
        else:
            m.loaded = done(_build(m, device, timings))


def layout(device: torch.device) -> torch.memory_format:
    """Weights and inputs in NHWC on the CPU, where oneDNN's convolutions are faster so."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def _build(m: LoadedModel, device: torch.device, timings: Timings) -> tuple[UNet, Weights]:
    tic = time.perf_counter()
    weights, m.pending = m.pending, None  # the model holds the tensors from here on
    model = model_from_weights(
        weights,
        m.config.model,
        config_name=m.config.source,
        device=device,
        memory_format=layout(device),
        sparsity=m.config.sparsity,
    )
    timings.add("load", time.perf_counter() - tic)
    return model, dataclasses.replace(weights, state_dict={})
