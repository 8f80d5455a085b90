"""The measures of one checkpoint in an across-training study, each a pluggable function.

A measure is a function ``ctx -> rows``: ``ctx`` is a :class:`CheckpointContext` (the loaded
model, its diffusion, the study's fixed image sets and options), the rows are long-form dicts
``{"measure", "layer", "t", "value", "ci_low", "ci_high", "n", "unit"}``. Every measure of a
checkpoint shares one forward pass per input: :meth:`CheckpointContext.losses` (the denoising
loss of every training and held-out image at every t of the loss grid) and
:meth:`CheckpointContext.activations` (the tapped layers on the statistics images, clean and
noisy at each statistics t) are computed on first use and kept until the checkpoint is done,
so adding a measure adds no forward pass. A measure may also :meth:`~CheckpointContext.keep`
arrays that cross-checkpoint measures (CKA drift, arm-vs-arm comparisons) read later from the
cache. A new measure is one function here plus its entry in :data:`MEASURES`::

    def my_measure(ctx):
        acts = ctx.activations()            # {(condition, layer): (N, C, H, W) float32}
        return [row("my_measure", value=..., layer="bottleneck", t=100)]

Intervals: every ``ci_low``/``ci_high`` is a 95 % Student-t interval over images (the unit of
inference of a single checkpoint: the image); the gap's is paired, over image i of the training
set and image i of the held-out set, which share the noise draw at each t.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ddpm_lens.analysis.decision_rule import mean_interval
from ddpm_lens.analysis.inputs import HELD_OUT_STREAM, make_conditions, make_inputs, noise_for
from ddpm_lens.analysis.map_measures import high_frequency_share, hoyer, noise_robustness
from ddpm_lens.analysis.stats import channel_summary
from ddpm_lens.core.features import hooked, resolve_layers, run_until

UNIT_IMAGE = "image"
UNIT_PAIR = "image pair (training image i, held-out image i, same noise)"


@dataclass
class TrajectoryOptions:
    """What every checkpoint is measured with; all of it goes into the cache key."""

    seed: int = 0
    loss_timesteps: tuple[int, ...] = (0, 10, 25, 50, 100, 250, 500, 750, 999)
    low_t: int = 100  # "low t": the grid's timesteps t <= low_t, pooled per image for gap_low_t
    loss_num: int = 64  # training and held-out images of the loss (each)
    stats_num: int = 16  # statistics images (held-out), for the layer statistics and CKA
    stats_timesteps: tuple[int, ...] = (100, 500, 900)  # noisy conditions; the clean one is always in
    layers: tuple[str, ...] = ("seed",)
    cka_num: int = 8  # of the statistics images, the first cka_num feed CKA (kept float16 in the cache)
    batch_size: int = 64
    use_ema: bool = True

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class CheckpointContext:
    model: torch.nn.Module
    diffusion: object  # GaussianDiffusion
    config: object  # Config
    train_images: torch.Tensor  # (L, 3, R, R): the first images the model trained on
    held_out_images: torch.Tensor  # (L, 3, R, R): images it never saw
    stats_images: torch.Tensor  # (S, 3, R, R): the statistics images (held-out)
    options: TrajectoryOptions
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    stats_factors: tuple[np.ndarray, list[str]] | None = None  # the statistics images' factors (S, F), names
    kept: dict[str, np.ndarray] = field(default_factory=dict)
    _losses: tuple[np.ndarray, np.ndarray] | None = None
    _acts: dict | None = None

    def keep(self, name: str, array: np.ndarray) -> None:
        """Store ``array`` in this checkpoint's cache entry, for measures across checkpoints."""
        self.kept[name] = np.asarray(array)

    def losses(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, held_out): (L, len(loss_timesteps)) float64, the training loss of image i at
        each t, the noise of image i at t the same in both sets (fixed by seed, i and t)."""
        if self._losses is None:
            grid = self.options.loss_timesteps
            self._losses = tuple(
                image_losses(
                    self.model,
                    self.diffusion,
                    x,
                    grid,
                    seed=self.options.seed,
                    batch_size=self.options.batch_size,
                    device=self.device,
                )
                for x in (self.train_images, self.held_out_images)
            )
        return self._losses

    def activations(self) -> dict[tuple[str, str], np.ndarray]:
        """{(condition, layer): (S, C, H, W) float32} on the statistics images; conditions are
        ``clean_t0`` and ``noisy_t<t>`` for each statistics t (the visualizer's inputs and noise)."""
        if self._acts is None:
            self._acts = layer_activations(
                self.model, self.diffusion, self.stats_images, self.options, device=self.device
            )
        return self._acts


def row(measure: str, *, value, layer: str = "", t=None, ci_low=None, ci_high=None, n=None, unit=""):
    return {
        "measure": measure,
        "layer": layer,
        "t": None if t is None else int(t),
        "value": float(value),
        "ci_low": None if ci_low is None or not np.isfinite(ci_low) else float(ci_low),
        "ci_high": None if ci_high is None or not np.isfinite(ci_high) else float(ci_high),
        "n": n,
        "unit": unit,
    }


def interval_row(measure: str, values: np.ndarray, *, unit: str = UNIT_IMAGE, **where) -> dict:
    mean, low, high = mean_interval(values)
    return row(measure, value=mean, ci_low=low, ci_high=high, n=len(values), unit=unit, **where)


@torch.inference_mode()
def image_losses(
    model, diffusion, images: torch.Tensor, timesteps, *, seed: int, batch_size: int, device
) -> np.ndarray:
    """(N, T') float64: the config's training loss of each image at each t, the noise of image i
    at t ``noise_for(seed, i, t, stream=HELD_OUT_STREAM)`` (``evaluate``'s held-out draws)."""
    n, per_t = len(images), len(timesteps)
    shape = tuple(images.shape[1:])
    pairs = [(i, t) for i in range(n) for t in timesteps]  # image-major
    out = np.empty(len(pairs))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            x0 = images[[i for i, _ in chunk]].to(device)
            noise = torch.stack([noise_for(seed, i, t, shape, stream=HELD_OUT_STREAM) for i, t in chunk]).to(
                device
            )
            t_vec = torch.tensor([t for _, t in chunk], dtype=torch.long, device=device)
            out[start : start + len(chunk)] = (
                diffusion.train_losses(model, x0, t_vec, noise).double().cpu().numpy()
            )
    finally:
        model.train(was_training)
    return out.reshape(n, per_t)


@torch.inference_mode()
def layer_activations(model, diffusion, images: torch.Tensor, options: TrajectoryOptions, *, device) -> dict:
    """{(condition, layer): (S, C, H, W) float32}: one early-stopped forward per input."""
    conditions = make_conditions(options.stats_timesteps)
    names = resolve_layers(model, list(options.layers))
    per_image = max(1, options.batch_size // len(conditions))
    parts: dict[tuple[str, str], list[np.ndarray]] = {}
    with hooked(model, names) as captured:
        for first in range(0, len(images), per_image):
            x0 = images[first : first + per_image]
            x, t = make_inputs(x0, first, conditions, diffusion, options.seed)
            captured.clear()
            run_until(model, x.to(device), t.to(device))
            for name in names:
                acts = captured[name].float().cpu().numpy()  # (n*S, C, H, W), sample-major
                acts = acts.reshape(len(x0), len(conditions), *acts.shape[1:])
                for k, cond in enumerate(conditions):
                    parts.setdefault((cond.name, name), []).append(np.ascontiguousarray(acts[:, k]))
    return {key: np.concatenate(chunks) for key, chunks in parts.items()}


def _t_of(condition: str) -> int:
    return 0 if condition == "clean_t0" else int(condition.removeprefix("noisy_t"))


# ---- the measures ------------------------------------------------------------------------------


def denoising_gap(ctx: CheckpointContext) -> list[dict]:
    """``loss_train`` and ``loss_held_out`` per t (interval over images), ``gap`` = held-out −
    train per t (paired interval over image pairs), ``gap_low_t`` the same pooled over the
    grid's t <= low_t (each pair's mean over those t; ``t`` is low_t)."""
    train, held = ctx.losses()
    grid = ctx.options.loss_timesteps
    ctx.keep("loss_train", train)
    ctx.keep("loss_held_out", held)
    rows = []
    for j, t in enumerate(grid):
        rows.append(interval_row("loss_train", train[:, j], t=t))
        rows.append(interval_row("loss_held_out", held[:, j], t=t))
        rows.append(interval_row("gap", held[:, j] - train[:, j], t=t, unit=UNIT_PAIR))
    low = [j for j, t in enumerate(grid) if t <= ctx.options.low_t]
    if low:
        pooled = (held[:, low] - train[:, low]).mean(axis=1)
        rows.append(interval_row("gap_low_t", pooled, t=ctx.options.low_t, unit=UNIT_PAIR))
    return rows


def layer_statistics(ctx: CheckpointContext) -> list[dict]:
    """Per layer and condition, averaged over the statistics images: ``hoyer``, ``hf_share``,
    ``sigma`` (std over all channels and positions) and, for noisy conditions,
    ``noise_robustness`` (against the clean condition of the same image)."""
    acts = ctx.activations()
    rows = []
    for (cond, layer), a in acts.items():
        t = _t_of(cond)
        rows.append(interval_row("hoyer", hoyer(a), layer=layer, t=t))
        rows.append(interval_row("hf_share", high_frequency_share(a), layer=layer, t=t))
        rows.append(interval_row("sigma", channel_summary(a).pooled()["std"], layer=layer, t=t))
        if cond != "clean_t0":
            clean = acts[("clean_t0", layer)]
            rows.append(interval_row("noise_robustness", noise_robustness(a, clean), layer=layer, t=t))
    return rows


def cka_features(ctx: CheckpointContext) -> list[dict]:
    """Keeps the first ``cka_num`` statistics images' activations (float16, (n, H*W, C)) per
    layer and condition for the CKA measures across checkpoints; no rows of its own."""
    n = min(ctx.options.cka_num, len(ctx.stats_images))
    for (cond, layer), a in ctx.activations().items():
        rows = np.moveaxis(a[:n], 1, -1).reshape(n, -1, a.shape[1])  # (n, H*W, C)
        ctx.keep(f"cka/{cond}/{layer}", rows.astype(np.float16))
    return []


def channel_purity_rows(ctx: CheckpointContext) -> list[dict]:
    """Per layer and condition: ``purity_excess`` (mean channel purity minus its shuffled-factor
    null, :func:`ddpm_lens.analysis.channel_purity.channel_purity`, Ridgeway & Mozer's modularity;
    interval: bootstrap over images) and ``purity`` (before the null is subtracted), on the
    statistics images' factors. None without labelled factors, or with fewer statistics images
    than the measure needs (4 per bin: 32 with its 8 bins; it was calibrated at 128)."""
    from ddpm_lens.analysis.channel_purity import BINS, channel_purity, channel_responses

    if ctx.stats_factors is None or len(ctx.stats_images) < 4 * BINS:
        return []
    factors, names = ctx.stats_factors
    rows = []
    for (cond, layer), a in ctx.activations().items():
        result = channel_purity(channel_responses(a), factors[: len(a)], names, seed=ctx.options.seed)[
            "layer"
        ]
        where = {"layer": layer, "t": _t_of(cond), "n": result["n_images"], "unit": UNIT_IMAGE}
        rows.append(
            row(
                "purity_excess",
                value=result["mean_excess"],
                ci_low=result["excess_low"],
                ci_high=result["excess_high"],
                **where,
            )
        )
        rows.append(
            row(
                "purity",
                value=result["mean_purity"],
                ci_low=result["purity_low"],
                ci_high=result["purity_high"],
                **where,
            )
        )
    return rows


@dataclass(frozen=True)
class Measure:
    name: str
    fn: Callable[[CheckpointContext], list[dict]]
    description: str


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure(
            "denoising_gap",
            denoising_gap,
            "denoising loss on training and held-out images per t, and their gap",
        ),
        Measure(
            "layer_statistics", layer_statistics, "Hoyer, hf_share, sigma, noise robustness per layer and t"
        ),
        Measure("cka_features", cka_features, "activations kept for CKA drift and arm-vs-arm CKA"),
        Measure(
            "channel_purity", channel_purity_rows, "channel purity (modularity) against labelled factors"
        ),
    )
}


def measure_checkpoint(ctx: CheckpointContext, measures: dict[str, Measure] | None = None) -> list[dict]:
    """Every measure's rows for one checkpoint, in the registry's order."""
    rows = []
    for m in (measures or MEASURES).values():
        rows += m.fn(ctx)
    return rows
