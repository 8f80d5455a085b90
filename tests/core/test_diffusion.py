import numpy as np
import pytest
import torch

from ddpm_lens.core.config import DiffusionConfig
from ddpm_lens.core.diffusion import GaussianDiffusion, ddim_timesteps, extract


@pytest.fixture
def diffusion():
    return GaussianDiffusion.from_config(DiffusionConfig())


def test_q_sample_uses_float64_tables_cast_on_index(diffusion):
    x0 = torch.full((3, 1, 2, 2), 0.5)
    noise = torch.full_like(x0, -1.0)
    t = torch.tensor([100, 500, 900])
    xt = diffusion.q_sample(x0, t, noise)
    sa = torch.tensor([0.9461192266, 0.2789205234, 0.01643911553], dtype=torch.float64).float()
    s1a = torch.tensor([0.3238184817, 0.960314189, 0.9998648686], dtype=torch.float64).float()
    expected = (sa * 0.5 - s1a).view(3, 1, 1, 1).expand_as(xt)
    torch.testing.assert_close(xt, expected, atol=1e-6, rtol=0)


def test_q_sample_moments_match_alphas_cumprod(diffusion):
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    t = torch.full((20000,), 300)
    xt = diffusion.q_sample(x0, t, generator=g)
    ab = diffusion.alphas_cumprod[300].item()
    assert xt.mean().item() == pytest.approx(np.sqrt(ab) * 0.7, abs=0.02)
    assert xt.var().item() == pytest.approx(1 - ab, rel=0.03)


def test_q_sample_generator_is_reproducible(diffusion):
    x0 = torch.zeros(2, 3, 4, 4)
    t = torch.tensor([10, 20])
    a = diffusion.q_sample(x0, t, generator=torch.Generator().manual_seed(3))
    b = diffusion.q_sample(x0, t, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_extract_broadcasts_per_sample():
    table = torch.arange(10, dtype=torch.float64)
    out = extract(table, torch.tensor([2, 7]), torch.zeros(2, 3, 4, 4))
    assert out.shape == (2, 1, 1, 1) and out.dtype == torch.float32 and out.flatten().tolist() == [2, 7]


def test_posterior_variance_formula(diffusion):
    b, ab = diffusion.betas.numpy(), diffusion.alphas_cumprod.numpy()
    t = 400
    assert diffusion.posterior_variance[t].item() == pytest.approx(b[t] * (1 - ab[t - 1]) / (1 - ab[t]))
    assert diffusion.posterior_variance[0].item() == 0.0


def test_train_loss_is_zero_for_an_oracle(diffusion):
    noise = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    oracle = lambda x, t: noise  # noqa: E731 - predicts exactly the noise
    loss = diffusion.train_losses(oracle, torch.zeros(4, 3, 8, 8), torch.tensor([1, 2, 3, 4]), noise)
    assert loss.shape == (4,) and torch.all(loss == 0)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    loss = diffusion.train_losses(zero, torch.zeros(4, 3, 8, 8), torch.tensor([1, 2, 3, 4]), noise)
    torch.testing.assert_close(loss, noise.pow(2).flatten(1).mean(1))


def test_ddim_one_step_with_eta_one_equals_ddpm_posterior_step(diffusion, tiny_model):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([400, 400])
    ddpm = diffusion.p_sample(tiny_model, x, t, generator=torch.Generator().manual_seed(9))
    ddim = diffusion.ddim_step(tiny_model, x, t, t - 1, eta=1.0, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(ddim, ddpm, atol=1e-5, rtol=1e-5)
    assert (ddpm - x).abs().mean() > 1e-3  # the step really moved


def test_sampling_is_seeded_and_deterministic(diffusion, tiny_model):
    kw = dict(sampler="ddim", steps=5)
    a = diffusion.sample(tiny_model, (2, 3, 32, 32), generator=torch.Generator().manual_seed(1), **kw)
    b = diffusion.sample(tiny_model, (2, 3, 32, 32), generator=torch.Generator().manual_seed(1), **kw)
    c = diffusion.sample(tiny_model, (2, 3, 32, 32), generator=torch.Generator().manual_seed(2), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_ddim_from_given_noise_is_the_sample_of_that_noise(diffusion, tiny_model):
    x_t = torch.randn((2, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    drawn = diffusion.sample(
        tiny_model, (2, 3, 32, 32), generator=torch.Generator().manual_seed(1), steps=4, sampler="ddim"
    )
    given = diffusion.sample(tiny_model, (2, 3, 32, 32), noise=x_t, sampler="ddim", steps=4)
    alone = diffusion.sample(tiny_model, (1, 3, 32, 32), noise=x_t[1:], sampler="ddim", steps=4)
    assert torch.equal(drawn, given)
    torch.testing.assert_close(alone, given[1:], atol=2e-4, rtol=0)  # eta 0: one image, one noise


def test_ddpm_sampling_runs_all_steps(tiny_model):
    diffusion = GaussianDiffusion.from_config(DiffusionConfig(timesteps=4))
    calls = []
    model = lambda x, t: (calls.append(int(t[0])), tiny_model(x, t))[1]  # noqa: E731
    diffusion.sample(model, (1, 3, 32, 32), generator=torch.Generator().manual_seed(0), sampler="ddpm")
    assert calls == [3, 2, 1, 0]


def test_ddim_timestep_spacing():
    assert ddim_timesteps(1000, 10).tolist() == list(range(0, 1000, 100))
    quad = ddim_timesteps(1000, 10, "quadratic")
    assert quad[0] == 0 and np.all(np.diff(quad) > 0) and quad[-1] < 1000
    assert np.diff(quad)[-1] > np.diff(quad)[0]  # denser at low t
    with pytest.raises(ValueError):
        ddim_timesteps(1000, 0)


def test_fixed_large_variance_and_x0_mean_type(tiny_model):
    d = GaussianDiffusion.from_config(DiffusionConfig(model_var_type="fixed-large", model_mean_type="x_0"))
    assert d.model_variance[10].item() == pytest.approx(d.betas[10].item())
    x0 = torch.zeros(1, 3, 32, 32)
    loss = d.train_losses(lambda x, t: torch.zeros_like(x), x0, torch.tensor([5]))
    assert loss.item() == 0.0  # target is x0 itself


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_a_forward_that_turns_nan_stops_sampling_naming_the_step(tiny_model, sampler):
    diffusion = GaussianDiffusion.from_config(DiffusionConfig(timesteps=20))
    calls = []

    def overflows(x, t):  # finite weights, but the output overflows (as float16 can) at the third call
        calls.append(int(t[0]))
        out = tiny_model(x, t)
        return out * torch.nan if len(calls) == 3 else out

    steps = {"ddim": 5, "ddpm": None}[sampler]
    with pytest.raises(Exception) as err:
        diffusion.sample(overflows, (2, 3, 16, 16), sampler=sampler, steps=steps, generator=torch.Generator())
    t = calls[2]
    total = 5 if sampler == "ddim" else 20
    assert str(err.value).startswith(f"{sampler} sampling stopped at step 3 of {total} (t = {t}): ")
    assert "NaN or inf" in str(err.value) and len(calls) == 3 and type(err.value).__name__ == "UserError"
