"""Features of an image source (batched, split over torchrun's processes, datasets cached) and the
sample-quality scores of two feature sets.

::

    net = InceptionFeatures(device)
    a = source_features(open_source("ckpt.pt", num=1000), net, batch_size=50)
    b = source_features(open_source("dataset:celeba:test", num=1000, resolution=64, data_dir=D), net,
                        batch_size=50, cache_dir=default_cache_dir())
    scores = compare_feature_sets(a, b)   # {"fid", "kid_mean", "kid_std", "precision", "recall", ...}

Under torchrun (``dist`` has ``rank`` and ``world_size``, the process group joined), process r
takes the r-th contiguous share of the indices, and the features are gathered on every
process in index order, so the numbers equal a single process's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ddpm_lens.analysis import reference_cache
from ddpm_lens.analysis.image_sources import ImageSource
from ddpm_lens.analysis.rank_split import from_rank0, gather, my_share, world
from ddpm_lens.analysis.sample_quality import (
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    PR_NEIGHBOURS,
    feature_statistics,
    frechet_distance,
    kernel_inception_distance,
    precision_recall,
)
from ddpm_lens.util.errors import UserError


@dataclass
class FeatureSet:
    features: np.ndarray  # (n, d) float32
    mu: np.ndarray  # (d,) float64
    sigma: np.ndarray  # (d, d) float64
    source: dict = field(default_factory=dict)
    images_s: float = 0.0  # reading or sampling the images
    features_s: float = 0.0  # the feature network
    cached: bool = False

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


def source_features(
    source: ImageSource,
    network,
    *,
    batch_size: int = 50,
    cache_dir: str | os.PathLike | None = None,
    dist=None,
    progress: bool = True,
) -> FeatureSet:
    """The features of every image of ``source``; a dataset's come from / go to ``cache_dir``."""
    if batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {batch_size}")
    key = None
    if source.cache_key is not None and cache_dir is not None:
        key = {**source.cache_key, "network": network.describe()}
        cached = from_rank0(reference_cache.load_cached(cache_dir, key), dist)
        if cached is not None:
            return FeatureSet(
                cached["features"], cached["mu"], cached["sigma"], source.description, cached=True
            )
    mine = my_share(source.n, dist)
    chunks, images_s, features_s = [], 0.0, 0.0
    verb = "sampling + features" if source.kind == "checkpoint" else "features"
    bar = tqdm(
        total=len(mine), desc=f"{verb}: {_short(source.spec)}", unit="img", disable=not progress, leave=False
    )
    for start in range(0, len(mine), batch_size):
        tic = time.perf_counter()
        x = source.images(mine[start : start + batch_size].tolist())
        toc = time.perf_counter()
        chunks.append(network(x))
        images_s += toc - tic
        features_s += time.perf_counter() - toc
        bar.update(x.shape[0])
    bar.close()
    features = np.concatenate(chunks) if chunks else np.zeros((0, network.dims), np.float32)
    shares = gather((features, images_s, features_s), dist)  # in rank order = index order
    features = np.concatenate([f for f, _, _ in shares])
    images_s, features_s = max(s[1] for s in shares), max(s[2] for s in shares)  # the slowest process
    mu, sigma = feature_statistics(features)
    if key is not None and world(dist)[0] == 0:
        reference_cache.store(cache_dir, key, features=features, mu=mu, sigma=sigma)
    return FeatureSet(features, mu, sigma, source.description, images_s=images_s, features_s=features_s)


def compare_feature_sets(
    a: FeatureSet,
    b: FeatureSet,
    *,
    kid_subsets: int = KID_SUBSETS,
    kid_subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> dict:
    """FID, KID and precision/recall of ``a`` against the reference ``b`` (precision: share of
    a's images inside b's manifold; recall: share of b's inside a's)."""
    tic = time.perf_counter()
    fid = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    kid_mean, kid_std = kernel_inception_distance(
        a.features, b.features, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
    )
    precision, recall = precision_recall(b.features, a.features, k=PR_NEIGHBOURS)
    return {
        "fid": fid,
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "kid_subsets": kid_subsets,
        "kid_subset_size": min(a.n, b.n, kid_subset_size),
        "precision": precision,
        "recall": recall,
        "pr_k": PR_NEIGHBOURS,
        "n_a": a.n,
        "n_b": b.n,
        "metrics_s": time.perf_counter() - tic,
    }


def _short(spec: str, width: int = 40) -> str:
    return spec if len(spec) <= width else "…" + spec[-(width - 1) :]
