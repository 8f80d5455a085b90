import numpy as np
import pytest
import torch
from scipy.stats import beta as beta_dist
from scipy.stats import chisquare, kstest

from ddpm_lens.core.config import CurriculumConfig, DiffusionConfig, Stage, load_config
from ddpm_lens.core.schedules import get_beta_schedule, log_snr
from ddpm_lens.train.timesteps import (
    ClusterSampler,
    StageSampler,
    TmaxSampler,
    UniformSampler,
    build_timestep_sampler,
    cluster_edges,
)
from ddpm_lens.util.errors import UserError

T = 1000
ALPHAS_BAR = np.cumprod(1 - get_beta_schedule("linear", beta_start=1e-4, beta_end=0.02, timesteps=T))
DIFF = DiffusionConfig(timesteps=T)


def draws(sampler, n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return sampler.sample(n, g, "cpu")


def chi2_pvalue(t: torch.Tensor, lo: int, hi: int, bins: int = 20) -> float:
    counts, _ = np.histogram(t.numpy(), bins=bins, range=(lo, hi))
    return chisquare(counts).pvalue


def test_uniform_is_uniform_over_all_timesteps():
    s = build_timestep_sampler(DIFF, None, alphas_cumprod=ALPHAS_BAR)
    assert isinstance(s, UniformSampler) and s.t_range == (0, T) and s.stage == 0
    t = draws(s, 200_000)
    assert t.dtype == torch.int64 and t.min() == 0 and t.max() == T - 1
    assert chi2_pvalue(t, 0, T) > 0.01


def test_chi_square_rejects_a_skewed_draw():
    # the check above has teeth: squaring a uniform variable skews it towards 0
    t = (torch.rand(200_000, generator=torch.Generator().manual_seed(0)) ** 1.1 * T).long()
    assert chi2_pvalue(t, 0, T) < 1e-6


def test_equal_t_clusters():
    assert cluster_edges(ALPHAS_BAR, 4, "t") == [0, 250, 500, 750, 1000]
    assert cluster_edges(ALPHAS_BAR, 3, "t") == [0, 333, 667, 1000]


def test_log_snr_clusters_have_equal_log_snr_width():
    n = 5
    edges = cluster_edges(ALPHAS_BAR, n, "log_snr")
    lam = log_snr(ALPHAS_BAR)
    levels = np.linspace(lam[0], lam[-1], n + 1)  # evenly spaced, decreasing
    assert edges[0] == 0 and edges[-1] == T
    for k in range(n):
        inside = lam[edges[k] : edges[k + 1]]
        assert np.all(inside <= levels[k]) and np.all(inside >= levels[k + 1])
        if k < n - 1:  # the first t of the next cluster is already below this cluster's lower level
            assert lam[edges[k + 1]] <= levels[k + 1] < lam[edges[k + 1] - 1]
    # log-SNR falls fastest at small t, so the low-t clusters are much narrower in t
    widths = np.diff(edges)
    assert widths[0] < widths[-1] / 5


def test_log_snr_spacing_with_too_many_clusters_is_an_error():
    with pytest.raises(UserError, match="without timesteps"):
        cluster_edges(ALPHAS_BAR, 900, "log_snr")


@pytest.mark.parametrize(
    "easy, ranges",
    [
        ("high_t", [(750, 1000), (500, 1000), (250, 1000), (0, 1000), (0, 1000)]),
        ("low_t", [(0, 250), (0, 500), (0, 750), (0, 1000), (0, 1000)]),
    ],
)
def test_fixed_pacing_stages_and_ranges(easy, ranges):
    s = ClusterSampler(edges=[0, 250, 500, 750, 1000], easy=easy, pacing="fixed", steps_per_stage=3)
    seen = []
    for step in range(15):
        t = draws(s, 500, seed=step)
        lo, hi = s.t_range
        assert lo <= int(t.min()) and int(t.max()) < hi
        seen.append((s.stage, s.t_range))
        s.update(step, 1.0)
    # stage s covers steps 3s .. 3s+2; stage 4 (= N) is the finished curriculum
    assert seen == [(step // 3, ranges[step // 3]) for step in range(15)]
    assert s.stage == 4


def test_last_cluster_stage_is_uniform():
    s = ClusterSampler(edges=[0, 250, 500, 750, 1000], pacing="fixed", steps_per_stage=1)
    for step in range(4):
        s.update(step, 1.0)
    assert s.stage == 4
    assert chi2_pvalue(draws(s, 200_000), 0, T) > 0.01


def adaptive(**kw):
    args = dict(
        edges=[0, 500, 1000],
        pacing="adaptive",
        smoothing=0.0,
        tolerance=0.01,
        patience=3,
        max_steps_per_stage=100,
    )
    return ClusterSampler(**{**args, **kw})


def test_adaptive_pacing_advances_on_a_plateau():
    s = adaptive()
    # best 0.8 at step 2; 0.795..0.793 improve on it by less than 1%, so they do not count
    losses = [1.0, 0.9, 0.8, 0.795, 0.794, 0.793]
    stages = []
    for step, loss in enumerate(losses):
        stages.append(s.stage)
        s.update(step, loss)
    assert stages == [0] * 6 and s.stage == 1  # 3 steps without improvement after step 2
    assert s.stage_start == 6 and s.t_range == (0, 1000)


def test_adaptive_pacing_keeps_going_while_the_loss_improves():
    s = adaptive()
    for step in range(50):
        s.update(step, 0.95**step)  # 5% better every step
    assert s.stage == 0


def test_adaptive_tracking_restarts_with_each_stage():
    s = adaptive(patience=2)
    for step, loss in enumerate([0.5, 0.5, 0.5]):
        s.update(step, loss)
    assert s.stage == 1
    # a harder stage has a higher loss; it must not be compared with the easy stage's best
    for step, loss in zip(range(3, 6), [2.0, 1.5, 1.2]):
        s.update(step, loss)
    assert s.stage == 1 and s.best == 1.2 and s.best_step == 5


def test_adaptive_pacing_stops_at_max_steps_per_stage():
    s = adaptive(max_steps_per_stage=7)
    for step in range(7):
        assert s.stage == 0
        s.update(step, 0.9**step)
    assert s.stage == 1 and s.stage_start == 7


def test_adaptive_smoothing_is_an_exponential_moving_average():
    s = adaptive(smoothing=0.75)
    s.update(0, 1.0)
    s.update(1, 0.0)
    s.update(2, 0.0)
    assert s.smoothed == pytest.approx(0.75 * 0.75)


@pytest.mark.parametrize("mirror, first", [(False, (0, 250)), (True, (750, 1000))])
def test_tmax_stages_begin_at_their_boundaries(mirror, first):
    s = TmaxSampler(timesteps=T, t_max=(250, 500, 1000), boundaries=(2, 5), mirror=mirror)
    seen = []
    for step in range(7):
        t = draws(s, 500, seed=step)
        assert s.t_range[0] <= int(t.min()) and int(t.max()) < s.t_range[1]
        seen.append(s.stage)
        s.update(step, 1.0)
    assert seen == [0, 0, 1, 1, 1, 2, 2]
    assert TmaxSampler(timesteps=T, t_max=(250, 500), boundaries=(2,), mirror=mirror).t_range == first


def _plain(x):
    if isinstance(x, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_plain(v) for v in x)
    return x is None or isinstance(x, (int, float, str))


def test_sampler_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    a = adaptive(smoothing=0.5)
    for step, loss in enumerate([1.0, 0.9, 0.85, 0.86, 0.86]):
        a.update(step, loss)
    state = a.state_dict()
    assert _plain(state) and state["kind"] == "clusters"
    torch.save({"sampler": state}, tmp_path / "s.pt")
    b = adaptive(smoothing=0.5)
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True)["sampler"])
    assert b.state_dict() == state
    for step, loss in enumerate([0.86, 0.87, 0.88, 0.5], start=5):  # both continue identically
        a.update(step, loss)
        b.update(step, loss)
        assert (a.stage, a.t_range, a.state_dict()) == (b.stage, b.t_range, b.state_dict())
    assert a.stage == 1  # the continuation crossed a stage boundary


def test_loading_another_kind_of_state_is_an_error():
    tmax = TmaxSampler(timesteps=T, t_max=(500, 1000), boundaries=(3,), mirror=False)
    with pytest.raises(UserError, match="'tmax' but the config asks for 'uniform'"):
        UniformSampler(T).load_state_dict(tmax.state_dict())


def test_registry_builds_from_configs():
    cfg = load_config("configs/tiny_c.json")
    s = build_timestep_sampler(cfg.diffusion, cfg.curriculum, alphas_cumprod=ALPHAS_BAR)
    assert isinstance(s, ClusterSampler) and s.edges == [0, 250, 500, 750, 1000] and s.t_range == (750, 1000)
    tmax = CurriculumConfig(kind="tmax", t_max=(100, 1000), boundaries=(10,), mirror=True)
    assert build_timestep_sampler(DIFF, tmax, alphas_cumprod=ALPHAS_BAR).t_range == (900, 1000)
    bad = CurriculumConfig(kind="sqrt")
    with pytest.raises(UserError, match="valid: uniform, clusters, tmax"):
        build_timestep_sampler(DIFF, bad, alphas_cumprod=ALPHAS_BAR)


# the study's staged curriculum --------------------------------------------------------------
def stages(mode="hard", *specs):
    return CurriculumConfig(kind="stages", mode=mode, stages=tuple(Stage(**s) for s in specs))


def test_hard_stages_follow_the_epoch_and_draw_uniformly_from_the_studys_range():
    c = stages(
        "hard", {"t_min": 0.3, "epochs": 2}, {"t_min": 0.07, "epochs": 1}, {"t_min": 0.0, "t_max": 0.5}
    )
    s = build_timestep_sampler(DIFF, c, alphas_cumprod=ALPHAS_BAR)
    assert isinstance(s, StageSampler) and s.stage == -1 and s.t_range == (0, T)
    ranges = []
    for epoch in range(5):
        s.begin_epoch(epoch)
        ranges.append((s.stage, s.t_range))
    assert ranges == [(0, (300, T)), (0, (300, T)), (1, (70, T)), (2, (0, 500)), (2, (0, 500))]
    s.begin_epoch(1)
    t = draws(s, 100_000)
    assert t.min() == 300 and t.max() == T - 1 and chi2_pvalue(t, 300, T) > 0.01
    state = s.state_dict()
    again = StageSampler(timesteps=T, curriculum=c)
    again.load_state_dict(state)
    assert (again.stage, again.t_range) == (0, (300, T))


@pytest.mark.parametrize(("a", "b"), [(2.0, 5.0), (5.0, 1.5), (0.5, 0.5)])
def test_soft_stages_draw_floor_beta_times_t_minus_one(a, b):
    s = StageSampler(timesteps=T, curriculum=stages("soft", {"alpha": a, "beta": b}))
    s.begin_epoch(0)
    assert s.t_range == (0, T)
    t = draws(s, 20_000, seed=3)
    assert t.dtype == torch.int64 and t.min() >= 0 and t.max() <= T - 2  # floor(s (T - 1)), s < 1
    # (t + u) / (T - 1), u ~ U[0, 1), has the Beta CDF at every bin edge: a KS test of the draws
    u = torch.rand(len(t), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    s01 = (t.double() + u) / (T - 1)
    assert kstest(s01.numpy(), beta_dist(a, b).cdf).pvalue > 0.01
    if a != b:  # the test has the power to see alpha and beta swapped
        assert kstest(s01.numpy(), beta_dist(b, a).cdf).pvalue < 1e-6


def test_soft_stage_with_alpha_beta_one_is_uniform_on_all_timesteps():
    s = StageSampler(timesteps=T, curriculum=stages("soft", {"alpha": 1.0, "beta": 1.0}))
    s.begin_epoch(0)
    t = draws(s, 200_000)
    assert t.max() == T - 1 and chi2_pvalue(t, 0, T) > 0.01  # randint(0, T), as the study's sampler
