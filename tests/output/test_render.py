import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from ddpm_lens.output import render
from ddpm_lens.output.png import encode_png
from ddpm_lens.output.render import (
    BACKGROUND,
    Panel,
    comparison_figure,
    figure_layout,
    input_figure,
    normalize_maps,
)

LUT = np.round(matplotlib.colormaps["viridis"](np.arange(256))[:, :3] * 255).astype(np.uint8)
PURPLE, YELLOW = LUT[0], LUT[255]  # viridis' ends, whatever the number of steps in between
STATS = {"mean": 0.123, "std": 0.456, "sparsity": 0.235}


def hot_pixel_maps(k: int, side: int = 4) -> np.ndarray:
    """(k, side, side): map i is zero except a 1 at flat position i % side²."""
    maps = np.zeros((k, side * side), dtype=np.float32)
    maps[np.arange(k), np.arange(k) % (side * side)] = 1
    return maps.reshape(k, side, side)


def crop(image: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


# --- normalize_maps ------------------------------------------------------------------------------


def test_channel_mode_uses_each_maps_own_percentiles():
    maps = np.stack([np.arange(16.0), np.arange(16.0) * 10 + 5]).reshape(2, 4, 4)
    normed, ranges = normalize_maps(maps, mode="channel")
    # 16 values: the 2nd/98th percentiles sit at positions 0.3 and 14.7 of the sorted values.
    np.testing.assert_allclose(ranges, [[0.3, 14.7], [8.0, 152.0]], rtol=1e-12)
    np.testing.assert_allclose(ranges, np.percentile(maps.reshape(2, -1), [2, 98], axis=1).T)
    assert normed.dtype == np.float32 and normed.shape == (2, 4, 4)
    flat = normed.reshape(2, -1)
    assert flat[0, 0] == 0 and flat[0, 15] == 1  # clipped below / above the range
    assert flat[0, 7] == pytest.approx((7 - 0.3) / 14.4, rel=1e-6)
    np.testing.assert_allclose(flat[0], flat[1], atol=1e-6)  # same shape, own range → same picture


def test_constant_map_becomes_zero_and_flat_range_thresholds():
    maps = np.zeros((3, 8, 8), dtype=np.float32)
    maps[0] = 7.5  # constant
    maps[1, 2, 3] = 1.0  # one hot pixel: 2nd and 98th percentiles are both 0
    maps[2] = np.arange(64).reshape(8, 8)
    normed, ranges = normalize_maps(maps, mode="channel")
    assert np.isfinite(normed).all()
    assert (normed[0] == 0).all()
    assert ranges[1].tolist() == [0.0, 0.0]
    expected = np.zeros((8, 8))
    expected[2, 3] = 1
    np.testing.assert_array_equal(normed[1], expected)


def test_model_mode_uses_one_range_for_the_panel():
    maps = np.arange(8.0).reshape(2, 2, 2)
    normed, ranges = normalize_maps(maps, mode="model")
    np.testing.assert_allclose(ranges, [0.14, 6.86])  # positions 0.14 and 6.86 of 0..7
    assert ranges.shape == (2,)
    np.testing.assert_allclose(normed.reshape(-1)[1:7], (np.arange(1, 7) - 0.14) / 6.72, rtol=1e-6)
    assert normed.reshape(-1)[0] == 0 and normed.reshape(-1)[7] == 1


def test_shared_mode_pools_both_panels():
    maps = np.arange(4.0).reshape(1, 2, 2)
    other = np.arange(4.0, 8.0).reshape(1, 2, 2)
    normed, ranges = normalize_maps(maps, mode="shared", shared_with=other)
    np.testing.assert_allclose(ranges, [0.14, 6.86])
    np.testing.assert_allclose(ranges, np.percentile(np.concatenate([maps, other]), [2, 98]))
    np.testing.assert_allclose(normed.reshape(-1), np.clip((np.arange(4) - 0.14) / 6.72, 0, 1), rtol=1e-6)
    _, alone = normalize_maps(maps, mode="model")
    assert alone[1] < 3  # without the other panel the top of the range would be this panel's own


def test_custom_percentiles_0_100_are_min_max():
    maps = np.array([[[3.0, -1.0], [2.0, 9.0]]])
    _, ranges = normalize_maps(maps, mode="channel", low_pct=0, high_pct=100)
    assert ranges.tolist() == [[-1.0, 9.0]]


def test_normalize_rejects_bad_arguments():
    maps = np.zeros((1, 2, 2))
    with pytest.raises(ValueError, match="channel, model, shared"):
        normalize_maps(maps, mode="global")
    with pytest.raises(ValueError, match="shared_with"):
        normalize_maps(maps, mode="shared")
    with pytest.raises(ValueError, match="shared_with"):
        normalize_maps(maps, mode="model", shared_with=maps)
    with pytest.raises(ValueError, match=r"\(K, h, w\)"):
        normalize_maps(np.zeros((2, 2)), mode="channel")
    with pytest.raises(ValueError, match="NaN"):
        normalize_maps(np.full((1, 2, 2), np.nan), mode="channel")


# --- comparison_figure -----------------------------------------------------------------------------


def two_panels(k: int = 64, side: int = 64) -> list[Panel]:
    rng = np.random.default_rng(0)
    return [
        Panel("Baseline", rng.random((k, side, side), dtype=np.float32), STATS),
        Panel("Curriculum", rng.random((k, side, side), dtype=np.float32), STATS),
    ]


def test_default_figure_size_is_deterministic():
    panels = two_panels()
    first = comparison_figure(panels, title="encoder_level_0 | clean_t0 | Sample 0")
    second = comparison_figure(panels, title="encoder_level_0 | clean_t0 | Sample 0")
    layout = figure_layout(panels, title="encoder_level_0 | clean_t0 | Sample 0")
    assert first.dtype == np.uint8 and first.shape == (layout.height, layout.width, 3)
    np.testing.assert_array_equal(first, second)
    assert layout.cell == 64 and layout.grid_extent == 8 * 64 + 7 * 2


@pytest.mark.parametrize("side", [8, 64])
def test_study_cells_give_the_study_figure_size_at_150_dpi(side):
    """The study's PNGs (savefig(20x10 in, dpi=150, bbox tight)) are 2984x1427 px; they were ~1200 px wide."""
    panels = two_panels(k=64, side=side)
    layout = figure_layout(panels, title="bottleneck | clean_t0 | Sample 0", cell_px=render.study_cell_px(8))
    assert abs(layout.width - 2984) <= 0.02 * 2984 and abs(layout.height - 1427) <= 0.05 * 1427
    assert abs(layout.grid_extent - render.STUDY_GRID_PX) <= 8
    assert render.DPI == 150


def test_panel_text_is_the_studys_line_with_our_qualifier_below():
    stats = {"mean": -0.0381, "std": 0.2874, "sparsity": 0.002449, "hoyer": 0.31234}
    assert render._stats_line(stats) == "μ=-0.038 σ=0.287 sparsity=0.24%"  # as the study's set_title
    assert render._qualifier(stats) == "Hoyer=0.312 · sparsity (|x| small) is scale-dependent"
    assert render._qualifier(STATS) == "sparsity (|x| small) is scale-dependent"  # no Hoyer given


def test_channel_colorbar_is_labelled_zero_to_one_as_the_studys():
    assert render._ticks("channel", None) == ("0.0", "0.2", "0.4", "0.6", "0.8", "1.0")
    assert render._colorbar_label("channel") == "Activation Strength"
    assert render._ticks("model", (-1.5, 2.0)) == ("-1.500", "2.000")  # other modes: the value range


def test_figure_grows_by_whole_cells_with_grid_size():
    panels = two_panels(k=16, side=8)
    small = comparison_figure(panels, title="t", grid_size=4)
    large = comparison_figure(panels, title="t", grid_size=8)
    pitch = 64 + 2  # cell + gap
    assert large.shape[0] - small.shape[0] == 4 * pitch
    assert large.shape[1] - small.shape[1] == 2 * 4 * pitch  # two panels side by side


def test_maps_larger_than_the_cell_are_shown_at_their_own_size():
    layout = figure_layout(two_panels(k=4, side=80), title="t", grid_size=2, cell_px=64)
    assert layout.cell == 80


def test_cell_k_shows_map_k_upscaled_nearest_neighbour():
    g = 3
    maps = hot_pixel_maps(g * g)  # (9, 4, 4), cell 64 → each pixel a 16×16 block
    panels = [Panel("Baseline", maps, STATS), Panel("Curriculum", maps[::-1].copy(), STATS)]
    image = comparison_figure(panels, title="t", grid_size=g)
    layout = figure_layout(panels, title="t", grid_size=g)
    for p, order in ((0, range(9)), (1, range(8, -1, -1))):
        for k, m in enumerate(order):
            expected = np.where(np.kron(maps[m], np.ones((16, 16)))[..., None] > 0, YELLOW, PURPLE)
            np.testing.assert_array_equal(crop(image, layout.cell_box(p, k)), expected.astype(np.uint8))
    # the gap between cells 0 and 1 is background
    x0, y0, x1, y1 = layout.cell_box(0, 0)
    assert (image[y0:y1, x1 : x1 + layout.gap] == BACKGROUND).all()


def test_non_dividing_map_fills_its_cell_nearest_neighbour():
    maps = np.zeros((1, 24, 24), dtype=np.float32)
    maps[0, 12:] = 1  # top half low, bottom half high
    maps[0, :, 23] = 0.5  # and a last column of its own
    panels = [Panel("A", maps, STATS)]
    image = comparison_figure(panels, title="t", grid_size=1, norm="model")
    cell = crop(image, figure_layout(panels, title="t", grid_size=1, norm="model").cell_box(0, 0))
    # 24 px into 64 as imshow(interpolation="nearest") draws it: no background, blocks of 2-3 px
    assert not (cell == BACKGROUND).all(-1).any()
    # pixel x shows column x * 24 // 64: column 23 (the mid value) from x = 62
    assert (cell[:32, :62] == PURPLE).all() and (cell[32:, :62] == YELLOW).all()
    mid = cell[0, 63]
    assert (cell[:, 62:] == mid).all() and (mid != PURPLE).any() and (mid != YELLOW).any()


def test_empty_cells_are_background():
    panels = [Panel("Baseline", hot_pixel_maps(5), STATS), Panel("Curriculum", hot_pixel_maps(5), STATS)]
    image = comparison_figure(panels, title="t", grid_size=3)
    layout = figure_layout(panels, title="t", grid_size=3)
    for p in (0, 1):
        for k in range(5, 9):
            assert (crop(image, layout.cell_box(p, k)) == BACKGROUND).all()
        assert not (crop(image, layout.cell_box(p, 4)) == BACKGROUND).all()


def test_model_mode_shows_a_constant_high_map_yellow():
    maps = np.zeros((9, 4, 4), dtype=np.float32)
    maps[0] = 1.0
    panels = [Panel("Baseline", maps, STATS)]
    image = comparison_figure(panels, title="t", grid_size=3, norm="model")
    layout = figure_layout(panels, title="t", grid_size=3, norm="model")
    assert (crop(image, layout.cell_box(0, 0)) == YELLOW).all()
    assert (crop(image, layout.cell_box(0, 1)) == PURPLE).all()
    # in channel mode the same constant map is flat → 0 → purple
    image = comparison_figure(panels, title="t", grid_size=3, norm="channel")
    assert (crop(image, layout.cell_box(0, 0)) == PURPLE).all()


def test_shared_mode_puts_both_panels_on_one_scale_and_one_colorbar():
    low = np.linspace(0, 1, 16, dtype=np.float32).reshape(1, 4, 4).repeat(4, axis=0)
    panels = [Panel("Baseline", low, STATS), Panel("Curriculum", low + 10, STATS)]
    shared = comparison_figure(panels, title="t", grid_size=2, norm="shared")
    layout = figure_layout(panels, title="t", grid_size=2, norm="shared")
    assert len(layout.colorbars) == 1 and layout.colorbars[0][0] > layout.grid_origins[1][0]
    for p, (maps, other) in enumerate(((low, low + 10), (low + 10, low))):
        normed, _ = normalize_maps(maps, mode="shared", shared_with=other)
        levels = (np.kron(normed[0], np.ones((16, 16))) * (render.LEVELS - 1) + 0.5).astype(np.uint8)
        expected = render.palette()[levels]
        np.testing.assert_array_equal(crop(shared, layout.cell_box(p, 0)), expected)
    # per-map scaling would draw both panels identically
    channel = comparison_figure(panels, title="t", grid_size=2, norm="channel")
    layout = figure_layout(panels, title="t", grid_size=2)
    assert len(layout.colorbars) == 2
    np.testing.assert_array_equal(crop(channel, layout.cell_box(0, 0)), crop(channel, layout.cell_box(1, 0)))


def test_colorbar_runs_from_purple_at_the_bottom_to_yellow_at_the_top():
    panels = two_panels(k=4, side=4)
    image = comparison_figure(panels, title="t", grid_size=2)
    for x0, y0, x1, y1 in figure_layout(panels, title="t", grid_size=2).colorbars:
        assert (image[y0, x0:x1] == YELLOW).all()
        assert (image[y1 - 1, x0:x1] == PURPLE).all()


def test_colorbar_label_longer_than_a_tiny_grid_still_fits():
    panels = [Panel("Baseline", np.random.default_rng(3).random((1, 4, 4)), STATS)]
    image = comparison_figure(panels, title="t", grid_size=1, cell_px=16)
    layout = figure_layout(panels, title="t", grid_size=1, cell_px=16)
    grid_bottom = layout.grid_origins[0][1] + layout.grid_extent
    assert (image[grid_bottom:] < 128).any()  # the label runs on below the 16 px grid ...
    assert (image[-10:] == BACKGROUND).all()  # ... and ends inside the figure


def test_too_many_maps_raise_naming_both_numbers():
    with pytest.raises(ValueError, match=r"65 maps.*8x8.*64"):
        comparison_figure([Panel("Baseline", np.zeros((65, 4, 4)), STATS)], title="t")


def test_panel_requires_the_three_stats():
    with pytest.raises(ValueError, match="sparsity"):
        Panel("Baseline", np.zeros((1, 2, 2)), {"mean": 0.0, "std": 1.0})


def test_header_text_is_drawn_and_only_the_header_changes_with_the_title():
    panels = two_panels(k=4, side=4)
    layout = figure_layout(panels, title="encoder_level_2 | noisy_t500 | Sample 0", grid_size=2)
    a = comparison_figure(panels, title="encoder_level_2 | noisy_t500 | Sample 0", grid_size=2)
    b = comparison_figure(panels, title="encoder_level_2 | noisy_t900 | Sample 3", grid_size=2)
    header = slice(0, layout.label_y)
    assert (a[header] < 128).any()  # dark glyphs on white
    assert not np.array_equal(a[header], b[header])
    np.testing.assert_array_equal(a[layout.label_y :], b[layout.label_y :])
    # labels and stats lines sit between the header and the grid
    assert (a[layout.label_y : layout.grid_origins[0][1]] < 128).any()


def test_note_adds_a_line():
    panels = two_panels(k=4, side=4)
    plain = figure_layout(panels, title="t", grid_size=2)
    noted = figure_layout(panels, title="t", grid_size=2, note="matched (mean r=0.62)")
    assert noted.height > plain.height and noted.note_y is not None and plain.note_y is None


def test_value_format_keeps_tiny_numbers_visible():
    assert render._format_value(0.123456) == "0.123"
    assert render._format_value(0.0) == "0.000"
    assert render._format_value(1.2e-5) == "1.2e-05"
    assert render._format_value(-0.004567) == "-0.00457"


# --- input_figure ----------------------------------------------------------------------------------


def test_input_figure_upscales_nearest_neighbour_below_the_caption():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[..., 0] = 255  # pure red ...
    image[1, 2] = (0, 0, 255)  # ... with one blue pixel
    out = input_figure(image, caption="Clean Image (Sample 0)", scale=10)
    ys, xs = np.nonzero((out == (255, 0, 0)).all(-1) | (out == (0, 0, 255)).all(-1))
    assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (40, 40)
    block = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    np.testing.assert_array_equal(block, np.repeat(np.repeat(image, 10, axis=0), 10, axis=1))
    assert (out[: ys.min()] < 128).any()  # the caption above it


def test_input_figure_default_scale_is_the_studys_6_inches_at_150_dpi():
    out = input_figure(np.full((64, 64, 3), 7, dtype=np.uint8), caption="Noisy Image t=500 (Sample 0)")
    assert (out == 7).all(-1).sum() == 768 * 768  # the study's PNG: 849x884 with its title and frame
    assert abs(out.shape[1] - 849) <= 0.06 * 849 and abs(out.shape[0] - 884) <= 0.06 * 884


def test_indexed_png_decodes_to_the_rgb_figure():
    maps = np.random.default_rng(3).normal(size=(2, 5, 8, 8)).astype(np.float32)
    panels = [Panel("Baseline", maps[0], STATS), Panel("Curriculum", maps[1], STATS)]
    rgb = comparison_figure(panels, title="encoder_level_3 | clean_t0 | Sample 0", grid_size=3)
    indices = render.comparison_indices(panels, title="encoder_level_3 | clean_t0 | Sample 0", grid_size=3)
    with Image.open(io.BytesIO(encode_png(indices, palette=render.palette()))) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), rgb)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 30  # viridis levels, text ramps, background
