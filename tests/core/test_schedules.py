import numpy as np
import pytest

from ddpm_lens.core.schedules import BETA_SCHEDULES, get_beta_schedule, log_snr
from ddpm_lens.util.errors import UserError

# Reference values (float64) for the CelebA-64 linear schedule, from ddpm-torch.
REFERENCE = {  # t: (beta, alphas_bar, sqrt(alphas_bar), sqrt(1 - alphas_bar))
    0: (1.0e-4, 0.9999, 0.9999499987, 0.01),
    100: (0.002091991992, 0.8951415909, 0.9461192266, 0.3238184817),
    500: (0.01005995996, 0.07779665837, 0.2789205234, 0.960314189),
    900: (0.01802792793, 0.0002702445196, 0.01643911553, 0.9998648686),
    999: (0.02, 4.035829765e-05, 0.006352818088, 0.9999798206),
}


def test_linear_matches_reference_table():
    betas = get_beta_schedule("linear", beta_start=1e-4, beta_end=0.02, timesteps=1000)
    assert betas.dtype == np.float64
    ab = np.cumprod(1 - betas)
    for t, (beta, a, sa, s1a) in REFERENCE.items():
        assert betas[t] == pytest.approx(beta, rel=1e-9)
        assert ab[t] == pytest.approx(a, rel=1e-8)
        assert np.sqrt(ab[t]) == pytest.approx(sa, rel=1e-9)
        assert np.sqrt(1 - ab[t]) == pytest.approx(s1a, rel=1e-9)


def test_closed_forms():
    T = 100
    quad = get_beta_schedule("quad", beta_start=1e-4, beta_end=0.02, timesteps=T)
    assert quad[0] == pytest.approx(1e-4) and quad[-1] == pytest.approx(0.02)
    assert np.allclose(np.sqrt(quad), np.linspace(0.01, np.sqrt(0.02), T))
    assert np.all(get_beta_schedule("const", beta_start=1e-4, beta_end=0.02, timesteps=T) == 0.02)
    w10 = get_beta_schedule("warmup10", beta_start=1e-4, beta_end=0.02, timesteps=T)
    assert np.allclose(w10[:10], np.linspace(1e-4, 0.02, 10)) and np.all(w10[10:] == 0.02)
    w50 = get_beta_schedule("warmup50", beta_start=1e-4, beta_end=0.02, timesteps=T)
    assert np.allclose(w50[:50], np.linspace(1e-4, 0.02, 50)) and np.all(w50[50:] == 0.02)
    jsd = get_beta_schedule("jsd", beta_start=1e-4, beta_end=0.02, timesteps=T)
    assert jsd[0] == pytest.approx(1 / T) and jsd[-1] == 1.0 and jsd[T - 2] == pytest.approx(0.5)


def test_cosine_alpha_bar_follows_squared_cosine():
    T, s = 1000, 0.008
    betas = get_beta_schedule("cosine", beta_start=1e-4, beta_end=0.02, timesteps=T)
    ab = np.cumprod(1 - betas)
    f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    for t in (0, 250, 500, 750):
        assert ab[t] == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert betas.max() <= 0.999


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(UserError, match="valid: " + ", ".join(BETA_SCHEDULES)):
        get_beta_schedule("sigmoid", beta_start=1e-4, beta_end=0.02, timesteps=10)


def test_log_snr_decreases():
    ab = np.cumprod(1 - get_beta_schedule("linear", beta_start=1e-4, beta_end=0.02, timesteps=1000))
    snr = log_snr(ab)
    assert np.all(np.diff(snr) < 0) and snr[0] == pytest.approx(np.log(0.9999 / 0.0001))
