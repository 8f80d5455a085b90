"""Beta schedules as pure functions returning float64 arrays of length T.

Names follow ddpm-torch (``linear``, ``quad``, ``const``, ``warmup10``, ``warmup50``, ``jsd``)
plus ``cosine`` (Nichol & Dhariwal 2021, s = 0.008, betas capped at 0.999).
"""

from __future__ import annotations

import math

import numpy as np

from ddpm_lens.util.errors import UserError


def _linear(start: float, end: float, T: int) -> np.ndarray:
    return np.linspace(start, end, T, dtype=np.float64)


def _quad(start: float, end: float, T: int) -> np.ndarray:
    return np.linspace(start**0.5, end**0.5, T, dtype=np.float64) ** 2


def _const(start: float, end: float, T: int) -> np.ndarray:
    return np.full(T, end, dtype=np.float64)


def _warmup(fraction: float):
    def schedule(start: float, end: float, T: int) -> np.ndarray:
        betas = np.full(T, end, dtype=np.float64)
        n = int(T * fraction)
        betas[:n] = np.linspace(start, end, n, dtype=np.float64)
        return betas

    return schedule


def _jsd(start: float, end: float, T: int) -> np.ndarray:
    # 1/T, 1/(T-1), ..., 1: the schedule of Sohl-Dickstein et al. (start/end unused)
    return 1.0 / np.linspace(T, 1, T, dtype=np.float64)


def _cosine(start: float, end: float, T: int, s: float = 0.008) -> np.ndarray:
    f = np.cos((np.arange(T + 1, dtype=np.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], 0.999)


BETA_SCHEDULES = {
    "linear": _linear,
    "quad": _quad,
    "const": _const,
    "warmup10": _warmup(0.1),
    "warmup50": _warmup(0.5),
    "jsd": _jsd,
    "cosine": _cosine,
}


def get_beta_schedule(name: str, *, beta_start: float, beta_end: float, timesteps: int) -> np.ndarray:
    """Betas (T,) float64 for a named schedule."""
    if name not in BETA_SCHEDULES:
        raise UserError(f"unknown beta schedule '{name}' (valid: {', '.join(BETA_SCHEDULES)})")
    betas = BETA_SCHEDULES[name](beta_start, beta_end, timesteps)
    assert betas.shape == (timesteps,) and np.all((betas > 0) & (betas <= 1))
    return betas


def log_snr(alphas_cumprod: np.ndarray) -> np.ndarray:
    """log(alpha_bar / (1 - alpha_bar)) per timestep; decreasing in t."""
    return np.log(alphas_cumprod) - np.log1p(-alphas_cumprod)
