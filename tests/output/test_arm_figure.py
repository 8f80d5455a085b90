"""k arms side by side: the same rule per panel, matching to the first arm, and with two arms
the visualizer's own figure."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddpm_lens.analysis.compare import compare_features
from ddpm_lens.cli import main
from ddpm_lens.output import render
from ddpm_lens.output.arm_figure import arm_figures, arm_panels
from ddpm_lens.util.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"baseline": ROOT / "configs/tiny.json", "curriculum": ROOT / "configs/tiny_c.json"}


@pytest.mark.slow
def test_two_arms_draw_the_visualizers_figure_pixel_for_pixel(tiny_pair, tmp_path):
    """With --match_channels: the first arm's panel by the shared rule, the second matched to it."""
    layers, out = ["in_conv", "bottleneck"], tmp_path / "vis"
    command = ["visualize", "--baseline_ckpt", str(tiny_pair[0]), "--curriculum_ckpt", str(tiny_pair[1])]
    command += [
        "--config_baseline",
        str(CONFIGS["baseline"]),
        "--config_curriculum",
        str(CONFIGS["curriculum"]),
    ]
    command += ["--num_samples", "2", "--timesteps", "500", "--num_channels", "16", "--layers", *layers]
    command += ["--output_dir", str(out), "--device", "cpu", "--no_report", "--no_progress"]
    assert main([*command, "--match_channels"]) == 0
    cmp = compare_features(
        baseline_ckpt=str(tiny_pair[0]),
        curriculum_ckpt=str(tiny_pair[1]),
        config_baseline=str(CONFIGS["baseline"]),
        config_curriculum=str(CONFIGS["curriculum"]),
        num_samples=2,
        timesteps=(500,),
        layers=layers,
    )
    for s, cond in enumerate(c.name for c in cmp.conditions):
        for layer in layers:
            arms = [(label, cmp.activations[key][layer][:, s]) for label, key in zip(cmp.labels, CONFIGS)]
            titles = [f"{layer} | {cond} | Sample {i}" for i in range(2)]
            figures = arm_figures(arms, titles=titles, num_channels=16, match_channels=True)
            for i, figure in enumerate(figures):
                drawn = np.asarray(Image.open(out / f"sample_{i}/{cond}/{layer}_baseline_vs_curriculum.png"))
                np.testing.assert_array_equal(figure, drawn)


def _three_arms(rng):
    """Arm A; arm B independent; arm C = A's channels shuffled, each scaled differently (so its
    variance ranking differs from A's, its maps' shapes do not)."""
    a = rng.normal(size=(2, 8, 6, 6)) * np.arange(1, 9)[None, :, None, None]
    order, scale = rng.permutation(8), np.array([0.3, 5, 1, 2, 0.1, 7, 3, 0.5])
    return [("A", a), ("B", rng.normal(size=(2, 10, 6, 6))), ("C", a[:, order] * scale[:, None, None])]


def test_k_arms_get_one_panel_each_by_the_same_rule():
    arms = _three_arms(np.random.default_rng(0))
    panels, matched = arm_panels(arms, num_channels=4)
    assert matched is None and [len(row) for row in panels] == [3, 3]
    for row in panels:
        assert [p.label for p in row] == ["A", "B", "C"]
    for j, (_, a) in enumerate(arms):  # each panel: that arm's 4 highest-variance channels of that input
        for i in range(2):
            expected = np.argsort(-a[i].var(axis=(1, 2)), kind="stable")[:4]
            assert panels[i][j].channels == expected.tolist()
            np.testing.assert_allclose(panels[i][j].stats["mean"], a[i].mean(), rtol=1e-6)
    figure = arm_figures(arms, titles=["t0", "t1"], num_channels=4, grid_size=2)[0]
    layout = render.figure_layout(panels[0], title="t0", grid_size=2)
    assert figure.shape == (layout.height, layout.width) and len(layout.grid_origins) == 3


def _grid(figure, layout, panel):
    x0, y0, _, _ = layout.cell_box(panel, 0)
    _, _, x1, y1 = layout.cell_box(panel, layout.grid_size**2 - 1)
    return figure[y0:y1, x0:x1]


def test_match_channels_shows_each_arm_the_first_arms_channel_in_each_cell():
    arms = _three_arms(np.random.default_rng(1))
    plain = arm_figures(arms, titles=["t"] * 2, num_channels=4, grid_size=2)[0]
    matched_fig = arm_figures(arms, titles=["t"] * 2, num_channels=4, grid_size=2, match_channels=True)[0]
    panels, matched = arm_panels(arms, num_channels=4, match_channels=True)
    assert matched.shape == (2, 2) and np.allclose(matched[:, 1], 1.0)  # C is A, reshuffled
    layout = render.figure_layout(panels[0], title="t", grid_size=2, note="n")
    assert np.array_equal(_grid(matched_fig, layout, 2), _grid(matched_fig, layout, 0))
    layout_plain = render.figure_layout(panels[0], title="t", grid_size=2)
    assert not np.array_equal(_grid(plain, layout_plain, 2), _grid(plain, layout_plain, 0))


def test_bad_arms_are_user_errors():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(2, 4, 3, 3))
    with pytest.raises(UserError, match="at least two arms"):
        arm_panels([("A", a)])
    with pytest.raises(UserError, match="distinct labels"):
        arm_panels([("A", a), ("A", a)])
    with pytest.raises(UserError, match="same N inputs"):
        arm_panels([("A", a), ("B", a[:1])])
    with pytest.raises(UserError, match="cannot match B's channels to A's: 2 channels"):
        arm_panels([("A", a), ("B", a[:, :2])], num_channels=4, match_channels=True)
