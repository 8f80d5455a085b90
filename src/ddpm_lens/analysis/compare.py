"""``compare_features``: both models' activations and statistics on the same inputs, in memory.

For notebooks; the CLI (``ddpm-lens visualize``) runs the same stream and writes figures and
run files from it (:mod:`ddpm_lens.output.visualization_run`)::

    cmp = compare_features(baseline_ckpt="base.pt", curriculum_ckpt="cur.pt",
                           config_baseline="configs/celeba.json", config_curriculum="configs/celeba64_c.json",
                           num_samples=5, timesteps=(100, 500, 900))
    cmp.activations["curriculum"]["encoder_level_2"].shape   # (5, 4, 256, 8, 8): sample, condition
    cmp.rows[0]                                               # one statistics row
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ddpm_lens.analysis.denoising_loss import loss_by_t
from ddpm_lens.analysis.inputs import Condition
from ddpm_lens.analysis.model_pair import MODEL_KEYS
from ddpm_lens.analysis.options import VisualizeOptions, visualize_options
from ddpm_lens.analysis.plan import Plan, build_plan
from ddpm_lens.analysis.stream import Chunk, run_stream
from ddpm_lens.analysis.timings import Timings


def compare_features(options: VisualizeOptions | None = None, /, **fields: Any) -> Comparison:
    """Both models' activations and statistics on the same inputs, in memory.

    Takes a :class:`~ddpm_lens.analysis.options.VisualizeOptions` and/or its fields as keyword
    arguments (``baseline_ckpt``, ``curriculum_ckpt``, ``config_baseline``, ``num_samples``,
    ``timesteps``, ``layers``, ...; the same names and defaults as ``ddpm-lens visualize``'s
    flags). ``images`` ((N, 3, H, W) in [-1, 1], or image file paths, cropped and resized to
    the baseline config's resolution) overrides the dataset; otherwise the first
    ``num_samples`` images of ``split`` of ``dataset`` (default: the baseline config's).
    Figure-only fields (``output_dir``, ``norm``, ``report``) are ignored here.
    """
    fields.setdefault("device", "cpu")
    fields.setdefault("progress", False)
    fields.setdefault("prefetch", False)
    plan = build_plan(visualize_options(options, **fields))
    chunks: list[Chunk] = []
    result = run_stream(plan, timings=Timings(), sink=chunks.append, keep_activations=True)
    return Comparison.from_chunks(plan, chunks, result.cka, loss_by_t(plan))


@dataclass
class Comparison:
    """What :func:`compare_features` returns; arrays are indexed [sample, condition, ...]."""

    labels: tuple[str, str]
    conditions: list[Condition]
    layers: list[str]
    images: torch.Tensor  # (N, 3, H, W) clean inputs in [-1, 1]
    inputs: torch.Tensor  # (N, S, 3, H, W) what both models received
    activations: dict[str, dict[str, np.ndarray]]  # key -> layer -> (N, S, C, H, W)
    shown: dict[str, dict[str, np.ndarray]]  # key -> layer -> (N, S, K) shown channel indices
    rows: list[dict]
    cka: list[dict]
    models: list[dict]
    loss_by_t: list[dict]  # with loss_timesteps: each model's denoising loss per t (else empty)

    @classmethod
    def from_chunks(cls, plan: Plan, chunks: list[Chunk], cka: list[dict], loss: list[dict]) -> Comparison:
        def gather(field: str) -> dict[str, dict[str, np.ndarray]]:
            return {
                k: {l: np.concatenate([getattr(c.layers[k][l], field) for c in chunks]) for l in plan.layers}
                for k in MODEL_KEYS
            }

        return cls(
            labels=tuple(m.label for m in plan.pair),
            conditions=plan.conditions,
            layers=plan.layers,
            images=torch.cat([c.x0 for c in chunks]),
            inputs=torch.cat([c.inputs for c in chunks]),
            activations=gather("acts"),
            shown=gather("shown"),
            rows=[r for c in chunks for r in c.rows],
            cka=cka,
            models=[m.describe() for m in plan.models],
            loss_by_t=loss,
        )
