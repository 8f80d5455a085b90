"""Sample quality across training: every checkpoint of each run scored against one reference.

Per checkpoint: ``num`` DDIM samples (image i from the noise of (seed, i), the same for every
checkpoint), their FID, KID and precision/recall against the reference's features (computed
once per resolution, datasets cached), and the held-out denoising loss — the training MSE on
the first ``loss_num`` reference images at each timestep of a grid, with noise fixed by (seed,
image, t) so that checkpoints are compared on the same draws::

    runs = find_runs(["chkpts/celeba", "chkpts/celeba64_c"])
    result = evaluate_runs(runs, reference="dataset:celeba:test", data_dir=D, num=1000,
                           network=InceptionFeatures("cuda"), device="cuda")
    result.rows[0]   # {"run", "checkpoint", "epoch", "step", "fid", ..., "loss_t0", ...}

Under torchrun sampling, features and losses are split over the processes and gathered;
the rows exist on rank 0 (other ranks return none).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ddpm_lens.analysis.image_sources import DEFAULT_STEPS, open_source, sampled_source
from ddpm_lens.analysis.inputs import HELD_OUT_STREAM, noise_for, timestep_grid
from ddpm_lens.analysis.quality_scores import FeatureSet, compare_feature_sets, source_features
from ddpm_lens.analysis.rank_split import gather, my_share, world
from ddpm_lens.analysis.training_runs import TrainingRun
from ddpm_lens.util.errors import UserError

LOSS_POINTS = 10  # timesteps in the default loss grid
METRICS = ("fid", "kid_mean", "kid_std", "precision", "recall")


@dataclass
class Evaluation:
    rows: list[dict]  # one per checkpoint (rank 0)
    loss_rows: list[dict]  # one per checkpoint x t: run, checkpoint, epoch, step, t, loss
    reference: dict  # the reference source, per resolution
    settings: dict = field(default_factory=dict)


def evaluate_runs(
    runs: Sequence[TrainingRun],
    *,
    reference: str,
    num: int,
    network,
    data_dir: str | os.PathLike | None = None,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    batch_size: int = 50,
    loss_timesteps: int = LOSS_POINTS,
    loss_num: int = 64,
    use_ema: bool = True,
    device="cpu",
    cache_dir: str | os.PathLike | None = None,
    dist=None,
    progress: bool = True,
) -> Evaluation:
    from ddpm_lens.analysis.model_pair import layout
    from ddpm_lens.core.checkpoint import load_checkpoint
    from ddpm_lens.core.diffusion import GaussianDiffusion

    if loss_num < 1:
        raise UserError(f"--loss_num must be at least 1, got {loss_num}")
    if loss_timesteps < 1:
        raise UserError(f"--loss_timesteps must be at least 1 (a number of timesteps), got {loss_timesteps}")
    device = torch.device(device)
    main = world(dist)[0] == 0
    references: dict[int, tuple] = {}  # resolution -> (FeatureSet, held-out images)
    rows, loss_rows = [], []
    todo = [(run, ckpt) for run in runs for ckpt in run.checkpoints]
    bar = tqdm(todo, desc="checkpoints", unit="ckpt", disable=not progress)
    for run, ckpt in bar:
        bar.set_postfix_str(f"{run.name}/{ckpt.name}", refresh=False)
        tic = time.perf_counter()
        model, weights, cfg = load_checkpoint(
            run.config, ckpt, use_ema=use_ema, device=device, memory_format=layout(device)
        )
        diffusion = GaussianDiffusion.from_config(cfg.diffusion).to(device)
        res = cfg.dataset.resolution
        if res not in references:
            references[res] = _reference(
                reference, res, num=num, loss_num=loss_num, network=network, data_dir=data_dir,
                batch_size=batch_size, cache_dir=cache_dir, dist=dist, progress=progress,
            )  # fmt: skip
        ref_set, held_out = references[res]
        samples = sampled_source(
            model, diffusion, cfg, num=num, steps=steps, seed=seed, device=device, spec=str(ckpt)
        )
        fake = source_features(samples, network, batch_size=batch_size, dist=dist, progress=progress)
        grid = timestep_grid(cfg.diffusion.timesteps, loss_timesteps)  # as visualize's --loss_timesteps
        toc = time.perf_counter()
        losses = held_out_loss(model, diffusion, held_out, grid, seed=seed, batch_size=batch_size, dist=dist)
        loss_s = time.perf_counter() - toc
        if not main:
            continue
        scores = compare_feature_sets(fake, ref_set, seed=seed)
        step = _step_of(ckpt)
        row = {
            "run": run.name,
            "checkpoint": ckpt.name,
            "epoch": weights.epoch,
            "step": step,
            "weights": weights.which,
            "n": fake.n,
            "n_reference": ref_set.n,
            **{m: scores[m] for m in METRICS},
            "loss_mean": float(np.mean(list(losses.values()))),
            **{f"loss_t{t}": v for t, v in losses.items()},
            "sampling_s": fake.images_s,
            "features_s": fake.features_s,
            "metrics_s": scores["metrics_s"],
            "loss_s": loss_s,
            "total_s": time.perf_counter() - tic,
        }
        rows.append(row)
        loss_rows += [
            {
                "run": run.name,
                "checkpoint": ckpt.name,
                "epoch": weights.epoch,
                "step": step,
                "t": t,
                "loss": v,
            }
            for t, v in losses.items()
        ]
    bar.close()
    return Evaluation(
        rows,
        loss_rows,
        reference={str(res): fs.source for res, (fs, _) in references.items()},
        settings={
            "reference": reference,
            "num": num,
            "steps": steps,
            "sampler": f"DDIM, {steps} steps, eta 0",
            "seed": seed,
            "loss_num": loss_num,
            "loss_timesteps": loss_timesteps,
            "use_ema": use_ema,
            "network": network.describe(),
            "processes": world(dist)[1],
            "device": str(device),
        },
    )


def held_out_loss(
    model, diffusion, images: torch.Tensor, timesteps: Sequence[int], *, seed: int, batch_size: int, dist=None
) -> dict[int, float]:
    """t -> the mean training loss (MSE of the model's target) over ``images`` (N, 3, R, R) noised
    to t, the noise of image i at t fixed by (seed, i, t)."""
    shape = tuple(images.shape[1:])
    mine = my_share(images.shape[0], dist)
    device = next(model.parameters()).device
    sums = {}
    with torch.no_grad():
        for t in timesteps:
            total = 0.0
            for start in range(0, len(mine), batch_size):
                idx = mine[start : start + batch_size].tolist()
                x0 = images[idx].to(device)
                noise = torch.stack([noise_for(seed, i, t, shape, stream=HELD_OUT_STREAM) for i in idx]).to(
                    device
                )
                t_vec = torch.full((len(idx),), int(t), dtype=torch.long, device=device)
                total += float(diffusion.train_losses(model, x0, t_vec, noise).sum())
            sums[int(t)] = total
    shares = gather(sums, dist)
    return {t: sum(s[t] for s in shares) / images.shape[0] for t in sums}


def _reference(spec, res, *, num, loss_num, network, data_dir, batch_size, cache_dir, dist, progress):
    source = open_source(spec, num=num, resolution=res, data_dir=data_dir)
    features: FeatureSet = source_features(
        source, network, batch_size=batch_size, cache_dir=cache_dir, dist=dist, progress=progress
    )
    held_out = source.images(range(min(loss_num, source.n)))  # (L, 3, R, R)
    return features, held_out


def _step_of(path) -> int | None:
    """The optimizer step a ddpm-lens checkpoint records, or a U-ViT folder's name says, if any."""
    from ddpm_lens.core.checkpoint import read_checkpoint
    from ddpm_lens.core.uvit_checkpoint import is_uvit_folder, uvit_step

    if is_uvit_folder(path):
        return uvit_step(path)
    if str(path).endswith(".safetensors"):
        return None
    obj = read_checkpoint(path)
    step = obj.get("step") if isinstance(obj, dict) else None
    return step if isinstance(step, int) else None
