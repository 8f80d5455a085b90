"""The denoiser whose Jacobian ``ddpm-lens jacobian`` takes: a flat map built from a model, its
diffusion and one t, in full colour at the model's resolution or in the study's gray 32×32 setting.

**What is differentiated.** ``quantity="x0"`` (default): the predicted clean image
x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t as a function of the noisy image in x_0's units, y = x_t/√ᾱ_t
= x_0 + σ_t ε (Kadkhodaie et al.'s normalisation), i.e. J = ∂x̂_0/∂y = √ᾱ_t ∂x̂_0/∂x_t
= I − √(1−ᾱ_t) ∂ε̂/∂x_t. For an MMSE denoiser this is Cov[x_0 | y]/σ_t²: symmetric, eigenvalues
in [0, 1] for Gaussian data, trace = the local effective dimension. Supported parameterisations:
ε-prediction (``model_mean_type`` ``eps``) and x_0-prediction (``x_0``: J = √ᾱ_t ∂model/∂x_t).
``quantity="study"``: the study's matrix I − ∂ε̂/∂x_t (``U-VIT-CS/generate_jacobian_single.py``
takes the SVD of I − J with J the Jacobian of ε̂), ε-models only; it differs from the x0 quantity
by the factor √(1−ᾱ_t) on ∂ε̂/∂x_t (0.96 at t = 500 on the linear schedule).

**Study setting** (``gray32``, after ``generate_jacobian_single.py``): the working vector is a gray
32×32 image g; the model sees g bilinearly up-sampled to its resolution and repeated over three
channels; its output is reduced to gray by 0.299 R + 0.587 G + 0.114 B and bilinearly down-sampled
to 32×32 (``F.interpolate``, align_corners False, as theirs). The clean images are made gray with
the same weights and resized to 32×32 (bilinear, antialiased); they stay in [-1, 1] (the study read
a PNG in [0, 1]). The study takes its Jacobian at the clean image itself; here it is taken at
x_t = √ᾱ_t g + √(1−ᾱ_t) ε with the seeded noise of the image and t, in the working space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ddpm_lens.analysis.inputs import noise_for
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.util.errors import UserError

SUPPORTED_PARAMETERISATIONS = ("eps", "x_0")
QUANTITIES = ("x0", "study")
GRAY = (0.299, 0.587, 0.114)
STUDY_SIZE = 32


@dataclass(frozen=True)
class Setting:
    """Where the Jacobian lives: ``full`` (3×R×R, the model's own input) or ``gray32``."""

    name: str  # full | gray32
    resolution: int  # the model's input size R

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, STUDY_SIZE, STUDY_SIZE) if self.name == "gray32" else (3, self.resolution, self.resolution)

    @property
    def dim(self) -> int:
        c, h, w = self.shape
        return c * h * w

    def lift(self, w: torch.Tensor) -> torch.Tensor:
        """A working tensor (1, *shape) -> the model's input (1, 3, R, R)."""
        if self.name == "full":
            return w
        if self.resolution != STUDY_SIZE:
            w = F.interpolate(w, size=(self.resolution, self.resolution), mode="bilinear")
        return w.repeat(1, 3, 1, 1)

    def readout(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output (1, 3, R, R) -> a working tensor (1, *shape)."""
        if self.name == "full":
            return x
        gray = GRAY[0] * x[:, 0:1] + GRAY[1] * x[:, 1:2] + GRAY[2] * x[:, 2:3]
        if self.resolution != STUDY_SIZE:
            gray = F.interpolate(gray, size=(STUDY_SIZE, STUDY_SIZE), mode="bilinear")
        return gray

    def clean(self, images: torch.Tensor) -> torch.Tensor:
        """Clean images (N, 3, R, R) in [-1, 1] -> working images (N, *shape)."""
        if self.name == "full":
            return images
        gray = GRAY[0] * images[:, 0:1] + GRAY[1] * images[:, 1:2] + GRAY[2] * images[:, 2:3]
        if gray.shape[-1] != STUDY_SIZE:
            gray = F.interpolate(gray, size=(STUDY_SIZE, STUDY_SIZE), mode="bilinear", antialias=True)
        return gray


def check_timesteps(timesteps, num_timesteps: int) -> list[int]:
    bad = [t for t in timesteps if not 0 <= t < num_timesteps]
    if bad:
        raise UserError(
            f"--t {bad[0]} is outside [0, {num_timesteps}): pass timesteps from 0 to {num_timesteps - 1}"
        )
    return [int(t) for t in timesteps]


def check_parameterisation(mean_type: str, quantity: str, where: str) -> None:
    if quantity not in QUANTITIES:
        raise UserError(f"--quantity {quantity!r} is not one of {', '.join(QUANTITIES)}")
    if mean_type not in SUPPORTED_PARAMETERISATIONS:
        raise UserError(
            f"{where} predicts {mean_type!r}: the Jacobian supports eps- and x_0-prediction models only "
            "(diffusion.model_mean_type eps or x_0)"
        )
    if quantity == "study" and mean_type != "eps":
        raise UserError(
            f"--quantity study is I − ∂ε̂/∂x_t and needs an eps-prediction model; {where} predicts "
            f"{mean_type!r}: use --quantity x0"
        )


def denoiser_map(
    model: torch.nn.Module,
    diffusion: GaussianDiffusion,
    t: int,
    setting: Setting,
    *,
    quantity: str = "x0",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """f: flat working x_t (n,) -> flat (n,), whose Jacobian is the module doc's J."""
    mean_type = diffusion.model_mean_type
    a_bar = float(diffusion.alphas_cumprod[t])
    shape = setting.shape

    def f(x: torch.Tensor) -> torch.Tensor:
        w = x.reshape(1, *shape)
        tt = torch.full((1,), t, dtype=torch.long, device=x.device)
        # attention through plain matmul and softmax: the fused CPU kernel's backward has no vmap
        # batching rule (a per-column loop) and rounds differently from one sample to the next
        with sdpa_kernel([SDPBackend.MATH]):
            out = setting.readout(model(setting.lift(w), tt))
        if mean_type == "x_0":
            return (a_bar**0.5 * out).reshape(-1)
        scale = 1.0 if quantity == "study" else (1.0 - a_bar) ** 0.5
        return (w - scale * out).reshape(-1)

    return f


def noisy_point(
    clean: torch.Tensor, index: int, t: int, diffusion: GaussianDiffusion, seed: int
) -> torch.Tensor:
    """x_t of working image ``clean`` (C, H, W), image number ``index``: flat (n,), noise fixed by
    (seed, index, t)."""
    noise = noise_for(seed, index, t, tuple(clean.shape)).to(clean)
    a_bar = float(diffusion.alphas_cumprod[t])
    return (a_bar**0.5 * clean + (1.0 - a_bar) ** 0.5 * noise).reshape(-1)
