"""Timestep samplers: which t each training step draws, uniform (baseline) or easy-to-hard.

Every sampler draws t uniformly from one contiguous range ``t_range = (lo, hi)`` (t in
[lo, hi)) that depends on its curriculum ``stage``; subclasses only say what that range is
(:meth:`TimestepSampler.t_range`, the one abstract method) and how the stage moves
(:meth:`TimestepSampler.update`, called once per optimizer step with that step's mean loss,
identical on every rank). Their state is plain ints and floats, so it rides in checkpoints
that are loaded with ``weights_only=True``::

    sampler = build_timestep_sampler(cfg.diffusion, cfg.curriculum, alphas_cumprod=alphas_bar)
    t = sampler.sample(batch, generator, device)  # (B,) int64 in [lo, hi)
    sampler.update(step, loss)

Kinds (:data:`SAMPLERS`):

- ``uniform``: t ~ U[0, T) always (stage 0).
- ``clusters`` (Kim et al., "Denoising Task Difficulty-based Curriculum for Training Diffusion
  Models", arXiv 2403.10348): [0, T) is cut into N contiguous clusters of equal width in t or
  in log-SNR, ordered easy-to-hard (``easy="high_t"``: the noisiest cluster first). Stage s
  draws from the union of the s+1 easiest clusters, which is again one contiguous range;
  stage N-1 already spans [0, T), and stage N marks the finished curriculum (uniform too).
  Pacing ``fixed`` advances every ``steps_per_stage`` steps; ``adaptive`` when an exponential
  moving average of the loss has not improved on its best by more than ``tolerance``
  (relative) for ``patience`` steps, or after ``max_steps_per_stage`` steps in the stage.
  Each new stage raises the loss (harder t), so the tracking restarts with every stage.
- ``tmax``: stage s draws t in [0, t_max[s]) (``mirror``: [T - t_max[s], T)); stage s
  begins at step ``boundaries[s-1]`` (steps count from 0).
- ``stages`` (the study's form, :mod:`ddpm_lens.train.stage_schedule`): the stage follows the
  epoch (:meth:`TimestepSampler.begin_epoch`); hard mode draws t uniformly from the stage's
  [int(t_min T), int(t_max T)); soft mode draws t = floor(s (T - 1)) with s ~ Beta(alpha, beta)
  (uniform on [0, T) for alpha = beta = 1, as the study's sampler does).
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ddpm_lens.core.config import CurriculumConfig, DiffusionConfig
from ddpm_lens.core.schedules import log_snr
from ddpm_lens.train.stage_schedule import hard_range, stage_of_epoch
from ddpm_lens.util.errors import UserError


class TimestepSampler(ABC):
    """Draws t uniformly from :attr:`t_range`; subclasses define the range and its stages."""

    kind = "uniform"
    reads_loss = False  # True when update() converts the loss to a float (a host sync on GPUs)

    def __init__(self, timesteps: int):
        self.timesteps = timesteps
        self.stage = 0

    @property
    @abstractmethod
    def t_range(self) -> tuple[int, int]:
        """(lo, hi): the current stage draws t in [lo, hi)."""

    def sample(self, batch: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        """(batch,) int64 timesteps, uniform over the current range; ``generator`` lives on ``device``."""
        lo, hi = self.t_range
        return torch.randint(lo, hi, (batch,), generator=generator, device=device)

    def update(self, step: int, loss: float | torch.Tensor) -> None:  # noqa: B027 - no stages: nothing to do
        """Record optimizer step ``step`` (0-based) and its mean loss; may move to the next stage."""

    def begin_epoch(self, epoch: int) -> None:  # noqa: B027 - only epoch-staged samplers use it
        """Called before the first step of 0-based ``epoch`` (also when resuming inside it)."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "stage": self.stage}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise UserError(
                f"the checkpoint's timestep sampler is '{state.get('kind')}' but the config asks for "
                f"'{self.kind}': resume with the config the run was started with"
            )
        self.stage = int(state["stage"])


class UniformSampler(TimestepSampler):
    """The baseline: t ~ U[0, T) at every step."""

    @property
    def t_range(self) -> tuple[int, int]:
        return 0, self.timesteps


def cluster_edges(alphas_cumprod: np.ndarray, num_clusters: int, spacing: str) -> list[int]:
    """t boundaries [0, b_1, ..., b_{N-1}, T] of N contiguous clusters, in increasing t.

    ``spacing="t"``: equal widths in t (rounded). ``"log_snr"``: equal widths in
    log(a_bar / (1 - a_bar)), which decreases in t; cluster k holds the t whose log-SNR lies
    in (e_{k+1}, e_k] of the evenly spaced e_0 = logsnr(0) > ... > e_N = logsnr(T-1).
    """
    T = len(alphas_cumprod)
    if spacing == "t":
        edges = np.rint(np.linspace(0, T, num_clusters + 1)).astype(int).tolist()
    elif spacing == "log_snr":
        lam = log_snr(np.asarray(alphas_cumprod, dtype=np.float64))  # (T,), decreasing
        levels = np.linspace(lam[0], lam[-1], num_clusters + 1)[1:-1]
        edges = [0, *(int(np.count_nonzero(lam > e)) for e in levels), T]
    else:
        raise UserError(f"unknown curriculum.spacing '{spacing}' (valid: t, log_snr)")
    empty = [k for k in range(num_clusters) if edges[k + 1] <= edges[k]]
    if empty:
        raise UserError(
            f"curriculum.num_clusters={num_clusters} with spacing '{spacing}' leaves cluster {empty[0]} "
            f"without timesteps: use fewer clusters"
        )
    return edges


class ClusterSampler(TimestepSampler):
    """Kim et al.'s curriculum: the s+1 easiest of N timestep clusters during stage s."""

    kind = "clusters"

    def __init__(
        self,
        *,
        edges: list[int],
        easy: str = "high_t",
        pacing: str = "fixed",
        steps_per_stage: int = 1000,
        patience: int = 200,
        tolerance: float = 0.01,
        smoothing: float = 0.98,
        max_steps_per_stage: int = 5000,
    ):
        super().__init__(edges[-1])
        if easy not in ("high_t", "low_t"):
            raise UserError(f"unknown curriculum.easy '{easy}' (valid: high_t, low_t)")
        if pacing not in ("fixed", "adaptive"):
            raise UserError(f"unknown curriculum.pacing '{pacing}' (valid: fixed, adaptive)")
        self.edges, self.easy, self.pacing = list(edges), easy, pacing
        self.num_clusters = len(edges) - 1
        self.steps_per_stage, self.max_steps_per_stage = steps_per_stage, max_steps_per_stage
        self.patience, self.tolerance, self.smoothing = patience, tolerance, smoothing
        self.reads_loss = pacing == "adaptive"
        self.stage_start = 0  # first step of the current stage
        self.smoothed: float | None = None  # EMA of the loss in this stage
        self.best = math.inf  # best smoothed loss in this stage
        self.best_step = 0  # step at which `best` was reached

    @property
    def t_range(self) -> tuple[int, int]:
        k = min(self.stage + 1, self.num_clusters)  # clusters in play
        if self.easy == "high_t":
            return self.edges[self.num_clusters - k], self.timesteps
        return 0, self.edges[k]

    def update(self, step: int, loss: float | torch.Tensor) -> None:
        if self.stage >= self.num_clusters:
            return
        done = step + 1 - self.stage_start  # steps taken in this stage, this one included
        if self.pacing == "fixed":
            if done >= self.steps_per_stage:
                self._advance(step + 1)
            return
        loss = float(loss)
        s = self.smoothing
        self.smoothed = loss if self.smoothed is None else s * self.smoothed + (1 - s) * loss
        if not math.isfinite(self.best) or self.smoothed < self.best - self.tolerance * abs(self.best):
            self.best, self.best_step = self.smoothed, step
        if step - self.best_step >= self.patience or done >= self.max_steps_per_stage:
            self._advance(step + 1)

    def _advance(self, next_step: int) -> None:
        self.stage += 1
        self.stage_start = self.best_step = next_step
        self.smoothed, self.best = None, math.inf

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "stage_start": self.stage_start,
            "smoothed": self.smoothed,
            "best": self.best,
            "best_step": self.best_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.stage_start, self.best_step = int(state["stage_start"]), int(state["best_step"])
        self.smoothed = None if state["smoothed"] is None else float(state["smoothed"])
        self.best = float(state["best"])


class TmaxSampler(TimestepSampler):
    """t in [0, t_max[s]) (or its mirror [T - t_max[s], T)) during stage s."""

    kind = "tmax"

    def __init__(self, *, timesteps: int, t_max: tuple[int, ...], boundaries: tuple[int, ...], mirror: bool):
        super().__init__(timesteps)
        self.t_max, self.boundaries, self.mirror = list(t_max), list(boundaries), mirror

    @property
    def t_range(self) -> tuple[int, int]:
        width = self.t_max[self.stage]
        return (self.timesteps - width, self.timesteps) if self.mirror else (0, width)

    def update(self, step: int, loss: float | torch.Tensor) -> None:
        self.stage = bisect.bisect_right(self.boundaries, step + 1)  # the stage of step + 1


class StageSampler(TimestepSampler):
    """The study's curriculum: the stage of each epoch, hard (uniform range) or soft (Beta) draws.

    ``stage`` is -1 (full range) until the first :meth:`begin_epoch`.
    """

    kind = "stages"

    def __init__(self, *, timesteps: int, curriculum: CurriculumConfig):
        super().__init__(timesteps)
        self.stages, self.soft = curriculum.stages, curriculum.mode == "soft"
        self.stage = -1
        self._probs: dict[tuple[int, str], torch.Tensor] = {}  # (stage, device) -> P(t), soft mode

    @property
    def t_range(self) -> tuple[int, int]:
        if self.stage < 0 or self.soft:
            return 0, self.timesteps
        s = self.stages[self.stage]
        return hard_range(s.t_min, s.t_max, self.timesteps)

    def begin_epoch(self, epoch: int) -> None:
        self.stage = stage_of_epoch([s.epochs for s in self.stages], epoch)

    def sample(self, batch: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        s = self.stages[self.stage] if self.stage >= 0 else None
        if not self.soft or s is None or (s.alpha == 1.0 and s.beta == 1.0):
            return super().sample(batch, generator, device)  # uniform on t_range
        key = (self.stage, str(device))
        if key not in self._probs:
            self._probs[key] = torch.as_tensor(
                floored_beta_probs(s.alpha, s.beta, self.timesteps), dtype=torch.float32, device=device
            )
        return torch.multinomial(self._probs[key], batch, replacement=True, generator=generator)


def floored_beta_probs(alpha: float, beta: float, timesteps: int) -> np.ndarray:
    """(T,) P(t = k) for t = floor(s (T - 1)), s ~ Beta(alpha, beta): the Beta mass of
    [k / (T - 1), (k + 1) / (T - 1)) for k < T - 1, and 0 for T - 1 (s = 1 has probability 0)."""
    from scipy.stats import beta as beta_dist

    cdf = beta_dist.cdf(np.arange(timesteps) / (timesteps - 1), alpha, beta)  # at k / (T - 1)
    return np.append(np.diff(cdf), 0.0)


def _uniform(
    diffusion: DiffusionConfig, curriculum: CurriculumConfig | None, alphas_cumprod
) -> UniformSampler:
    return UniformSampler(diffusion.timesteps)


def _clusters(diffusion: DiffusionConfig, c: CurriculumConfig, alphas_cumprod) -> ClusterSampler:
    return ClusterSampler(
        edges=cluster_edges(alphas_cumprod, c.num_clusters, c.spacing),
        easy=c.easy,
        pacing=c.pacing,
        steps_per_stage=c.steps_per_stage,
        patience=c.patience,
        tolerance=c.tolerance,
        smoothing=c.smoothing,
        max_steps_per_stage=c.max_steps_per_stage,
    )


def _tmax(diffusion: DiffusionConfig, c: CurriculumConfig, alphas_cumprod) -> TmaxSampler:
    return TmaxSampler(timesteps=diffusion.timesteps, t_max=c.t_max, boundaries=c.boundaries, mirror=c.mirror)


def _stages(diffusion: DiffusionConfig, c: CurriculumConfig, alphas_cumprod) -> StageSampler:
    return StageSampler(timesteps=diffusion.timesteps, curriculum=c)


# name -> builder(diffusion_cfg, curriculum_cfg, alphas_cumprod)
SAMPLERS: dict[str, Callable[..., TimestepSampler]] = {
    "uniform": _uniform,
    "clusters": _clusters,
    "tmax": _tmax,
    "stages": _stages,
}


def build_timestep_sampler(
    diffusion_cfg: DiffusionConfig,
    curriculum_cfg: CurriculumConfig | None,
    *,
    alphas_cumprod: np.ndarray,
) -> TimestepSampler:
    """``uniform`` without a curriculum section, else the curriculum's ``kind``.

    ``alphas_cumprod`` (T,) is the schedule's a_bar, used by log-SNR cluster spacing.
    """
    name = "uniform" if curriculum_cfg is None else curriculum_cfg.kind
    if name not in SAMPLERS:
        raise UserError(f"unknown timestep sampler '{name}' (valid: {', '.join(SAMPLERS)})")
    if len(alphas_cumprod) != diffusion_cfg.timesteps:
        raise ValueError(f"alphas_cumprod has {len(alphas_cumprod)} entries for T={diffusion_cfg.timesteps}")
    return SAMPLERS[name](diffusion_cfg, curriculum_cfg, alphas_cumprod)
