"""The study's epoch-staged curriculum as pure functions (sun-messi/curriculum-sparse-reg).

Stages are walked in order with a cumulative epoch count: stage s trains the epochs
``[E_0 + ... + E_{s-1}, E_0 + ... + E_s)``, and every epoch after the last stays in the last
stage. With the curriculum enabled the run lasts ``E_0 + ... + E_{S-1}`` epochs, whatever
``train.epochs`` says. In hard mode stage s draws t uniformly from :func:`hard_range`; the CS
target sparsity and the CR strength of a stage follow :func:`stage_target`::

    stage_of_epoch([1, 1, 12], 5)                 # -> 2
    hard_range(0.07, 1.0, 1000)                   # -> (70, 1000)
    stage_target(None, 3, t_min=0.1, initial=0.8) # -> 0.8 * (1 - sqrt(0.5)) = 0.234
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ddpm_lens.core.config import Config

SPARSE_T_MIN = 0.2  # stages starting at or above this fraction of T keep the initial value


def stage_of_epoch(stage_epochs: Sequence[int], epoch: int) -> int:
    """The 0-based stage of 0-based ``epoch``; the last stage after the end, -1 without stages."""
    if not stage_epochs:
        return -1
    end = 0
    for index, epochs in enumerate(stage_epochs):
        end += epochs
        if epoch < end:
            return index
    return len(stage_epochs) - 1


def hard_range(t_min: float, t_max: float, timesteps: int) -> tuple[int, int]:
    """``(lo, hi)``: the stage draws t uniformly from [lo, hi), at least one step wide.

    lo = int(t_min T), hi = int(t_max T) with the fractions clamped to [0, 1]; when lo >= hi,
    lo becomes max(0, hi - 1), and hi is at least lo + 1 (the study's ``set_time_range`` and
    ``sample_timesteps``).
    """
    lo = int(min(max(t_min, 0.0), 1.0) * timesteps)
    hi = int(min(max(t_max, 0.0), 1.0) * timesteps)
    if lo >= hi:
        lo = max(0, hi - 1)
    return lo, max(lo + 1, hi)


def stage_target(value: float | None, index: int, *, t_min: float, initial: float) -> float:
    """A stage's CS target sparsity or CR strength: the stage's own ``value`` when given; else
    ``initial`` for stage 0 and while ``t_min >= 0.2``; else ``initial (1 - sqrt(1 - t_min / 0.2))``,
    which falls to 0 at t_min = 0."""
    if value is not None:
        return value
    if index == 0 or t_min >= SPARSE_T_MIN:
        return initial
    return initial * (1.0 - math.sqrt(1.0 - t_min / SPARSE_T_MIN))


def run_epochs(cfg: Config) -> int:
    """Epochs the run trains: the stages' total with the study's curriculum, else ``train.epochs``."""
    c = cfg.curriculum
    return c.total_epochs if c is not None and c.kind == "stages" else cfg.train.epochs
