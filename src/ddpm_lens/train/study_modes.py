"""What a stage of the study's curriculum sets besides the timesteps: the CS mask and the CR strength.

The trainer calls :meth:`StudyModes.enter_stage` when an epoch starts in a new stage,
:meth:`~StudyModes.penalty` in each micro-step's loss and :meth:`~StudyModes.after_backward`
once per optimizer step before clipping. Everything here is a function of the current stage
and the model's buffers, so a resumed run (stage, mask and accumulator restored from the
checkpoint) continues exactly; unlike the study's trainer, resuming inside a stage keeps its
timestep range and lambda.

As in the study's ``train_curriculum.py``: with sparsity enabled the model is the CS model and
the penalty is not applied even if regularization is enabled too (its SparseUNet has none);
without the staged curriculum CS keeps its initial mask and CR's lambda stays 0.

On a U-ViT the modes are those of the study's ``U-VIT-CS`` ``train_c.py``: CS zeroes the patch
tokens' embedding dimensions after ``int(D (1 - s))`` during training (s: the stage's
``sparsity``, 0 where a stage gives none; a fixed prefix, never regrown, off at evaluation),
set on the model before every step (:meth:`StudyModes.before_step`); CR adds
``lambda * sum_c ||W_c||_2`` over the output channels of ``patch_embed.proj`` to the batch-mean
loss, not divided by the batch (lambda: the stage's ``lambda``, its ``lambda_reg``, else 0).
Both may be on at once, as there.
"""

from __future__ import annotations

import torch

from ddpm_lens.core.config import Config
from ddpm_lens.core.sparse_unet import SparseUNet
from ddpm_lens.core.unet import UNet
from ddpm_lens.core.uvit import UViT
from ddpm_lens.train.channel_regrowth import accumulate_mask_gradients, regrow_channels
from ddpm_lens.train.group_l1 import bottleneck_adjacent_convs, group_l1
from ddpm_lens.train.stage_schedule import stage_target
from ddpm_lens.util.errors import warn

EPOCH_LOG_FIELDS = ("epoch", "stage", "stage_name", "t_lo", "t_hi", "active_channels", "regrown", "lambda")


class StudyModes:
    """The CS / CR side of a run of ``cfg`` on ``model`` (either may be off; then it does nothing)."""

    def __init__(self, cfg: Config, model: UNet | UViT, *, main: bool = True):
        self.cfg = cfg
        c = cfg.curriculum
        self.stages = c.stages if c is not None and c.kind == "stages" else ()
        self.sparse = model if isinstance(model, SparseUNet) else None
        self.uvit = model if isinstance(model, UViT) else None
        self.token_cs = self.uvit is not None and cfg.sparsity is not None
        self.reg = cfg.regularization if self.sparse is None else None
        self.divide_penalty = self.uvit is None  # the study's UNet CR divides by the batch, its U-ViT CR not
        if self.uvit is not None:
            self._weights = [self.uvit.patch_embed.proj.weight] if self.reg else []
            return
        if cfg.regularization is not None and self.sparse is not None and main:
            warn(
                f"config {cfg.source} enables both sparsity and regularization: as in the study's trainer, "
                "the CS model is trained without the group-L1 penalty"
            )
        self._weights = [m.weight for _, m in bottleneck_adjacent_convs(model)] if self.reg else []

    @property
    def active(self) -> bool:
        """True with the staged curriculum, CS or CR: the run keeps a per-epoch log."""
        return bool(self.stages) or self.sparse is not None or self.reg is not None or self.token_cs

    def lam(self, stage: int) -> float:
        """The stage's CR strength (0 without CR or before the first stage)."""
        if self.reg is None or not 0 <= stage < len(self.stages):
            return 0.0
        s = self.stages[stage]
        if self.uvit is not None:
            return s.lam or 0.0
        return stage_target(s.lam, stage, t_min=s.t_min, initial=self.reg.lambda_max)

    def token_sparsity(self, stage: int) -> float:
        """U-ViT CS: the share of embedding dims masked in ``stage`` (0 without CS or stages)."""
        if not self.token_cs or not 0 <= stage < len(self.stages):
            return 0.0
        return self.stages[stage].sparsity or 0.0

    def active_dims(self, stage: int) -> int:
        d = self.uvit.embed_dim
        s = self.token_sparsity(stage)
        return d if s <= 0 else max(1, min(int(d * (1.0 - s)), d))

    def before_step(self, stage: int) -> None:
        """U-ViT CS: set the model's token mask for this step's stage (a function of the stage only)."""
        if self.token_cs:
            self.uvit.token_sparsity = self.token_sparsity(stage)

    def target_sparsity(self, stage: int) -> float | None:
        """The stage's CS target (None without CS or before the first stage)."""
        if self.sparse is None or not 0 <= stage < len(self.stages):
            return None
        s = self.stages[stage]
        return stage_target(s.sparsity, stage, t_min=s.t_min, initial=self.cfg.sparsity.initial_sparsity)

    def penalty(self, stage: int) -> torch.Tensor | None:
        """``lambda * sum_c ||W_c||_2`` (0-d, with grad), or None when lambda is 0."""
        lam = self.lam(stage)
        return lam * group_l1(self._weights) if lam > 0 else None

    def after_backward(self) -> None:
        if self.sparse is not None and self.cfg.sparsity.regrowth_method == "gradient":
            accumulate_mask_gradients(self.sparse)

    def enter_stage(self, stage: int, generator: torch.Generator) -> int:
        """Regrow the mask to the new stage's target; returns how many channels became active."""
        target = self.target_sparsity(stage)
        if target is None:
            return 0
        method = self.cfg.sparsity.regrowth_method
        return regrow_channels(self.sparse, target, stage, method=method, generator=generator)

    def epoch_row(self, epoch: int, stage: int, t_range: tuple[int, int], regrown: int) -> tuple:
        """One row of ``epoch_log.csv`` (EPOCH_LOG_FIELDS) for 1-based ``epoch``; stage -1: no stages."""
        stage = stage if self.stages else -1
        name = self.cfg.curriculum.stage_name(stage) if stage >= 0 else ""
        active = self.sparse.active_channels if self.sparse is not None else ""
        if self.token_cs:
            active = self.active_dims(stage)
        return (epoch, stage, name, *t_range, active, regrown, self.lam(stage))

    def describe(self, row: tuple, total_epochs: int) -> str:
        """The row as the line printed at the start of an epoch."""
        epoch, stage, name, lo, hi, active, regrown, lam = row
        parts = [f"epoch {epoch}/{total_epochs}"]
        if stage >= 0:
            s = self.stages[stage]
            soft = self.cfg.curriculum.mode == "soft" and (s.alpha, s.beta) != (1.0, 1.0)
            draws = f"t ~ floor(Beta({s.alpha:g}, {s.beta:g}) (T-1))" if soft else f"t in [{lo}, {hi})"
            parts.append(f"stage {stage + 1}/{len(self.stages)} {name}: {draws}")
        if self.sparse is not None:
            parts.append(f"active channels {active}/{self.sparse.bottleneck_channels} (+{regrown})")
        if self.token_cs:
            parts.append(f"active embedding dims {active}/{self.uvit.embed_dim}")
        if self.reg is not None:
            parts.append(f"lambda {lam:g}")
        return "; ".join(parts)
