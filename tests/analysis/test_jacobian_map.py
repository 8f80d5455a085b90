"""The denoiser map: what is differentiated, in both settings, and the exact path against autograd."""

from __future__ import annotations

import pytest
import torch

from ddpm_lens.analysis.jacobian import dense_jacobian
from ddpm_lens.analysis.jacobian_map import (
    Setting,
    check_parameterisation,
    check_timesteps,
    denoiser_map,
    noisy_point,
)
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.core.schedules import get_beta_schedule
from ddpm_lens.util.errors import UserError


def _diffusion(mean_type: str = "eps") -> GaussianDiffusion:
    betas = get_beta_schedule("linear", beta_start=1e-4, beta_end=0.02, timesteps=1000)
    return GaussianDiffusion(betas=betas, model_mean_type=mean_type)


@pytest.fixture
def small_unet(tiny_model):
    return tiny_model.requires_grad_(False)


def test_exact_path_matches_one_backward_per_output_on_a_perturbed_unet(small_unet, one_thread, monkeypatch):
    """The study's way (a forward and one backward per output) against torch.func's batched jacrev.
    In float64 (the timestep sinusoid made float64 too), so that 1e-5 is far above rounding: in
    float32 the two differ by up to 1e-4 on this model, from the different order of reductions."""
    from ddpm_lens.core import unet as unet_module

    embed = unet_module.timestep_embedding
    monkeypatch.setattr(unet_module, "timestep_embedding", lambda t, dim: embed(t, dim).double())
    d = _diffusion()
    setting = Setting("full", 8)
    x = noisy_point(torch.rand(3, 8, 8, dtype=torch.float64) * 2 - 1, 0, 500, d, seed=0)
    f = denoiser_map(small_unet.double(), d, 500, setting)
    jac = dense_jacobian(f, x, chunk=40)
    rows = []
    for i in range(x.numel()):
        xi = x.clone().requires_grad_(True)
        rows.append(torch.autograd.grad(f(xi)[i], xi)[0])
    study = torch.stack(rows)
    assert (study - jac).abs().max() < 1e-5
    assert (
        jac - torch.eye(192, dtype=torch.float64)
    ).abs().max() > 1e-2  # the network contributes: not the identity


def test_x0_quantity_is_sqrt_alpha_bar_times_the_projects_predicted_x0(small_unet, one_thread):
    d = _diffusion()
    t = 300
    x = torch.randn(192)
    f = denoiser_map(small_unet, d, t, Setting("full", 8))
    tt = torch.tensor([t])
    x_img = x.reshape(1, 3, 8, 8)
    x0 = d.pred_x0_from_eps(x_img, tt, small_unet(x_img, tt))
    assert torch.allclose(f(x), float(d.alphas_cumprod[t]) ** 0.5 * x0.reshape(-1), atol=1e-5)
    study = denoiser_map(small_unet, d, t, Setting("full", 8), quantity="study")
    assert torch.allclose(study(x), x - small_unet(x_img, tt).reshape(-1), atol=1e-6)


def test_x0_prediction_model_is_scaled_output():
    d = _diffusion("x_0")
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    model = lambda x, t: net(x)  # noqa: E731
    f = denoiser_map(model, d, 500, Setting("full", 8))
    x = torch.randn(192)
    assert torch.allclose(f(x), float(d.alphas_cumprod[500]) ** 0.5 * net(x.reshape(1, 3, 8, 8)).reshape(-1))


def test_gray32_setting_round_trips_constants_and_has_1024_dimensions():
    s = Setting("gray32", 64)
    assert s.shape == (1, 32, 32) and s.dim == 1024
    g = torch.full((1, 1, 32, 32), 0.3)
    lifted = s.lift(g)
    assert lifted.shape == (1, 3, 64, 64)
    assert torch.allclose(s.readout(lifted), g, atol=1e-6)  # gray weights sum to 1; bilinear keeps constants
    rgb = torch.zeros(2, 3, 64, 64)
    rgb[:, 1] = 1.0  # pure green
    assert torch.allclose(s.clean(rgb), torch.full((2, 1, 32, 32), 0.587), atol=1e-6)
    assert Setting("full", 16).dim == 768


def test_gray32_jacobian_is_the_composite(small_unet, one_thread):
    """In the study's setting, J = I − √(1−ᾱ)·R ∂ε̂ P with P lift and R readout."""
    d = _diffusion()
    s = Setting("gray32", 32)
    x = torch.randn(1024)
    f = denoiser_map(small_unet, d, 500, s)
    v = torch.randn(1024)
    jv = torch.func.jvp(f, (x,), (v,))[1]
    eps = lambda g: s.readout(small_unet(s.lift(g.reshape(1, 1, 32, 32)), torch.tensor([500]))).reshape(-1)  # noqa: E731
    je = torch.func.jvp(eps, (x,), (v,))[1]
    assert torch.allclose(jv, v - (1 - float(d.alphas_cumprod[500])) ** 0.5 * je, atol=1e-5)


def test_noise_is_fixed_by_seed_image_and_t():
    d = _diffusion()
    clean = torch.zeros(1, 32, 32)
    a, b = noisy_point(clean, 0, 500, d, 0), noisy_point(clean, 0, 500, d, 0)
    assert torch.equal(a, b)
    assert not torch.equal(a, noisy_point(clean, 1, 500, d, 0))
    assert not torch.equal(a, noisy_point(clean, 0, 501, d, 0))


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(UserError, match=r"--t 1000 is outside \[0, 1000\)"):
        check_timesteps([500, 1000], 1000)
    with pytest.raises(UserError, match="eps- and x_0-prediction models only"):
        check_parameterisation("mean", "x0", "--arm a=x.pt")
    with pytest.raises(UserError, match="needs an eps-prediction model"):
        check_parameterisation("x_0", "study", "--arm a=x.pt")
    check_parameterisation("x_0", "x0", "--arm a=x.pt")


def test_exact_path_matches_one_backward_per_output_on_a_perturbed_uvit(one_thread):
    """The same check on the study's U-ViT (16 px, patch 4): the Jacobian needs nothing of the UNet.
    One backward for every 7th output (110 rows over every channel and patch; all 768 take 10 s)."""
    from conftest import tiny_uvit

    d = _diffusion()
    model = tiny_uvit(3).double().requires_grad_(False)
    x = noisy_point(torch.rand(3, 16, 16, dtype=torch.float64) * 2 - 1, 0, 500, d, seed=0)
    f = denoiser_map(model, d, 500, Setting("full", 16))
    jac = dense_jacobian(f, x, chunk=128)
    picked = range(0, x.numel(), 7)
    rows = []
    for i in picked:
        xi = x.clone().requires_grad_(True)
        rows.append(torch.autograd.grad(f(xi)[i], xi)[0])
    assert (torch.stack(rows) - jac[list(picked)]).abs().max() < 1e-8
    assert (jac - torch.eye(768, dtype=torch.float64)).abs().max() > 1e-2  # the network contributes
