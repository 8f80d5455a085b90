"""The across-training study: N arms x their checkpoints, every measure, one long table.

::

    arms = resolve_arms([("Baseline", ["chkpts/tiny_study"], None), ("C", ["chkpts/tiny_study_c"], None)])
    study = run_study(arms, TrajectoryOptions(), cache_dir="trajectories/cache")
    study.rows[0]   # {"arm", "checkpoint", "step", "epoch", "measure", "layer", "t", "value", "ci_low", ...}

Per checkpoint (loaded once; the measures of :mod:`~ddpm_lens.analysis.trajectory_measures`
share its forward passes) on image sets fixed for the whole study: the first ``loss_num``
images the model trained on (its config's dataset, ``train`` split, within ``max_images``) and
as many held-out ones (that dataset's ``test`` split, unless ``held_out`` names another
source), the first ``stats_num`` held-out images for the layer statistics and CKA. Then,
across checkpoints, from the cache: ``cka_to_final`` (each checkpoint against its arm's last,
per layer and condition) and ``cka_to_first_arm`` (each arm against the first arm at equal
steps), and the decision rule on the generalization gap at low t, arm vs the first arm at
equal steps (paired over image pairs; Holm across every cell compared).

Work is split by checkpoint over torchrun's processes (each writes its checkpoints' cache
entries; the cache folder must be one all processes see); rank 0 assembles the result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ddpm_lens.analysis import decision_rule as rule
from ddpm_lens.analysis.image_cka import ImageCKA
from ddpm_lens.analysis.rank_split import gather, world
from ddpm_lens.analysis.study_arms import Arm, CheckpointRef
from ddpm_lens.analysis.trajectory_cache import TrajectoryCache, entry_key, options_digest
from ddpm_lens.analysis.trajectory_measures import (
    MEASURES,
    UNIT_IMAGE,
    CheckpointContext,
    Measure,
    TrajectoryOptions,
    measure_checkpoint,
    row,
)
from ddpm_lens.util.digests import sha256_of
from ddpm_lens.util.errors import UserError, warn

COLUMNS = (
    "arm",
    "checkpoint",
    "step",
    "epoch",
    "measure",
    "layer",
    "t",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "unit",
)
GAP_CLAIM = "the arm's generalization gap at low t is smaller than the first arm's (claim 2 of the study)"


@dataclass
class CheckpointInfo:
    arm: str
    ref: CheckpointRef
    sha256: str
    key: str
    epoch: int | None
    step: int | None
    resolution: int
    timesteps: int
    dataset: dict
    model: dict


@dataclass
class Study:
    rows: list[dict]  # long form, COLUMNS
    checkpoints: list[
        dict
    ]  # one per arm x checkpoint: arm, checkpoint, path, sha256, epoch, step, x, seconds, cached
    comparisons: list[dict]  # gap cells, arm vs the first arm at equal x
    verdicts: dict[str, str]  # arm -> verdict on GAP_CLAIM
    settings: dict = field(default_factory=dict)


def run_study(
    arms: Sequence[Arm],
    options: TrajectoryOptions,
    *,
    cache_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    train_images: str | None = None,
    held_out: str | None = None,
    measures: dict[str, Measure] | None = None,
    device="cpu",
    dist=None,
    progress: bool = True,
    alpha: float = rule.ALPHA,
) -> Study | None:
    """The study of ``arms`` (rank 0; None on the other ranks). ``train_images``/``held_out``:
    an image source spec (``dataset:NAME[:SPLIT]`` or a folder) in place of the defaults."""
    device = torch.device(device)
    measures = measures or MEASURES
    cache = TrajectoryCache(cache_dir)
    infos = preflight(arms, options, train_images=train_images, held_out=held_out, cache=cache)
    opts = {
        **options.to_dict(),
        "train_images": train_images,
        "held_out": held_out,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "measures": sorted(measures),
    }
    digest = options_digest(opts)
    for info in infos:
        info.key = entry_key(info.sha256, digest)
    rank, size = world(dist)
    images = _ImageSets(options, data_dir=data_dir, train_spec=train_images, held_out_spec=held_out)
    unique = list({i.key: i for i in infos}.values())
    mine = [info for k, info in enumerate(unique) if k % size == rank]  # round robin: arms interleave
    seconds: dict[str, float] = {}
    cached: dict[str, bool] = {}
    for arm in arms:
        todo = [i for i in mine if i.arm == arm.label]
        bar = tqdm(todo, desc=f"{arm.label}", unit="ckpt", disable=not progress or not todo)
        for info in bar:
            bar.set_postfix_str(info.ref.path.name, refresh=False)
            tic = time.perf_counter()
            cached[info.key] = cache.get(info.key) is not None
            if not cached[info.key]:
                _measure_one(info, options, images, measures, cache, device)
            seconds[info.key] = time.perf_counter() - tic
        bar.close()
    shares = gather((seconds, cached), dist)
    if rank != 0:
        return None
    cache.clean()  # after every process is done: a killed run's temporary folders, never a live one's
    for s, c in shares:
        seconds.update(s)
        cached.update(c)
    return assemble(
        arms, infos, cache, options, seconds=seconds, cached=cached, opts=opts, alpha=alpha, progress=progress
    )


def preflight(
    arms: Sequence[Arm], options: TrajectoryOptions, *, train_images=None, held_out=None, cache=None
) -> list[CheckpointInfo]:
    """Every checkpoint's config, epoch, step and SHA-256, checked before any work: one
    resolution and one T for the whole study, loss timesteps inside [0, T), a known training set.
    What a file says about itself (step, carried config) is kept in ``cache`` by its SHA-256,
    written only once every check has passed: reading a trainer file costs more than hashing it."""
    infos = []
    peeked = {}
    for arm in arms:
        models = set()
        for ref in arm.checkpoints:
            sha = sha256_of(ref.path)
            known = cache.get_peek(sha) if cache is not None else None
            if known is None or (ref.config is None and known["config"] is None):
                cfg, step, carried = _peek(ref)
                peeked[sha] = {"step": step, "config": carried}
            else:
                cfg = _config_of(ref, known["config"])
                step = known["step"]
            infos.append(
                CheckpointInfo(
                    arm.label,
                    ref,
                    sha,
                    "",
                    ref.epoch,
                    step,
                    cfg.dataset.resolution,
                    cfg.diffusion.timesteps,
                    _dataset_of(cfg),
                    _model_of(cfg),
                )
            )
            models.add(repr(infos[-1].model))
        if len(models) > 1:
            warn(
                f"arm {arm.label} mixes {len(models)} architectures: each checkpoint is measured alone and "
                "CKA compares layers of any width, but read its trajectory as several models"
            )
    by_res = {}
    for i in infos:
        by_res.setdefault(i.resolution, i.arm)
    if len(by_res) > 1:
        seen = ", ".join(f"{arm} {res}px" for res, arm in by_res.items())
        raise UserError(
            f"arms at different resolutions ({seen}): all arms see the same images; "
            "study one resolution at a time"
        )
    ts = {i.timesteps for i in infos}
    if len(ts) > 1:
        raise UserError(
            f"checkpoints disagree on diffusion.timesteps ({sorted(ts)}): t would mean different noise levels"
        )
    T = ts.pop()
    bad = [t for t in (*options.loss_timesteps, *options.stats_timesteps) if not 0 <= t < T]
    if bad:
        raise UserError(
            f"timesteps {bad} outside 0..{T - 1}: pass --loss_timesteps / --stats_timesteps within [0, T)"
        )
    if train_images is None:
        names = {i.dataset["name"] for i in infos}
        if "none" in names:
            raise UserError(
                "a diffusers checkpoint does not say what it trained on: pass --train_images and --held_out"
            )
        if len(names) > 1:
            raise UserError(
                f"arms trained on different datasets ({', '.join(sorted(names))}): "
                "pass --train_images and --held_out"
            )
    if held_out is None and {i.dataset["name"] for i in infos} == {"folder"}:
        raise UserError("a folder dataset has no held-out split: pass --held_out FOLDER")
    if cache is not None:
        for sha, known in peeked.items():
            cache.put_peek(sha, known)
    return infos


def _config_of(ref: CheckpointRef, carried: dict | None):
    from ddpm_lens.core.config import config_from_dict, load_config

    if ref.config is not None:
        return load_config(ref.config)
    return config_from_dict(carried, source=f"{ref.path}:config")


def _peek(ref: CheckpointRef):
    """(config, recorded optimizer step or None (a U-ViT folder's: in its name), the config dict
    the file carries when used) without building the model."""
    from ddpm_lens.core.checkpoint import load_weights, resolve_config
    from ddpm_lens.core.config import load_config
    from ddpm_lens.core.safe_load import read_checkpoint

    step = ref.step
    if ref.path.is_file() and ref.path.suffix != ".safetensors":
        obj = read_checkpoint(ref.path)
        value = obj.get("step") if isinstance(obj, dict) else None
        step = value if isinstance(value, int) and not isinstance(value, bool) else None
    if ref.config is not None:
        return load_config(ref.config), step, None
    cfg = resolve_config(None, load_weights(ref.path, use_ema=False))
    return cfg, step, cfg.to_dict()


def _dataset_of(cfg) -> dict:
    d = cfg.dataset
    return {"name": d.name, "root": getattr(d, "root", None), "max_images": d.max_images}


def _model_of(cfg) -> dict:
    import dataclasses

    return dataclasses.asdict(cfg.model)


class _ImageSets:
    """The study's fixed images, read once per training set (keyed by dataset) and shared."""

    def __init__(self, options, *, data_dir, train_spec, held_out_spec):
        self.options, self.data_dir = options, data_dir
        self.train_spec, self.held_out_spec = train_spec, held_out_spec
        self._train: dict = {}
        self._held: dict = {}

    def train(self, cfg) -> torch.Tensor:
        key = (cfg.dataset.name, cfg.dataset.max_images, cfg.dataset.resolution)
        if key not in self._train:
            n = self.options.loss_num
            if self.train_spec is not None:
                self._train[key] = _read(self.train_spec, n, cfg.dataset.resolution, self.data_dir)
            else:
                from ddpm_lens.data.datasets import build_dataset

                root = cfg.dataset.root if getattr(cfg.dataset, "root", None) else self.data_dir
                ds = build_dataset(
                    cfg.dataset.name, root=root, split="train", resolution=cfg.dataset.resolution
                )
                limit = min(len(ds), cfg.dataset.max_images or len(ds))
                if limit < n:
                    warn(f"the training set holds {limit} images; the loss uses {limit}, not --loss_num {n}")
                self._train[key] = torch.stack([ds[i] for i in range(min(n, limit))])
        return self._train[key]

    def held_out(self, cfg) -> torch.Tensor:
        key = cfg.dataset.resolution
        if key not in self._held:
            n = max(self.options.loss_num, self.options.stats_num)
            spec = self.held_out_spec or f"dataset:{cfg.dataset.name}:test"
            data_dir = self.data_dir or (
                getattr(cfg.dataset, "root", None) if self.held_out_spec is None else None
            )
            self._held[key] = _read(spec, n, cfg.dataset.resolution, data_dir)
        return self._held[key]

    def held_out_factors(self, cfg, count: int):
        """(factors (count, F), names) of the first ``count`` held-out images, or None (no labels)."""
        from ddpm_lens.analysis.image_sources import DATASET_PREFIX, parse_dataset_spec
        from ddpm_lens.data.factors import dataset_factors

        spec = self.held_out_spec or f"dataset:{cfg.dataset.name}:test"
        if not spec.startswith(DATASET_PREFIX):
            return None
        name, split = parse_dataset_spec(spec)
        data_dir = self.data_dir or getattr(cfg.dataset, "root", None)
        return dataset_factors(name, count=count, root=data_dir, split=split)


def _read(spec, n, resolution, data_dir) -> torch.Tensor:
    from ddpm_lens.analysis.image_sources import open_source

    source = open_source(spec, num=n, resolution=resolution, data_dir=data_dir)
    return source.images(range(source.n))


def _measure_one(info, options, images, measures, cache, device) -> None:
    from ddpm_lens.analysis.model_pair import layout
    from ddpm_lens.core.checkpoint import load_checkpoint
    from ddpm_lens.core.diffusion import GaussianDiffusion

    model, weights, cfg = load_checkpoint(
        info.ref.config, info.ref.path, use_ema=options.use_ema, device=device, memory_format=layout(device)
    )
    held = images.held_out(cfg)
    train = images.train(cfg)
    n = min(len(train), options.loss_num, len(held))
    ctx = CheckpointContext(
        model=model,
        diffusion=GaussianDiffusion.from_config(cfg.diffusion).to(device),
        config=cfg,
        train_images=train[:n],
        held_out_images=held[:n],
        stats_images=held[: options.stats_num],
        stats_factors=images.held_out_factors(cfg, len(held[: options.stats_num])),
        options=options,
        device=device,
    )
    rows = measure_checkpoint(ctx, measures)
    record = {"rows": rows, "weights": weights.which, "path": str(info.ref.path), "sha256": info.sha256}
    cache.put(info.key, record, ctx.kept)


# ---- rank 0: the long table, the measures across checkpoints, the decision rule -----------------


def x_axis(infos: Sequence[CheckpointInfo]) -> str:
    if all(i.step is not None for i in infos):
        return "step"
    if all(i.epoch is not None for i in infos):
        return "epoch"
    return "checkpoint order"


def assemble(arms, infos, cache, options, *, seconds, cached, opts, alpha, progress) -> Study:
    axis = x_axis(infos)
    order = {id(i): k + 1 for arm in arms for k, i in enumerate(x for x in infos if x.arm == arm.label)}
    entries = {}
    rows: list[dict] = []
    checkpoints = []
    for info in infos:
        hit = cache.get(info.key)
        if hit is None:
            raise UserError(
                f"the cache entry of {info.ref.path} is missing from {cache.folder}: rerun the study"
            )
        entries[info.key] = hit
        x = {"step": info.step, "epoch": info.epoch}.get(axis, order[id(info)])
        where = {"arm": info.arm, "checkpoint": info.ref.path.name, "step": info.step, "epoch": info.epoch}
        rows += [{**where, **r} for r in hit[0]["rows"]]
        checkpoints.append(
            {
                **where,
                "path": str(info.ref.path),
                "sha256": info.sha256,
                "x": x,
                "weights": hit[0]["weights"],
                "seconds": seconds.get(info.key),
                "cached": cached.get(info.key, True),
            }
        )
    by_arm = {arm.label: [(c, i) for c, i in zip(checkpoints, infos) if i.arm == arm.label] for arm in arms}
    tic = time.perf_counter()
    rows += _cka_rows(by_arm, entries, cache, progress=progress)
    comparisons, verdicts = _gap_comparisons(by_arm, entries, options, alpha=alpha)
    cross_s = time.perf_counter() - tic
    settings = {
        **opts,
        "x_axis": axis,
        "ordered_by": {arm.label: arm.ordered_by for arm in arms},
        "arms": [arm.label for arm in arms],
        "resolution": infos[0].resolution,
        "alpha": alpha,
        "claim": GAP_CLAIM,
        "cross_checkpoint_s": cross_s,
        "cache_dir": str(cache.folder),
    }
    return Study([{c: r.get(c) for c in COLUMNS} for r in rows], checkpoints, comparisons, verdicts, settings)


def _features(entry) -> dict[str, np.ndarray]:
    arrays = entry[1]
    return {k.removeprefix("cka/"): k for k in arrays.files if k.startswith("cka/")}


def _cka(entry_a, entry_b) -> list[tuple[str, str, dict]]:
    """(condition, layer, ImageCKA result) for every feature both entries kept."""
    keys_a, keys_b = _features(entry_a), _features(entry_b)
    out = []
    for name in keys_a:
        if name not in keys_b:
            continue
        X = entry_a[1][keys_a[name]].astype(np.float32)
        Y = entry_b[1][keys_b[name]].astype(np.float32)
        if X.shape[:2] != Y.shape[:2]:
            continue
        cka = ImageCKA(X.shape[2], Y.shape[2], images=len(X))
        cka.update(0, X, Y)
        cond, layer = name.split("/", 1)
        out.append((cond, layer, cka.result()))
    return out


def _cka_row(measure, cond, layer, result) -> dict:
    t = 0 if cond == "clean_t0" else int(cond.removeprefix("noisy_t"))
    return row(
        measure,
        value=result["cka_debiased"],
        layer=layer,
        t=t,
        ci_low=result["cka_ci_low"],
        ci_high=result["cka_ci_high"],
        n=result["n_images"],
        unit=UNIT_IMAGE,
    )


def _cka_rows(by_arm, entries, cache, *, progress) -> list[dict]:
    """``cka_to_final`` per arm x checkpoint, ``cka_to_first_arm`` per arm x equal x."""
    pairs = []
    for members in by_arm.values():
        final = members[-1][1].key
        pairs += [("cka_to_final", c, i.key, final) for c, i in members]
    first = next(iter(by_arm))
    base = {c["x"]: i.key for c, i in by_arm[first]}
    for members in list(by_arm.values())[1:]:
        pairs += [("cka_to_first_arm", c, i.key, base[c["x"]]) for c, i in members if c["x"] in base]
    rows = []
    for measure, c, a, b in tqdm(pairs, desc="CKA", unit="pair", disable=not progress or not pairs):
        where = {k: c[k] for k in ("arm", "checkpoint", "step", "epoch")}
        results = cache.get_pair("cka", a, b)
        if results is None:
            results = _cka(entries[a], entries[b])
            cache.put_pair("cka", a, b, results)
        rows += [{**where, **_cka_row(measure, cond, layer, r)} for cond, layer, r in results]
    return rows


def _gap_comparisons(by_arm, entries, options, *, alpha) -> tuple[list[dict], dict[str, str]]:
    """Per arm (not the first) x equal x x t <= low_t: the per-pair gap of the arm against the
    first arm's on the same image pairs (paired, Wilcoxon), Holm across every cell compared."""
    grid = list(options.loss_timesteps)
    low = [j for j, t in enumerate(grid) if t <= options.low_t]
    labels = list(by_arm)
    first = labels[0]
    base = {c["x"]: i.key for c, i in by_arm[first]}
    cells = []
    for label in labels[1:]:
        for c, i in by_arm[label]:
            if c["x"] not in base:
                continue
            ea, eb = entries[base[c["x"]]][1], entries[i.key][1]
            gap_a = ea["loss_held_out"] - ea["loss_train"]
            gap_b = eb["loss_held_out"] - eb["loss_train"]
            if gap_a.shape != gap_b.shape:
                continue
            for j in low:
                comp = rule.compare(gap_a[:, j], gap_b[:, j], paired=True)
                cells.append(
                    {
                        "arm": label,
                        "baseline": first,
                        "x": c["x"],
                        "t": grid[j],
                        **{
                            k: comp[k]
                            for k in (
                                "n",
                                "a_mean",
                                "b_mean",
                                "diff_mean",
                                "diff_ci_low",
                                "diff_ci_high",
                                "p_value",
                                "direction",
                                "effect_size",
                            )
                        },
                    }
                )
    for cell, adjusted in zip(cells, rule.holm([c["p_value"] for c in cells])):
        cell["p_adjusted"] = float(adjusted)
    verdicts = {}
    for label in labels[1:]:
        mine = [c for c in cells if c["arm"] == label]
        verdicts[label] = rule.judge(mine, alpha=alpha, claimed=-1)
    return cells, verdicts
