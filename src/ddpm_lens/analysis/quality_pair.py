"""FID, KID and precision/recall between two image sources, as ``ddpm-lens fid A B`` reports them.

Either side is a folder, a checkpoint or ``dataset:NAME[:SPLIT]``
(:mod:`ddpm_lens.analysis.image_sources`). A dataset takes the resolution of the other side
(its checkpoint's config, or its folder's image size), else ``resolution``, else 64. B is the
reference: precision is the share of A's images inside B's manifold.
"""

from __future__ import annotations

import os
import time

from ddpm_lens.analysis.image_sources import DEFAULT_STEPS, open_source, source_kind
from ddpm_lens.analysis.quality_scores import compare_feature_sets, source_features
from ddpm_lens.analysis.rank_split import world

DEFAULT_RESOLUTION = 64


def score_pair(
    spec_a: str,
    spec_b: str,
    *,
    num: int,
    network,
    batch_size: int = 50,
    resolution: int | None = None,
    data_dir: str | os.PathLike | None = None,
    configs: tuple[str | None, str | None] = (None, None),
    use_ema: bool = True,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    device="cpu",
    cache_dir: str | os.PathLike | None = None,
    dist=None,
    progress: bool = True,
) -> dict:
    """The scores of A against B, with both sources, the network, preprocessing and timings
    (on rank 0; other torchrun processes help with the features and get ``{}``)."""
    tic = time.perf_counter()
    specs = (spec_a, spec_b)
    kinds = [source_kind(s) for s in specs]
    common = dict(num=num, data_dir=data_dir, use_ema=use_ema, steps=steps, seed=seed, device=device)
    sources = [None, None]
    for i in sorted(range(2), key=lambda i: kinds[i] == "dataset"):  # the datasets last
        own = [s.resolution for s in sources if s is not None]
        res = resolution or (own[0] if own else DEFAULT_RESOLUTION)
        sources[i] = open_source(
            specs[i], resolution=res if kinds[i] == "dataset" else None, config=configs[i], **common
        )
    sets = [
        source_features(s, network, batch_size=batch_size, cache_dir=cache_dir, dist=dist, progress=progress)
        for s in sources
    ]
    if world(dist)[0] != 0:
        return {}  # the scores are rank 0's to compute and report
    scores = compare_feature_sets(*sets, seed=seed)
    described = network.describe()
    timings = {"metrics": scores.pop("metrics_s")}
    for side, fs in zip("ab", sets):
        timings[f"{side}_images"] = fs.images_s
        timings[f"{side}_features"] = fs.features_s
    timings["total"] = time.perf_counter() - tic
    return {
        **scores,
        "a": {**sets[0].source, "spec": spec_a, "cached": sets[0].cached},
        "b": {**sets[1].source, "spec": spec_b, "cached": sets[1].cached},
        "weights_sha1": described.get("weights_sha1"),
        "preprocessing": {
            k: described[k] for k in ("quantisation", "resize", "input_range") if k in described
        },
        "network": described,
        "timings_s": timings,
    }
