"""The visualizer's streaming pipeline: the same inputs through two models, a chunk at a time.

Two checkpoints -> the same inputs (clean images and q_sample(x0, t, noise) with noise drawn
once per sample and timestep, fed identically to both models) -> one batched, early-stopped
forward per model and chunk -> per-map statistics, top-variance channels, CKA and
channel-correlation accumulators. Memory is bounded by the chunk, not by the number of samples.
:mod:`ddpm_lens.visualize` builds a :class:`Plan`; :mod:`ddpm_lens.outputs` writes the chunks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from ddpm_lens import stats
from ddpm_lens.checkpoint import Weights, load_checkpoint
from ddpm_lens.config import Config, load_config
from ddpm_lens.diffusion import GaussianDiffusion
from ddpm_lens.digests import FileDigests
from ddpm_lens.errors import UserError
from ddpm_lens.features import hooked, run_until
from ddpm_lens.similarity import CKAAccumulator, CorrelationAccumulator, assign_channels
from ddpm_lens.unet import UNet, build_unet

MODEL_KEYS = ("baseline", "curriculum")  # row names and file names, whatever the panel labels say


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


@dataclass
class LoadedModel:
    key: str  # baseline | curriculum
    label: str  # panel heading
    config: Config
    structure: UNet  # the architecture, possibly on the meta device: what request checks read
    loaded: Future  # -> (UNet with weights, Weights); the second model loads in the background
    digest: Future  # the checkpoint file's SHA-256, hashed in a background thread

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
            "label": self.label,
            "checkpoint": self.weights.path,
            "sha256": self.sha256,
            "config": self.config.source,
            "epoch": self.weights.epoch,
            "weights": self.weights.description,
        }


def load_pair(
    *,
    ckpts: Sequence[str],
    configs: Sequence[str | None],
    labels: Sequence[str],
    use_ema: bool,
    device: torch.device,
    digests: FileDigests | None = None,
    timings: Timings | None = None,
) -> list[LoadedModel]:
    """Load both models (weights only, memory-mapped, built on the meta device).

    The first model loads here. The second, when its config file is given, is checked here
    (config, architecture, file readable) and loads on a background thread: unpickling a
    trainer file is Python work that overlaps the first model's forward pass (C++, GIL
    released); ``LoadedModel.model`` waits for it, and a bad file's error surfaces there,
    before any output is written. The SHA-256 of each file (for the manifest) comes from
    ``digests``, which the caller may have started before importing torch.
    """
    timings = timings or Timings()
    hasher = digests or FileDigests()
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
    out = []
    for key, label, ckpt, config in zip(MODEL_KEYS, labels, ckpts, configs):
        background = bool(out) and config is not None and _readable(ckpt)
        if background:
            cfg = load_config(config)
            with torch.device("meta"):
                structure = build_unet(cfg.model)
            loaded = loader.submit(_load_weights, ckpt, config, use_ema, device, timings)
        else:
            loaded = Future()
            loaded.set_result(_load_weights(ckpt, config, use_ema, device, timings))
            structure, cfg = loaded.result()[0], loaded.result()[2]
        out.append(LoadedModel(key, label, cfg, structure, loaded, hasher.future(ckpt)))
    loader.shutdown(wait=False)
    hasher.close()
    return out


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False  # loaded in the foreground, which reports the problem


def _load_weights(
    ckpt: str, config: str | None, use_ema: bool, device: torch.device, timings: Timings
) -> tuple[UNet, Weights, Config]:
    tic = time.perf_counter()
    out = load_checkpoint(ckpt, config, use_ema=use_ema, device=device, memory_format=_layout(device))
    timings.add("load", time.perf_counter() - tic)
    return out


def _layout(device: torch.device) -> torch.memory_format:
    """Weights and inputs in NHWC on the CPU, where oneDNN convolutions run ~20 % faster so."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def noise_for(seed: int, sample: int, t: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The noise of sample ``sample`` at timestep ``t``: fixed by (seed, sample, t) alone."""
    key = int(np.random.SeedSequence([seed, sample, t]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randn(shape, generator=torch.Generator().manual_seed(key))


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
    layout = _layout(device)
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device).contiguous(memory_format=layout)
        with hooked(model, layers) as captured:
            run_until(model, xb, t[start : start + batch_size].to(device))
        for name in layers:
            parts[name].append(captured[name].float().cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


@dataclass
class Chunk:
    """One group of samples through both models."""

    first: int  # index of its first sample
    x0: torch.Tensor  # (n, 3, H, W) clean images in [-1, 1]
    inputs: torch.Tensor  # (n, S, 3, H, W) what both models received per condition
    acts: dict[str, dict[str, np.ndarray]] | None  # model key -> layer -> (n, S, C, H, W); the
    # writer drops them once the accumulators have seen them (figures need only the shown maps)
    shown: dict[str, dict[str, np.ndarray]]  # model key -> layer -> (n, S, K) channel indices
    maps: dict[str, dict[str, np.ndarray]]  # model key -> layer -> (n, S, K, H, W): those channels
    normed: dict[str, dict[str, np.ndarray]]  # the same maps each scaled to its 2nd-98th
    # percentile (float32), as figures draw them with norm="channel"
    rows: list[dict]


@dataclass
class Timings:
    """Seconds per phase, summed over the threads that did the work."""

    load: float = 0.0
    forward: float = 0.0
    stats: float = 0.0
    render: float = 0.0
    write: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            setattr(self, phase, getattr(self, phase) + seconds)

    def as_dict(self) -> dict[str, float]:
        return {f.name: round(getattr(self, f.name), 3) for f in fields(self) if not f.name.startswith("_")}


@dataclass
class Plan:
    """Everything fixed before the first forward pass."""

    models: list[LoadedModel]
    conditions: list[Condition]
    layers: list[str]
    num_channels: int
    num_samples: int  # samples with figures
    stats_samples: int  # samples in the statistics (>= num_samples)
    seed: int
    threshold: float
    batch_size: int  # inputs per forward chunk
    device: torch.device
    diffusion: GaussianDiffusion  # makes the noisy inputs (the baseline's schedule)
    images: object  # Tensor (N, 3, H, W) or a Dataset yielding (3, H, W)
    timings: Timings = field(default_factory=Timings)

    @property
    def samples_per_chunk(self) -> int:
        return max(1, self.batch_size // len(self.conditions))


def iter_chunks(plan: Plan, *, limit: int | None = None) -> Iterator[Chunk]:
    """Stream the first ``limit`` (default: all ``stats_samples``) samples through both models."""
    n_cond = len(plan.conditions)
    total = plan.stats_samples if limit is None else limit
    for first in range(0, total, plan.samples_per_chunk):
        count = min(plan.samples_per_chunk, total - first)
        tic = time.perf_counter()
        x0 = torch.stack([plan.images[i] for i in range(first, first + count)]).float()
        x, t = make_inputs(x0, first, plan.conditions, plan.diffusion, plan.seed)
        plan.timings.add("load", time.perf_counter() - tic)
        acts, shown, maps, normed, rows = {}, {}, {}, {}, []
        for m in plan.models:
            tic = time.perf_counter()
            flat = forward_layers(m.model, x, t, plan.layers, batch_size=plan.batch_size, device=plan.device)
            plan.timings.add("forward", time.perf_counter() - tic)
            tic = time.perf_counter()
            acts[m.key], shown[m.key], maps[m.key], normed[m.key] = {}, {}, {}, {}
            for layer, a in flat.items():
                summary = stats.channel_summary(a, plan.threshold)
                if not (np.isfinite(summary.min).all() and np.isfinite(summary.max).all()):
                    raise UserError(
                        f"the {m.label} model's {layer} activations contain NaN or inf (samples "
                        f"{first}-{first + count - 1}): its weights may have diverged; check "
                        f"{m.weights.path} (e.g. an earlier checkpoint)"
                    )
                idx = summary.top_channels(plan.num_channels)  # (n*S, K)
                picked, u = shown_maps(a, idx)
                rows += _rows(plan, m.key, layer, a.shape[1:], summary, idx, picked, u, first)
                split = (count, n_cond)
                acts[m.key][layer] = a.reshape(*split, *a.shape[1:])
                shown[m.key][layer] = idx.reshape(*split, -1)
                maps[m.key][layer] = picked.reshape(*split, *picked.shape[1:])
                normed[m.key][layer] = u.reshape(*split, *u.shape[1:])
            plan.timings.add("stats", time.perf_counter() - tic)
        yield Chunk(first, x0, x.reshape(count, n_cond, *x.shape[1:]), acts, shown, maps, normed, rows)


def shown_maps(a: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The maps ``idx`` (B, K) picks out of ``a`` (B, C, H, W), and the same scaled for display:
    (B, K, H, W) each, the second float32 in [0, 1] (:func:`stats.percentile_scale`)."""
    picked = np.stack([a[j][idx[j]] for j in range(len(a))])  # a per-image gather beats take_along_axis
    u = stats.percentile_scale(picked.reshape(-1, *picked.shape[2:]))[0].reshape(picked.shape)
    return picked, u


def _rows(
    plan: Plan,
    key: str,
    layer: str,
    shape: tuple[int, ...],
    summary: stats.ChannelSummary,
    idx: np.ndarray,
    maps: np.ndarray,
    normed: np.ndarray,
    first: int,
) -> list[dict]:
    """Statistics rows for one model and layer over a chunk of n*S inputs: ``idx`` (n*S, K)
    shown channels, ``maps`` (n*S, K, H, W) their activations and ``normed`` the same
    scaled for display."""
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
            "shape": list(shape),
        }
        row.update({name: float(v[j]) for name, v in s.items()})
        row.update(
            {"edge_energy": float(edge[j]), "autocorr": float(auto[j]), "shown_channels": idx[j].tolist()}
        )
        out.append(row)
    return out


class PairAccumulators:
    """CKA and channel correlations per layer x condition, streamed over chunks."""

    def __init__(self, plan: Plan, *, cka: bool = True, match: bool = False):
        self.plan, self.want_cka, self.match = plan, cka, match
        self.cka: dict[tuple[str, str], CKAAccumulator] = {}
        self.corr: dict[tuple[str, str], CorrelationAccumulator] = {}
        self.positions: dict[str, int] = {}  # layer -> H*W, to turn examples back into samples
        self.skipped: set[str] = set()

    def update(self, chunk: Chunk) -> None:
        a, b = (chunk.acts[k] for k in MODEL_KEYS)
        for layer in self.plan.layers:
            if a[layer].shape[-2:] != b[layer].shape[-2:]:
                self.skipped.add(layer)  # different spatial grids: no paired examples
                continue
            self.positions[layer] = _positions(a[layer])
            for s, cond in enumerate(self.plan.conditions):
                x, y = _example_rows(a[layer][:, s]), _example_rows(b[layer][:, s])  # (n, H*W, C)
                key = (layer, cond.name)
                if self.want_cka:
                    self.cka.setdefault(key, CKAAccumulator(x.shape[-1], y.shape[-1])).update(x, y)
                if self.match and chunk.first < self.plan.num_samples:
                    n_fig = self.plan.num_samples - chunk.first  # samples with figures in this chunk
                    self.corr.setdefault(key, CorrelationAccumulator(x.shape[-1], y.shape[-1])).update(
                        x[:n_fig].reshape(-1, x.shape[-1]), y[:n_fig].reshape(-1, y.shape[-1])
                    )

    def cka_rows(self) -> list[dict]:
        rows = []
        for layer in self.plan.layers:
            for cond in self.plan.conditions:
                acc = self.cka.get((layer, cond.name))
                if acc is None:
                    continue
                rows.append(
                    {
                        "layer": layer,
                        "condition": cond.name,
                        "t": cond.t,
                        "n_samples": acc.n // self.positions[layer],
                        "n_examples": acc.n,
                        "cka_debiased": acc.result(debiased=True) if acc.n >= 4 else float("nan"),
                        "cka_biased": acc.result(debiased=False),
                    }
                )
        return rows

    def matcher(self) -> dict[tuple[str, str], np.ndarray]:
        """(layer, condition) -> (C_baseline, C_curriculum) correlation matrix over the figure samples."""
        return {key: acc.result() for key, acc in self.corr.items()}


def _example_rows(act: np.ndarray) -> np.ndarray:
    """(n, C, H, W) -> (n, H*W, C): every image position is one example (a view for
    channels-last memory; the accumulators read the rows from it without a copy)."""
    return np.moveaxis(act, 1, -1).reshape(act.shape[0], -1, act.shape[1])


def _positions(act: np.ndarray) -> int:
    return int(act.shape[-1] * act.shape[-2])


def match_chunk(chunk: Chunk, corr: dict[tuple[str, str], np.ndarray], plan: Plan) -> None:
    """Reorder the curriculum's shown channels of the chunk's figure samples by a one-to-one
    assignment to the baseline's shown channels; record it in the curriculum rows."""
    rows = {(r["sample"], r["condition"], r["layer"]): r for r in chunk.rows if r["model"] == "curriculum"}
    for (layer, cname), matrix in corr.items():
        s = [c.name for c in plan.conditions].index(cname)
        for i in range(min(len(chunk.x0), plan.num_samples - chunk.first)):
            result = assign_channels(matrix[chunk.shown["baseline"][layer][i, s]])
            chunk.shown["curriculum"][layer][i, s] = result["assignment"]
            picked, u = shown_maps(chunk.acts["curriculum"][layer][i, s][None], result["assignment"][None])
            chunk.maps["curriculum"][layer][i, s], chunk.normed["curriculum"][layer][i, s] = picked[0], u[0]
            rows[(chunk.first + i, cname, layer)].update(
                matched_channels=result["assignment"].tolist(), matched_corr=result["mean_correlation"]
            )
