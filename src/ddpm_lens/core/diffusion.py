"""Gaussian diffusion (Ho et al. 2020): forward noising, training loss, DDPM and DDIM sampling.

The diffusion owns the schedule tables, never the model: every method that needs the
network takes it as an argument. Tables are float64 and are cast to the data's dtype only
when indexed (as ddpm-torch does), so q_sample matches it to the last bit::

    diffusion = GaussianDiffusion.from_config(cfg.diffusion)
    x_t = diffusion.q_sample(x0, t, noise)
    loss = diffusion.train_losses(model, x0, t).mean()
    images = diffusion.sample(model, (16, 3, 64, 64), generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ddpm_lens.core.config import DiffusionConfig
from ddpm_lens.core.schedules import get_beta_schedule
from ddpm_lens.util.errors import UserError


def extract(table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Pick ``table[t]`` per sample and shape it (B, 1, ..., 1) to broadcast against ``x``."""
    return table[t].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def ddim_timesteps(timesteps: int, steps: int, skip: str = "uniform") -> np.ndarray:
    """The increasing subsequence of [0, T) that DDIM visits (``uniform`` or ``quadratic``)."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"DDIM steps must be in 1..{timesteps}, got {steps}")
    if skip == "uniform":
        seq = np.arange(0, timesteps, timesteps // steps)[:steps]
    elif skip == "quadratic":
        seq = (np.linspace(0, np.sqrt(timesteps * 0.8), steps) ** 2).astype(np.int64)
    else:
        raise ValueError(f"unknown DDIM skip '{skip}' (valid: uniform, quadratic)")
    return np.unique(seq)


class GaussianDiffusion:
    def __init__(
        self,
        *,
        betas: np.ndarray,
        model_mean_type: str = "eps",
        model_var_type: str = "fixed-small",
        loss_type: str = "mse",
    ):
        self.model_mean_type, self.model_var_type, self.loss_type = model_mean_type, model_var_type, loss_type
        betas = np.asarray(betas, dtype=np.float64)
        self.timesteps = len(betas)
        alphas_bar = np.cumprod(1.0 - betas)
        alphas_bar_prev = np.append(1.0, alphas_bar[:-1])
        post_var = betas * (1.0 - alphas_bar_prev) / (1.0 - alphas_bar)
        if model_var_type == "fixed-small":
            model_var = post_var
            model_logvar = np.log(np.append(post_var[1], post_var[1:]))  # post_var[0] is 0
        else:  # fixed-large: betas, with beta_0 replaced as in Ho et al.
            model_var = np.append(post_var[1], betas[1:])
            model_logvar = np.log(model_var)
        tables = {
            "betas": betas,
            "alphas_cumprod": alphas_bar,
            "alphas_cumprod_prev": alphas_bar_prev,
            "sqrt_alphas_cumprod": np.sqrt(alphas_bar),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_bar),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_bar),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_bar - 1.0),
            "posterior_variance": post_var,
            "posterior_mean_coef1": betas * np.sqrt(alphas_bar_prev) / (1.0 - alphas_bar),
            "posterior_mean_coef2": (1.0 - alphas_bar_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_bar),
            "model_variance": model_var,
            "model_log_variance": model_logvar,
        }
        self.tables = {k: torch.from_numpy(v) for k, v in tables.items()}  # float64, on self.device
        self.device = torch.device("cpu")

    @classmethod
    def from_config(cls, cfg: DiffusionConfig) -> GaussianDiffusion:
        betas = get_beta_schedule(
            cfg.beta_schedule, beta_start=cfg.beta_start, beta_end=cfg.beta_end, timesteps=cfg.timesteps
        )
        return cls(
            betas=betas,
            model_mean_type=cfg.model_mean_type,
            model_var_type=cfg.model_var_type,
            loss_type=cfg.loss_type,
        )

    def to(self, device: str | torch.device) -> GaussianDiffusion:
        """Move the tables once, so no step re-allocates or copies them (MPS lacks float64)."""
        device = torch.device(device)
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.tables = {k: v.to(device=device, dtype=dtype) for k, v in self.tables.items()}
        self.device = device
        return self

    def __getattr__(self, name: str) -> torch.Tensor:
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(name)

    # forward process -------------------------------------------------------------------
    def q_sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """x_t = sqrt(a_bar_t) x0 + sqrt(1 - a_bar_t) noise; x0 (B, C, H, W), t (B,) in 0..T-1."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return (
            extract(self.sqrt_alphas_cumprod, t, x0) * x0
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def q_posterior_mean_var(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean and variance of q(x_{t-1} | x_t, x0)."""
        mean = (
            extract(self.posterior_mean_coef1, t, x_t) * x0 + extract(self.posterior_mean_coef2, t, x_t) * x_t
        )
        return mean, extract(self.posterior_variance, t, x_t)

    # model outputs ---------------------------------------------------------------------
    def pred_x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
        )

    def pred_eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return (extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0) / extract(
            self.sqrt_recipm1_alphas_cumprod, t, x_t
        )

    def p_mean_var(self, model, x_t: torch.Tensor, t: torch.Tensor, *, clip_denoised: bool = True):
        """(mean, variance, log variance, predicted x0) of p(x_{t-1} | x_t)."""
        out = model(x_t, t)
        if self.model_mean_type == "eps":
            x0 = self.pred_x0_from_eps(x_t, t, out)
        elif self.model_mean_type == "x_0":
            x0 = out
        else:  # "mean": the network predicts the posterior mean; invert it for x0
            x0 = (out - extract(self.posterior_mean_coef2, t, x_t) * x_t) / extract(
                self.posterior_mean_coef1, t, x_t
            )
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean = (
            out
            if (self.model_mean_type == "mean" and not clip_denoised)
            else self.q_posterior_mean_var(x0, x_t, t)[0]
        )
        return mean, extract(self.model_variance, t, x_t), extract(self.model_log_variance, t, x_t), x0

    # training --------------------------------------------------------------------------
    def train_losses(
        self,
        model,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Per-sample loss (B,) between the network output and its target: the config's
        ``loss_type``, of which ``mse`` (ddpm-torch's default) is the one supported."""
        if self.loss_type != "mse":
            raise UserError(
                f"diffusion.loss_type {self.loss_type!r} is not supported (ddpm-torch's 'kl' needs learned "
                'variances, which ddpm-lens does not build): use "mse"'
            )
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.q_sample(x0, t, noise)
        out = model(x_t, t)
        if self.model_mean_type == "eps":
            target = noise
        elif self.model_mean_type == "x_0":
            target = x0
        else:
            target = self.q_posterior_mean_var(x0, x_t, t)[0]
        return (out.float() - target.float()).pow(2).flatten(1).mean(dim=1)

    # sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def p_sample(
        self, model, x_t: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One ancestral step x_t -> x_{t-1} (no noise where t == 0)."""
        mean, _, logvar, _ = self.p_mean_var(model, x_t, t)
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        nonzero = (t > 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
        return mean + nonzero * torch.exp(0.5 * logvar) * noise

    @torch.no_grad()
    def ddim_step(
        self,
        model,
        x_t: torch.Tensor,
        t: torch.Tensor,
        t_prev: torch.Tensor,
        *,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One DDIM step x_t -> x_{t_prev} (t_prev = -1 means the clean image)."""
        _, _, _, x0 = self.p_mean_var(model, x_t, t)
        eps = self.pred_eps_from_x0(x_t, t, x0)  # consistent with the clipped x0
        ab_t = extract(self.alphas_cumprod, t, x_t)
        ab_prev = torch.where(t_prev >= 0, self.alphas_cumprod[t_prev.clamp(min=0)], 1.0)
        ab_prev = ab_prev.to(x_t.dtype).reshape(ab_t.shape)
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return ab_prev.sqrt() * x0 + torch.sqrt((1 - ab_prev - sigma**2).clamp(min=0)) * eps + sigma * noise

    @torch.no_grad()
    def sample(
        self,
        model,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        sampler: str = "ddpm",
        steps: int | None = None,
        eta: float = 0.0,
        skip: str = "uniform",
        device: str | torch.device = "cpu",
        progress: bool = False,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw images (B, C, H, W) in [-1, 1] from noise with DDPM (all T steps) or DDIM.

        ``noise`` is x_T (``shape``, on ``device``); by default it is drawn from ``generator``.
        """
        x = torch.randn(shape, generator=generator, device=device) if noise is None else noise
        if sampler == "ddpm":
            seq = np.arange(self.timesteps)
        elif sampler == "ddim":
            seq = ddim_timesteps(self.timesteps, steps or 50, skip)
        else:
            raise ValueError(f"unknown sampler '{sampler}' (valid: ddpm, ddim)")
        prevs = np.append(-1, seq[:-1])
        bar = tqdm(
            list(zip(seq[::-1], prevs[::-1])),
            desc=f"{sampler} sampling",
            disable=not progress,
            unit="step",
            leave=False,
        )
        for step, (t_i, prev_i) in enumerate(bar, 1):
            t = torch.full((shape[0],), int(t_i), device=device, dtype=torch.long)
            if sampler == "ddpm":
                x = self.p_sample(model, x, t, generator=generator)
            else:
                prev = torch.full_like(t, int(prev_i))
                x = self.ddim_step(model, x, t, prev, eta=eta, generator=generator)
            if not torch.isfinite(x).all():  # NaN stays NaN through every later step (and clamp)
                raise UserError(
                    f"{sampler} sampling stopped at step {step} of {len(seq)} (t = {int(t_i)}): the model's "
                    "output holds NaN or inf (diverged weights, or an overflow in reduced precision); "
                    "check the checkpoint, or run it in float32"
                )
        return x.clamp(-1.0, 1.0)
