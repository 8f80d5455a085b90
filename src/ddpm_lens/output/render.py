"""Arrays → images: the baseline-vs-curriculum feature grids and the input thumbnails.

Pure numpy + PIL, no pyplot and no torch: maps are normalised all at once, coloured through
a viridis lookup table and tiled through a reshaped view of the canvas; each piece of text is
rendered by PIL (DejaVu Sans, for μ and σ) into a small stamp blended into the canvas. A
default two-panel figure takes a few tens of ms; :mod:`ddpm_lens.output.png` writes them.

Layout of :func:`comparison_figure` (``norm="channel"``, the seed study's look)::

    ┌─────────────────────────────────────────────────────────┐
    │          encoder_level_2 | noisy_t500 | Sample 0        │  title
    │    Curriculum channels matched to Baseline (r=0.62)     │  optional note
    │        Baseline                  Curriculum             │  panel labels
    │    μ=0.123  σ=0.456           μ=0.089  σ=0.234          │
    │     sparsity=23.5%             sparsity=45.2%           │
    │   [g×g grid] ▐ high           [g×g grid] ▐ high         │  colorbar per panel
    │              ▐ low                       ▐ low          │  (one at the right for "shared")
    └─────────────────────────────────────────────────────────┘
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ddpm_lens.analysis.stats import percentile_range, percentile_scale, scale_to_unit

NORM_MODES = ("channel", "model", "shared")
PANEL_STATS = ("mean", "std", "sparsity")
BACKGROUND = (255, 255, 255)

_TEXT = (25, 25, 25)
_NOTE_TEXT = (90, 90, 90)
_FRAME = (120, 120, 120)
_COLORBAR_LABELS = {
    "channel": "per-map {lo:g}–{hi:g}th pct",
    "model": "per-panel {lo:g}–{hi:g}th pct",
    "shared": "shared {lo:g}–{hi:g}th pct",
}
_LOW_PCT, _HIGH_PCT = 2.0, 98.0  # what the figures use; normalize_maps takes others

# Geometry in pixels.
_MARGIN = 20
_CELL_GAP = 2
_PANEL_GAP = 32
_HEADER_GAP = 12  # between the title/note block and the panel labels
_STATS_GAP = 8  # between the stats lines and the grid
_CBAR_GAP = 10  # between a grid and its colorbar
_CBAR_WIDTH = 14
_TICK_LEN = 4
_TICK_PAD = 3
_CBAR_LABEL_PAD = 5
_WIDEST_VALUE = "-8.88e-88"  # fixes the tick column so same-mode figures share one width

# Font sizes in pixels.
_TITLE_PX = 20
_NOTE_PX = 14
_LABEL_PX = 18
_STATS_PX = 14
_TICK_PX = 12
_CAPTION_PX = 16

_INPUT_TARGET_PX = 320  # input_figure's default scale makes the longer side at most this

# Comparison figures are composed in 8-bit palette indices (a third of the bytes to paint and to
# compress): viridis in _LEVELS steps, the background, the frame, and two text ramps (a colour
# blended over the background at increasing coverage).
_LEVELS = 200
_BG, _FRAME_IDX = _LEVELS, _LEVELS + 1
_RAMP_STEPS = 27
_RAMPS = {_TEXT: _LEVELS + 2, _NOTE_TEXT: _LEVELS + 2 + _RAMP_STEPS}  # colour -> first index


def _line(size: int) -> int:
    """Height of one text line for a font of ``size`` px."""
    return round(1.3 * size)


@functools.cache
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """matplotlib's bundled DejaVu Sans (it has μ, σ and the en dash) at ``size`` px.

    The file is found in matplotlib's package data without importing matplotlib (its
    import and font-cache lookup cost ~0.3 s of a figure thread's first call).
    """
    spec = importlib.util.find_spec("matplotlib")
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder, "mpl-data", "fonts", "ttf", name)
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    from matplotlib import font_manager  # an unusual matplotlib layout: ask it

    props = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    return ImageFont.truetype(font_manager.findfont(props), size)


@functools.cache
def palette() -> np.ndarray:
    """(256, 3) uint8 colours of the comparison figures' palette indices.

    0 .. _LEVELS-1: viridis from dark purple (low) to bright yellow (high); then the
    background, the frame, and the two text colours at 1/n .. n/n coverage over the background.
    """
    import matplotlib

    rgba = matplotlib.colormaps["viridis"](np.linspace(0.0, 1.0, _LEVELS))  # (L, 4) float in [0, 1]
    rows = [np.round(rgba[:, :3] * 255), [BACKGROUND], [_FRAME]]
    coverage = np.arange(1, _RAMP_STEPS + 1)[:, None] / _RAMP_STEPS  # (n, 1)
    for colour in _RAMPS:
        rows.append(np.round(np.multiply(colour, coverage) + np.multiply(BACKGROUND, 1 - coverage)))
    pal = np.concatenate(rows).astype(np.uint8)
    assert pal.shape == (256, 3)
    pal.flags.writeable = False
    return pal


def _colorbar_label(norm: str) -> str:
    return _COLORBAR_LABELS[norm].format(lo=_LOW_PCT, hi=_HIGH_PCT)


def _format_value(value: float) -> str:
    """3 decimals for ordinary magnitudes, 3 significant digits for tiny or huge ones (1e-05)."""
    if value == 0 or 0.01 <= abs(value) < 1000:
        return f"{value:.3f}"
    return f"{value:.3g}"


# ---------------------------------------------------------------------------------------------
# Normalisation


def normalize_maps(
    maps: np.ndarray,
    *,
    mode: str,
    shared_with: np.ndarray | None = None,
    low_pct: float = _LOW_PCT,
    high_pct: float = _HIGH_PCT,
) -> tuple[np.ndarray, np.ndarray]:
    """Map activation maps to [0, 1] between two percentiles, clipping outside them.

    Args:
        maps: (K, h, w) float, the maps of one panel.
        mode: ``"channel"`` (each map to its own range, the seed study's choice), ``"model"``
            (one range over the whole panel) or ``"shared"`` (one range over this panel and
            ``shared_with``, so both panels use the same colour scale).
        shared_with: the other panel(s)' maps, any shape (their values are pooled); only
            with ``mode="shared"``.
        low_pct, high_pct: the percentiles mapped to 0 and 1.

    Returns:
        ``(normed, ranges)``: normed is (K, h, w) float32 in [0, 1]; ranges holds the
        (low, high) used, (K, 2) float64 for ``"channel"`` and (2,) otherwise. A map whose
        range is empty (high == low) is thresholded at that value, so a constant map is all 0.
    """
    if mode not in NORM_MODES:
        raise ValueError(f"unknown norm mode {mode!r}; valid modes: {', '.join(NORM_MODES)}")
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (K, h, w), got shape {maps.shape}")
    if (shared_with is None) == (mode == "shared"):
        raise ValueError("shared_with is required with mode='shared' and only allowed with it")
    if not 0 <= low_pct < high_pct <= 100:
        raise ValueError(f"need 0 <= low_pct < high_pct <= 100, got {low_pct} and {high_pct}")
    if maps.size == 0:
        raise ValueError(f"maps is empty (shape {maps.shape})")
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or inf; check the activations before rendering")

    if mode == "channel":
        return percentile_scale(maps, low_pct, high_pct)
    pool = maps.reshape(-1)
    if mode == "shared":
        pool = np.concatenate([pool, np.asarray(shared_with, dtype=maps.dtype).reshape(-1)])
    ranges = percentile_range(pool, low_pct, high_pct)  # (2,)
    return scale_to_unit(maps, ranges[0], ranges[1]), ranges


# ---------------------------------------------------------------------------------------------
# Comparison figure


@dataclass(frozen=True)
class Panel:
    """One model's side of a comparison figure.

    Attributes:
        label: heading, e.g. ``"Baseline"``.
        maps: (K, h, w) float, the channels to show, already ranked; map k goes to cell k
            (row-major).
        stats: at least ``mean``, ``std`` and ``sparsity`` (a fraction in [0, 1]).
        channels: original channel index of each map, for callers that tabulate them; not drawn.
        normed: optional, ``maps`` already scaled each to its own 2nd-98th percentile by
            :func:`ddpm_lens.analysis.stats.percentile_scale` (a caller that computed them for its
            statistics saves the figure the work); used with ``norm="channel"`` only.
    """

    label: str
    maps: np.ndarray
    stats: Mapping[str, float]
    channels: Sequence[int] | None = None
    normed: np.ndarray | None = None

    def __post_init__(self):
        if np.ndim(self.maps) != 3:
            raise ValueError(f"Panel {self.label!r}: maps must be (K, h, w), got shape {np.shape(self.maps)}")
        missing = [key for key in PANEL_STATS if key not in self.stats]
        if missing:
            raise ValueError(f"Panel {self.label!r}: stats lack {', '.join(missing)}")
        if self.normed is not None and np.shape(self.normed) != np.shape(self.maps):
            raise ValueError(
                f"Panel {self.label!r}: normed maps {np.shape(self.normed)} and maps "
                f"{np.shape(self.maps)} differ in shape"
            )
        if self.channels is not None and len(self.channels) != len(self.maps):
            raise ValueError(
                f"Panel {self.label!r}: {len(self.channels)} channel indices for {len(self.maps)} maps"
            )


@dataclass(frozen=True)
class FigureLayout:
    """Pixel geometry of a comparison figure; boxes are (x0, y0, x1, y1), x1/y1 exclusive."""

    width: int
    height: int
    grid_size: int
    cell: int  # side of a square cell
    gap: int  # between neighbouring cells
    grid_origins: tuple[tuple[int, int], ...]  # (x, y) of each panel's top-left cell
    colorbars: tuple[tuple[int, int, int, int], ...]  # one per panel, or one for "shared"
    title_y: int
    note_y: int | None
    label_y: int
    stats_y: int  # first of the two stats lines

    @property
    def grid_extent(self) -> int:
        """Side of one panel's grid, gaps included."""
        return self.grid_size * self.cell + (self.grid_size - 1) * self.gap

    def cell_box(self, panel: int, k: int) -> tuple[int, int, int, int]:
        """Box of cell ``k`` (row-major) of panel ``panel``."""
        row, col = divmod(k, self.grid_size)
        x0 = self.grid_origins[panel][0] + col * (self.cell + self.gap)
        y0 = self.grid_origins[panel][1] + row * (self.cell + self.gap)
        return x0, y0, x0 + self.cell, y0 + self.cell


def figure_layout(
    panels: Sequence[Panel],
    *,
    title: str,
    grid_size: int = 8,
    norm: str = "channel",
    note: str | None = None,
    cell_px: int = 64,
) -> FigureLayout:
    """The geometry :func:`comparison_figure` draws with the same arguments.

    Cells are squares of ``max(cell_px, largest map side)`` px, so a map larger than
    ``cell_px`` is shown at its own size.
    """
    if not panels:
        raise ValueError("comparison_figure needs at least one panel")
    if norm not in NORM_MODES:
        raise ValueError(f"unknown norm mode {norm!r}; valid modes: {', '.join(NORM_MODES)}")
    if grid_size < 1 or cell_px < 1:
        raise ValueError(f"grid_size and cell_px must be >= 1, got {grid_size} and {cell_px}")
    for panel in panels:
        if len(panel.maps) > grid_size**2:
            raise ValueError(
                f"Panel {panel.label!r} has {len(panel.maps)} maps but a {grid_size}x{grid_size} grid "
                f"holds {grid_size**2}"
            )

    cell = max(cell_px, *(max(np.shape(p.maps)[1:]) for p in panels))
    extent = grid_size * cell + (grid_size - 1) * _CELL_GAP
    if norm == "channel":
        tick_width = math.ceil(max(_font(_TICK_PX).getlength(t) for t in ("low", "high")))
    else:
        tick_width = math.ceil(_font(_TICK_PX).getlength(_WIDEST_VALUE))
    cbar_block = _CBAR_GAP + _CBAR_WIDTH + _TICK_LEN + _TICK_PAD + tick_width + _CBAR_LABEL_PAD
    cbar_block += _line(_TICK_PX)  # the rotated label

    y = _MARGIN
    title_y = y
    y += _line(_TITLE_PX)
    note_y = None
    if note:
        note_y = y
        y += _line(_NOTE_PX)
    y += _HEADER_GAP
    label_y = y
    y += _line(_LABEL_PX)
    stats_y = y
    grid_y = y + 2 * _line(_STATS_PX) + _STATS_GAP

    x = _MARGIN
    grid_xs, cbar_xs = [], []
    for i in range(len(panels)):
        grid_xs.append(x)
        x += extent
        if norm != "shared" or i == len(panels) - 1:
            cbar_xs.append(x + _CBAR_GAP)
            x += cbar_block
        if i < len(panels) - 1:
            x += _PANEL_GAP
    content_right = x + _MARGIN
    text_width = max(
        _font(_TITLE_PX, bold=True).getlength(title),
        _font(_NOTE_PX).getlength(note) if note else 0,
    )
    width = max(content_right, math.ceil(text_width) + 2 * _MARGIN)
    shift = (width - content_right) // 2  # centre the panels under a title wider than them

    label_length = math.ceil(_font(_TICK_PX).getlength(_colorbar_label(norm)))
    return FigureLayout(
        width=width,
        height=grid_y + max(extent, label_length) + _MARGIN,
        grid_size=grid_size,
        cell=cell,
        gap=_CELL_GAP,
        grid_origins=tuple((gx + shift, grid_y) for gx in grid_xs),
        colorbars=tuple((cx + shift, grid_y, cx + shift + _CBAR_WIDTH, grid_y + extent) for cx in cbar_xs),
        title_y=title_y,
        note_y=note_y,
        label_y=label_y,
        stats_y=stats_y,
    )


def _paint_grid(canvas: np.ndarray, normed: np.ndarray, *, origin: tuple[int, int], layout: FigureLayout):
    """Paint (K, h, w) maps in [0, 1] as a viridis grid into the index canvas (H, W) at ``origin``.

    Each map is upscaled nearest-neighbour by the largest integer factor that fits the cell
    and centred in it; cells beyond K and the gaps keep the background.
    """
    g, cell, pitch = layout.grid_size, layout.cell, layout.cell + layout.gap
    k, h, w = normed.shape
    factor = min(cell // h, cell // w)
    hf, wf = h * factor, w * factor
    idx = (normed * (_LEVELS - 1) + 0.5).astype(np.uint8)  # (K, h, w) palette indices
    idx = np.broadcast_to(idx[:, :, None, :, None], (k, h, factor, w, factor)).reshape(k, hf, wf)
    if k < g * g:
        idx = np.concatenate([idx, np.full((g * g - k, hf, wf), _BG, dtype=np.uint8)])
    x, y = origin
    # A view of the grid's region split into cells: (row, y in cell, col, x in cell); the region
    # includes one trailing gap, which the figure's margins always leave room for.
    cells = canvas[y : y + g * pitch, x : x + g * pitch].reshape(g, pitch, g, pitch)
    oy, ox = (cell - hf) // 2, (cell - wf) // 2
    cells[:, oy : oy + hf, :, ox : ox + wf] = idx.reshape(g, g, hf, wf).transpose(0, 2, 1, 3)


def _normalize_panels(panels: Sequence[Panel], norm: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each panel's maps in [0, 1] and the range(s) used; "shared" computes its range once."""
    if norm == "channel" and all(p.normed is not None for p in panels):
        return [p.normed for p in panels], [None] * len(panels)  # channel ranges label no ticks
    if norm != "shared":
        pairs = [normalize_maps(p.maps, mode=norm) for p in panels]
        return [n for n, _ in pairs], [r for _, r in pairs]
    others = np.concatenate([np.asarray(p.maps).reshape(-1) for p in panels[1:]] or [np.zeros(0)])
    first, ranges = normalize_maps(panels[0].maps, mode="shared", shared_with=others)
    rest = [scale_to_unit(np.asarray(p.maps), ranges[0], ranges[1]) for p in panels[1:]]
    return [first, *rest], [ranges]


def _blend(canvas: np.ndarray, alpha: np.ndarray, xy: tuple[int, int], colour: tuple[int, int, int]):
    """Blend ``colour`` into the canvas through coverage ``alpha`` (h, w) uint8 placed at ``xy``
    (top-left), clipped to the canvas. An RGB canvas (H, W, 3) is alpha-blended; an index
    canvas (H, W) gets the colour's palette ramp step for each covered pixel."""
    x, y = xy
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + alpha.shape[1], canvas.shape[1]), min(y + alpha.shape[0], canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    region = canvas[y0:y1, x0:x1]
    if canvas.ndim == 2:
        step = (alpha[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.uint16) * _RAMP_STEPS + 127) // 255
        np.copyto(region, (_RAMPS[colour] - 1 + step).astype(np.uint8), where=step > 0)
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None].astype(np.uint16)  # (h, w, 1)
    region[...] = (region * (255 - a) + np.asarray(colour, dtype=np.uint16) * a + 127) // 255


@functools.lru_cache(maxsize=1024)
def _stamp(text: str, font: ImageFont.FreeTypeFont, anchor: str) -> tuple[np.ndarray, int, int]:
    """Coverage (h, w) uint8 of ``text`` and its top-left offset from the anchor point.

    Cached: panel labels, colorbar ticks and labels repeat in every figure (8 of the 13
    pieces of text of a default figure), and FreeType rendering is most of the text's cost.
    """
    x0, y0, x1, y1 = font.getbbox(text, anchor=anchor)
    stamp = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(stamp).text((-x0, -y0), text, font=font, fill=255, anchor=anchor)
    alpha = np.array(stamp)  # (h, w), owned
    alpha.flags.writeable = False
    return alpha, x0, y0


def _text(
    canvas: np.ndarray,
    xy: tuple[int, int],
    text: str,
    *,
    font: ImageFont.FreeTypeFont,
    anchor: str = "ma",
    colour: tuple[int, int, int] = _TEXT,
    vertical: bool = False,
) -> None:
    """Draw ``text`` into canvas (H, W, 3) at ``xy`` with a PIL ``anchor`` ("ma": centred, top
    at y). ``vertical`` text reads bottom-to-top and is centred on ``xy``.

    The glyphs are rendered into a small coverage stamp and blended in place, which keeps the
    whole canvas out of a numpy → PIL → numpy round trip.
    """
    alpha, x0, y0 = _stamp(text, font, anchor)
    if vertical:
        alpha = np.rot90(alpha)
        _blend(canvas, alpha, (xy[0] - alpha.shape[1] // 2, xy[1] - alpha.shape[0] // 2), colour)
    else:
        _blend(canvas, alpha, (xy[0] + x0, xy[1] + y0), colour)


def _paint_colorbar(
    canvas: np.ndarray, box: tuple[int, int, int, int], *, ticks: tuple[str, str], label: str
):
    """A framed vertical viridis gradient in ``box`` (high at the top), tick labels
    ``(low, high)`` at its ends and ``label`` reading upwards just right of them (the layout
    reserves room for the widest possible tick)."""
    x0, y0, x1, y1 = box
    canvas[y0:y1, x0:x1] = np.round(np.linspace(_LEVELS - 1, 0, y1 - y0)).astype(np.uint8)[:, None]
    canvas[[y0 - 1, y1], x0 - 1 : x1 + 1] = _FRAME_IDX
    canvas[y0 - 1 : y1 + 1, [x0 - 1, x1]] = _FRAME_IDX
    tick_font = _font(_TICK_PX)
    for y, tick in ((y1 - 1, ticks[0]), (y0, ticks[1])):
        canvas[y, x1 : x1 + _TICK_LEN] = _FRAME_IDX
        _text(canvas, (x1 + _TICK_LEN + _TICK_PAD, y), tick, font=tick_font, anchor="lm")
    tick_width = math.ceil(max(tick_font.getlength(t) for t in ticks))
    label_x = x1 + _TICK_LEN + _TICK_PAD + tick_width + _CBAR_LABEL_PAD + _line(_TICK_PX) // 2
    # centred on the bar, or hanging from its top when longer than the bar (tiny grids)
    label_y = y0 + max(y1 - y0, math.ceil(tick_font.getlength(label))) // 2
    _text(canvas, (label_x, label_y), label, font=tick_font, vertical=True)


def comparison_figure(panels: Sequence[Panel], **kwargs) -> np.ndarray:
    """:func:`comparison_indices` as an (H, W, 3) uint8 RGB image (same arguments)."""
    return palette()[comparison_indices(panels, **kwargs)]


def comparison_indices(
    panels: Sequence[Panel],
    *,
    title: str,
    grid_size: int = 8,
    norm: str = "channel",
    note: str | None = None,
    cell_px: int = 64,
) -> np.ndarray:
    """Side-by-side g×g grids of activation maps with stats and colorbars, as palette indices.

    Args:
        panels: usually two (Baseline, Curriculum); each panel's map k fills cell k, row-major.
        title: the centred header, e.g. ``"encoder_level_2 | noisy_t500 | Sample 0"``.
        grid_size: cells per side; a panel with more than grid_size² maps is an error.
        norm: see :func:`normalize_maps` (``channel``, ``model`` or ``shared``), with the
            2nd–98th percentiles.
        note: optional grey line under the title.
        cell_px: minimum cell side; maps are upscaled nearest-neighbour by an integer factor.

    Returns:
        (H, W) uint8 indices into :func:`palette`; :func:`figure_layout` with the same arguments
        gives its geometry. ``png.write_png(path, indices, palette=palette())`` stores it as is.
    """
    layout = figure_layout(panels, title=title, grid_size=grid_size, norm=norm, note=note, cell_px=cell_px)
    normed, ranges = _normalize_panels(panels, norm)

    canvas = np.full((layout.height, layout.width), _BG, dtype=np.uint8)  # (H, W) palette indices
    for origin, maps01 in zip(layout.grid_origins, normed):
        _paint_grid(canvas, maps01, origin=origin, layout=layout)

    centre = layout.width // 2
    _text(canvas, (centre, layout.title_y), title, font=_font(_TITLE_PX, bold=True))
    if note:
        _text(canvas, (centre, layout.note_y), note, font=_font(_NOTE_PX), colour=_NOTE_TEXT)
    stats_font = _font(_STATS_PX)
    for panel, (gx, _) in zip(panels, layout.grid_origins):
        cx = gx + layout.grid_extent // 2
        _text(canvas, (cx, layout.label_y), panel.label, font=_font(_LABEL_PX, bold=True))
        mean, std = _format_value(panel.stats["mean"]), _format_value(panel.stats["std"])
        _text(canvas, (cx, layout.stats_y), f"μ={mean}  σ={std}", font=stats_font)
        sparsity = f"sparsity={100 * panel.stats['sparsity']:.1f}%"
        _text(canvas, (cx, layout.stats_y + _line(_STATS_PX)), sparsity, font=stats_font)

    label = _colorbar_label(norm)
    for box, rng in zip(layout.colorbars, ranges):
        ticks = ("low", "high") if norm == "channel" else (_format_value(rng[0]), _format_value(rng[1]))
        _paint_colorbar(canvas, box, ticks=ticks, label=label)
    return canvas


# ---------------------------------------------------------------------------------------------
# Input images


def input_figure(image: np.ndarray, *, caption: str, scale: int | None = None) -> np.ndarray:
    """An input image upscaled nearest-neighbour with ``caption`` centred above it.

    Args:
        image: (H, W, 3) uint8 RGB.
        caption: e.g. ``"Noisy Image t=500 (Sample 0)"``.
        scale: integer upscale factor; default makes the longer side at most 320 px
            (a 64×64 image becomes 320×320), never below 1.

    Returns:
        (H', W', 3) uint8 RGB on a white background.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got shape {image.shape} dtype {image.dtype}")
    h, w, _ = image.shape
    if scale is None:
        scale = max(1, _INPUT_TARGET_PX // max(h, w))
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    big = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)  # (H·s, W·s, 3)

    font = _font(_CAPTION_PX, bold=True)
    width = max(w * scale, math.ceil(font.getlength(caption))) + 2 * _MARGIN
    image_y = _MARGIN + _line(_CAPTION_PX) + _STATS_GAP
    canvas = np.full((image_y + h * scale + _MARGIN, width, 3), BACKGROUND, dtype=np.uint8)
    x0 = (width - w * scale) // 2
    canvas[image_y : image_y + h * scale, x0 : x0 + w * scale] = big

    _text(canvas, (width // 2, _MARGIN), caption, font=font)
    return canvas
