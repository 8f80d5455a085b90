"""The visualizer's run loop: the same inputs through two models, a chunk at a time.

Clean images and ``q_sample(x0, t, noise)`` (noise drawn once per sample and timestep, fed
identically to both models), plus the clean image told each noisy condition's t (the
reference of noise robustness; no rows, no figures) -> batched, early-stopped forwards per
model and chunk ->
per-map statistics rows, the top-variance channels of each map and CKA / channel-correlation
accumulators. On a CPU each model runs on its own thread and the next chunk is queued
before the current one is handed on (:func:`iter_chunks`), so two chunks are in memory at
most: memory is bounded by the chunk, not by the number of samples.
:func:`run_stream` drives it and hands each finished :class:`Chunk` to a sink (the figure
writer of :mod:`ddpm_lens.output`, or a list in :func:`~ddpm_lens.analysis.compare.compare_features`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from contextlib import closing
from dataclasses import dataclass

import numpy as np
import torch

from ddpm_lens.analysis import map_measures, stats
from ddpm_lens.analysis.inputs import Condition, clean_references, make_inputs
from ddpm_lens.analysis.model_pair import LoadedModel, layout
from ddpm_lens.analysis.pair_accumulators import PairAccumulators, match_chunk
from ddpm_lens.analysis.plan import Plan
from ddpm_lens.analysis.timings import Timings
from ddpm_lens.core.features import hooked, run_until
from ddpm_lens.core.unet import UNet
from ddpm_lens.util.cpu_threads import lanes
from ddpm_lens.util.errors import UserError


@torch.inference_mode()
def forward_layers(
    model: UNet,
    x: torch.Tensor,
    t: torch.Tensor,
    layers: Sequence[str],
    *,
    batch_size: int,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Activations {layer: (B, C, H, W) float32 numpy} in chunks of ``batch_size`` inputs."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    fmt = layout(device)
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device).contiguous(memory_format=fmt)
        with hooked(model, layers) as captured:
            run_until(model, xb, t[start : start + batch_size].to(device))
        for name in layers:
            parts[name].append(captured[name].float().cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


@dataclass
class LayerMaps:
    """One model's layer over a chunk: activations and the maps a figure shows, [sample, condition, ...]."""

    acts: np.ndarray | None  # (n, S, C, H, W); dropped once the accumulators have seen them
    shown: np.ndarray  # (n, S, K) channel indices
    maps: np.ndarray  # (n, S, K, H, W): those channels
    normed: np.ndarray  # the same maps each scaled to its 2nd-98th percentile (float32)

    def show(self, i: int, s: int, channels: np.ndarray) -> None:
        """Show ``channels`` for sample ``i``, condition ``s`` (needs the activations)."""
        picked, u = shown_maps(self.acts[i, s][None], channels[None])
        self.shown[i, s], self.maps[i, s], self.normed[i, s] = channels, picked[0], u[0]


@dataclass
class Chunk:
    """One group of samples through every model."""

    first: int  # index of its first sample
    x0: torch.Tensor  # (n, 3, H, W) clean images in [-1, 1]
    inputs: torch.Tensor  # (n, S, 3, H, W) what every model received per condition
    layers: dict[str, dict[str, LayerMaps]]  # model id ("baseline", "baseline_1", ...) -> layer -> maps
    rows: list[dict]

    def drop_activations(self) -> None:
        for by_layer in self.layers.values():
            for maps in by_layer.values():
                maps.acts = None


@dataclass
class StreamResult:
    rows: list[dict]
    cka: list[dict]
    skipped_cka: list[str]  # layers whose spatial sizes differ between the models


def iter_chunks(plan: Plan, timings: Timings, *, limit: int | None = None) -> Iterator[Chunk]:
    """Stream the first ``limit`` (default: all ``stats_samples``) samples through both models.

    On a CPU the models of a chunk run side by side, one thread each
    (:func:`~ddpm_lens.util.cpu_threads.lanes`), and the next chunk's are started before this
    one is yielded, so its forward passes overlap what the caller does with it.
    """
    total = plan.options.stats_samples if limit is None else limit
    firsts = range(0, total, plan.samples_per_chunk)
    with lanes(len(plan.models), enabled=plan.device.type == "cpu") as by_model:
        ahead = _start_chunk(plan, by_model, firsts[0], total, timings) if firsts else None
        for k in range(len(firsts)):
            first, x0, x, futures = ahead
            if k + 1 < len(firsts):
                ahead = _start_chunk(plan, by_model, firsts[k + 1], total, timings)
            done = [f.result() for f in futures]
            layers = {m.id: maps for m, (maps, _) in zip(plan.models, done)}
            rows = [row for _, model_rows in done for row in model_rows]
            yield Chunk(first, x0, x.reshape(len(x0), len(plan.conditions), *x.shape[1:]), layers, rows)


def _start_chunk(
    plan: Plan, by_model: list[Executor], first: int, total: int, timings: Timings
) -> tuple[int, torch.Tensor, torch.Tensor, list[Future]]:
    """The inputs of the chunk starting at sample ``first``, and each model's work on them queued
    on its lane: (first, x0, inputs, futures of :func:`model_chunk`)."""
    count = min(plan.samples_per_chunk, total - first)
    tic = time.perf_counter()
    x0 = torch.stack([plan.images[i] for i in range(first, first + count)]).float()
    x, t = make_inputs(x0, first, plan.conditions, plan.diffusion, plan.options.seed)
    refs = clean_references(x0, plan.conditions)
    timings.add("load", time.perf_counter() - tic)
    futures = [
        lane.submit(model_chunk, plan, m, x, t, first, timings, refs)
        for lane, m in zip(by_model, plan.models)
    ]
    return first, x0, x, futures


def model_chunk(
    plan: Plan,
    m: LoadedModel,
    x: torch.Tensor,
    t: torch.Tensor,
    first: int,
    timings: Timings,
    refs: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, LayerMaps], list[dict]]:
    """One model's forward pass over a chunk's inputs ``x`` (n*S, 3, H, W) at ``t``: its maps
    per layer and its statistics rows. ``refs`` (:func:`~ddpm_lens.analysis.inputs.clean_references`)
    run in a pass of their own, so the inputs' batches are the same with or without them."""
    opts = plan.options
    n_cond = len(plan.conditions)
    count = len(x) // n_cond
    tic = time.perf_counter()
    flat = forward_layers(m.model, x, t, plan.layers, batch_size=opts.batch_size, device=plan.device)
    ref_acts = {}
    if refs is not None and len(refs[0]):
        ref_acts = forward_layers(m.model, *refs, plan.layers, batch_size=opts.batch_size, device=plan.device)
    timings.add("forward", time.perf_counter() - tic)
    tic = time.perf_counter()
    layers: dict[str, LayerMaps] = {}
    rows: list[dict] = []
    for layer, a in flat.items():
        summary = stats.channel_summary(a, opts.threshold)
        if not (np.isfinite(summary.min).all() and np.isfinite(summary.max).all()):
            raise UserError(
                f"the {m.label} model's {layer} activations contain NaN or inf (samples "
                f"{first}-{first + count - 1}): its weights may have diverged; check "
                f"{m.weights.path} (e.g. an earlier checkpoint)"
            )
        idx = summary.top_channels(opts.num_channels)  # (n*S, K)
        picked, u = shown_maps(a, idx)
        measures = layer_measures(a, summary, plan.conditions, ref_acts.get(layer))
        rows += stats_rows(plan, m.key, layer, a.shape[1:], summary, measures, idx, picked, u, first, m.index)
        split = (count, n_cond)
        layers[layer] = LayerMaps(
            acts=a.reshape(*split, *a.shape[1:]),
            shown=idx.reshape(*split, -1),
            maps=picked.reshape(*split, *picked.shape[1:]),
            normed=u.reshape(*split, *u.shape[1:]),
        )
    timings.add("stats", time.perf_counter() - tic)
    return layers, rows


def run_stream(
    plan: Plan,
    *,
    timings: Timings,
    sink: Callable[[Chunk], None] | None = None,
    keep_activations: bool = False,
) -> StreamResult:
    """Every chunk through both models into the accumulators and then ``sink``.

    With ``match_channels`` the channel correlations over the figure samples come first (one
    extra pass over them), so that every chunk's curriculum maps are reordered before the
    sink sees them. Without ``keep_activations`` each chunk's full activations are freed
    once accumulated: figures need only the shown maps.

    numpy's BLAS runs on one thread meanwhile: the work already fills every core (the models'
    threads, the PNG pool), and OpenBLAS's spinning workers would take turns from them.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _stream(plan, timings=timings, sink=sink, keep_activations=keep_activations)


def _stream(plan: Plan, *, timings: Timings, sink, keep_activations: bool) -> StreamResult:
    from tqdm.auto import tqdm

    opts = plan.options
    corr = None
    if opts.match_channels:
        pre = PairAccumulators(plan, cka=False, match=True)
        with closing(iter_chunks(plan, timings, limit=opts.num_samples)) as chunks:
            for chunk in chunks:
                pre.update(chunk)
        corr, null = pre.matcher(), pre.null_matcher()
    accs = PairAccumulators(plan)
    rows: list[dict] = []
    bar = tqdm(total=opts.stats_samples, desc="visualize", unit="sample", disable=not opts.progress)
    try:
        with closing(iter_chunks(plan, timings)) as chunks:  # its threads end here, even on an error
            for chunk in chunks:
                accs.update(chunk)
                if corr is not None:
                    match_chunk(chunk, corr, plan, null)
                if not keep_activations:
                    chunk.drop_activations()
                if sink is not None:
                    sink(chunk)
                rows += chunk.rows
                bar.update(len(chunk.x0))
    finally:
        bar.close()
    return StreamResult(rows, accs.cka_rows(), sorted(accs.skipped))


def shown_maps(a: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The maps ``idx`` (B, K) picks out of ``a`` (B, C, H, W), and the same scaled for display:
    (B, K, H, W) each, the second float32 in [0, 1] (:func:`stats.percentile_scale`)."""
    picked = np.stack([a[j][idx[j]] for j in range(len(a))])  # a per-image gather beats take_along_axis
    u = stats.percentile_scale(picked.reshape(-1, *picked.shape[2:]))[0].reshape(picked.shape)
    return picked, u


def layer_measures(
    acts: np.ndarray,
    summary: stats.ChannelSummary,
    conditions: Sequence[Condition],
    refs: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The :mod:`~ddpm_lens.analysis.map_measures` of one model's layer over a chunk, (n*S,) each,
    over all channels (so both models are scored on the same channel set, whatever they show).

    ``acts`` (n*S, C, H, W) is ordered sample-major, condition-minor, as the chunk's inputs;
    ``refs`` (n*k, C, H, W) the layer on :func:`~ddpm_lens.analysis.inputs.clean_references`
    (the clean image at each of the k noisy conditions' t). ``noise_robustness`` compares each
    noisy condition with the clean image of the same sample at the same t; it is NaN for the
    clean rows, and everywhere without ``refs`` (the clean condition is not run).
    """
    n_cond = len(conditions)
    out = {
        "hoyer": map_measures.hoyer_from_moments(summary.mean_abs, summary.mean, summary.var, summary.size),
        "kurtosis": map_measures.excess_kurtosis(acts),
        "hf_share": map_measures.high_frequency_share(acts, var=summary.var),
    }
    robust = np.full((len(acts) // n_cond, n_cond), np.nan)  # (n, S)
    noisy = [s for s, c in enumerate(conditions) if c.noisy]
    if refs is not None and len(refs) and noisy:
        a = acts.reshape(-1, n_cond, *acts.shape[1:])
        ref = refs.reshape(-1, len(noisy), *refs.shape[1:])
        for j, s in enumerate(noisy):
            robust[:, s] = map_measures.noise_robustness(a[:, s], ref[:, j])
    out["noise_robustness"] = robust.reshape(-1)
    return out


def stats_rows(
    plan: Plan,
    key: str,
    layer: str,
    shape: tuple[int, ...],
    summary: stats.ChannelSummary,
    measures: dict[str, np.ndarray],
    idx: np.ndarray,
    maps: np.ndarray,
    normed: np.ndarray,
    first: int,
    checkpoint: int = 0,
) -> list[dict]:
    """Statistics rows for one model (arm ``key``, its ``checkpoint``) and layer over a chunk of
    n*S inputs: ``measures`` from
    :func:`layer_measures`, ``idx`` (n*S, K) shown channels, ``maps`` (n*S, K, H, W) their
    activations and ``normed`` the same scaled for display. Field names are those of
    :mod:`ddpm_lens.analysis.stat_registry`; a measure that is not defined (NaN) is None."""
    s = stats.batch_layer_stats(shown=idx, summary=summary)
    k = maps.shape[1]
    edge = stats.gradient_energy(normed.reshape(-1, *normed.shape[2:])).reshape(-1, k).mean(axis=1)
    auto = stats.spatial_autocorrelation(maps.reshape(-1, *maps.shape[2:])).reshape(-1, k).mean(axis=1)
    n_cond = len(plan.conditions)
    out = []
    for j in range(len(idx)):
        sample, cond = first + j // n_cond, plan.conditions[j % n_cond]
        row = {
            "sample": sample,
            "condition": cond.name,
            "t": cond.t,
            "layer": layer,
            "model": key,
            "checkpoint": checkpoint,
            "shape": list(shape),
        }
        row.update({name: float(v[j]) for name, v in s.items()})
        row.update({name: _number(v[j]) for name, v in measures.items()})
        row.update(
            {"edge_energy": float(edge[j]), "autocorr": float(auto[j]), "shown_channels": idx[j].tolist()}
        )
        out.append(row)
    return out


def _number(value) -> float | None:
    """A row value: a float, or None where the measure is not defined."""
    value = float(value)
    return None if np.isnan(value) else value
