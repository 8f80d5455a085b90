"""The visualizer's ``--fid N``: both models' samples scored against the same reference.

Each model draws N DDIM samples (50 steps, eta 0, image i from the noise of (seed, i), so both
models start from the same noise); the reference is the first N images of the run's dataset
split (the one the visualizer's inputs come from) at the model's resolution, its features cached.
"""

from __future__ import annotations

import os

from ddpm_lens.analysis.image_sources import DATASET_PREFIX, open_source, sampled_source
from ddpm_lens.analysis.plan import Plan
from ddpm_lens.analysis.quality_scores import compare_feature_sets, source_features
from ddpm_lens.core.diffusion import GaussianDiffusion

FID_STEPS = 50
SCORES = ("fid", "kid_mean", "kid_std", "precision", "recall")


def score_pair_models(
    plan: Plan, num: int, *, network, cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> dict:
    """{"n", "reference", "sampler", "network", "models": [{key, label, fid, kid_mean, ...}]}."""
    opts = plan.options
    base = plan.models[0].config
    dataset = opts.dataset or base.dataset.name
    spec = f"{DATASET_PREFIX}{dataset}:{opts.split}"
    references, models = {}, []
    for m in plan.models:
        res = m.config.dataset.resolution
        if res not in references:
            source = open_source(spec, num=num, resolution=res, data_dir=opts.data_dir or base.dataset.root)
            references[res] = source_features(
                source, network, batch_size=opts.batch_size, cache_dir=cache_dir, progress=progress
            )
        diffusion = GaussianDiffusion.from_config(m.config.diffusion).to(plan.device)
        samples = sampled_source(
            m.model,
            diffusion,
            m.config,
            num=num,
            steps=FID_STEPS,
            seed=opts.seed,
            device=plan.device,
            spec=m.ckpt,
        )
        fake = source_features(samples, network, batch_size=opts.batch_size, progress=progress)
        scores = compare_feature_sets(fake, references[res], seed=opts.seed)
        models.append({"key": m.key, "label": m.label, **{k: scores[k] for k in SCORES}, "n": fake.n})
    return {
        "n": num,
        "reference": spec,
        "reference_n": sorted({r.n for r in references.values()}),
        "sampler": f"DDIM, {FID_STEPS} steps, eta 0, seed {opts.seed}",
        "network": network.describe(),
        "models": models,
    }
