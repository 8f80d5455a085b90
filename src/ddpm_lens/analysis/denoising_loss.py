"""Each model's denoising loss at a grid of timesteps, on the statistics images.

What a timestep curriculum changes is how well the network denoises at each t (Kim et al.
2024 define task difficulty by per-t convergence), so this is the direct measure beside the
activation statistics. For each image i and timestep t the noise is drawn once,
``noise_for(seed, i, t)`` (the visualizer's noise for that sample and t), and every model
gets the same x0 and noise: the loss is the config's training loss
(:meth:`~ddpm_lens.core.diffusion.GaussianDiffusion.train_losses`, the eps-MSE for
ddpm-torch's models) under each model's own schedule. Each (image, t) costs one full forward
per model, so ``--loss_timesteps N`` multiplies the forward work by about N/2 compared with
the figures' early-stopped passes: it is off unless asked for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from ddpm_lens.analysis.inputs import noise_for, timestep_grid
from ddpm_lens.analysis.model_pair import MODEL_KEYS, layout
from ddpm_lens.analysis.plan import Plan
from ddpm_lens.analysis.timings import Timings
from ddpm_lens.core.diffusion import GaussianDiffusion

DEFAULT_COUNT = 20  # the bare --loss_timesteps


@torch.inference_mode()
def per_image_losses(
    plan: Plan, timesteps: Sequence[int], *, timings: Timings | None = None
) -> dict[str, np.ndarray]:
    """Model id -> (N, len(timesteps)) float64: each model's loss on each statistics image at each t.

    Each forward takes one or more images at all timesteps (``--batch_size`` inputs, at least
    one image's worth): no activations are kept, so a larger batch costs little memory.
    """
    opts = plan.options
    n_images = opts.stats_samples
    fmt = layout(plan.device)
    per_t = len(timesteps)
    out = {m.id: np.zeros((n_images, per_t)) for m in plan.models}
    diffusions = {m.id: GaussianDiffusion.from_config(m.config.diffusion) for m in plan.models}
    batch = max(opts.batch_size, per_t)  # one image's timesteps at least: fewer, larger passes
    images_per_batch = max(1, batch // per_t)
    for first in range(0, n_images, images_per_batch):
        tic = time.perf_counter()
        idx = range(first, min(first + images_per_batch, n_images))
        x0 = torch.stack([plan.images[i] for i in idx]).float()  # (n, 3, H, W)
        noise = torch.stack([noise_for(opts.seed, i, t, tuple(x0.shape[1:])) for i in idx for t in timesteps])
        x0 = x0.repeat_interleave(per_t, dim=0)  # (n*T', 3, H, W), image-major like the noise
        t = torch.tensor(list(timesteps) * len(idx), dtype=torch.long)
        for m in plan.models:
            model = m.model
            was_training = model.training
            model.eval()
            try:
                losses = []
                for start in range(0, len(x0), batch):
                    sl = slice(start, start + batch)
                    xb = x0[sl].to(plan.device).contiguous(memory_format=fmt)
                    nb = noise[sl].to(plan.device).contiguous(memory_format=fmt)
                    loss = diffusions[m.id].train_losses(model, xb, t[sl].to(plan.device), nb)
                    losses.append(loss.double().cpu().numpy())
            finally:
                model.train(was_training)
            out[m.id][first : first + len(idx)] = np.concatenate(losses).reshape(len(idx), per_t)
        if timings is not None:
            timings.add("loss", time.perf_counter() - tic)
    return out


def loss_table(
    losses: dict[str, np.ndarray], timesteps: Sequence[int], *, arms: dict[str, list[str]]
) -> list[dict]:
    """One row per t: ``t``, ``a_loss``, ``a_ci_low``, ``a_ci_high``, the same for ``b``,
    ``diff_mean``, ``diff_ci_low``, ``diff_ci_high`` (b - a), ``p_value``, ``p_adjusted``
    (Holm across the timesteps), ``n``, ``unit``.

    ``arms`` maps "baseline" / "curriculum" to their model ids, first checkpoint first. With
    one checkpoint per arm the unit is the image (paired by image: t-intervals, the signed-
    rank p); with two or more in each arm it is the checkpoint (each checkpoint's mean loss
    over the images; Welch's interval and p).
    """
    from ddpm_lens.analysis import decision_rule as rule  # scipy: only when there is a table to make

    a_ids, b_ids = (arms[k] for k in MODEL_KEYS)
    paired = min(len(a_ids), len(b_ids)) < 2
    rows = []
    for j, t in enumerate(timesteps):
        if paired:
            va, vb = losses[a_ids[0]][:, j], losses[b_ids[0]][:, j]
        else:
            va = np.array([losses[i][:, j].mean() for i in a_ids])
            vb = np.array([losses[i][:, j].mean() for i in b_ids])
        c = rule.compare(va, vb, paired=paired)
        rows.append(
            {
                "t": int(t),
                "a_loss": c["a_mean"],
                "a_ci_low": c["a_ci_low"],
                "a_ci_high": c["a_ci_high"],
                "b_loss": c["b_mean"],
                "b_ci_low": c["b_ci_low"],
                "b_ci_high": c["b_ci_high"],
                "diff_mean": c["diff_mean"],
                "diff_ci_low": c["diff_ci_low"],
                "diff_ci_high": c["diff_ci_high"],
                "p_value": c["p_value"],
                "n": c["n"],
                "unit": "image" if paired else "checkpoint",
            }
        )
    for row, adjusted in zip(rows, rule.holm([r["p_value"] for r in rows])):
        row["p_adjusted"] = float(adjusted)  # across the grid's timesteps: which t differ, together
    return rows


def loss_by_t(plan: Plan, *, timings: Timings | None = None) -> list[dict]:
    """:func:`loss_table` of every model's loss at ``--loss_timesteps`` timesteps (none when 0)."""
    count = plan.options.loss_timesteps
    if not count:
        return []
    timesteps = timestep_grid(plan.diffusion.timesteps, count)
    losses = per_image_losses(plan, timesteps, timings=timings)
    arms = {key: [m.id for m in plan.models if m.key == key] for key in MODEL_KEYS}
    return loss_table(losses, timesteps, arms=arms)
