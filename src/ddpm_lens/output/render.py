"""Arrays → images: the baseline-vs-curriculum feature grids and the input thumbnails.

Pure numpy + PIL, no pyplot and no torch: maps are normalised all at once
(:mod:`~ddpm_lens.output.colours`), coloured through a viridis palette and tiled through a
reshaped view of the canvas; text comes from :mod:`~ddpm_lens.output.text_stamps`;
:mod:`ddpm_lens.output.png` writes the figures.

Layout of :func:`comparison_figure` (``norm="channel"``, the seed study's look)::

    ┌──────────────────────────────────────────────────────────────────┐
    │             encoder_level_2 | noisy_t500 | Sample 0              │  title
    │       Curriculum channels matched to Baseline (r=0.62)           │  optional note
    │            Baseline                       Curriculum             │  panel labels
    │ μ=0.123 σ=0.456 sparsity=23.51%  μ=0.089 σ=0.234 sparsity=45.20% │  the study's line
    │ Hoyer=0.412 · sparsity: scale-dependent   Hoyer=0.388 · ...      │  ours (grey)
    │   [g×g grid] ▐ 1.0                [g×g grid] ▐ 1.0               │  colorbar per panel,
    │              ▐ 0.0 Activation Strength       ▐ 0.0 ...           │  0–1 as the study's
    └──────────────────────────────────────────────────────────────────┘

The text is the study's (``visualize_features.py``: its titles, ``μ=… σ=… sparsity=…%`` with
three and two decimals, a colour bar from 0 to 1 labelled "Activation Strength") at its sizes
for a 150 dpi figure (16, 14, 12 and 10 pt); :data:`STUDY_GRID_PX` and :func:`study_cell_px`
give the cells the study's 20×10 inch figures have at 150 dpi (about 2984×1427 px). The grey
line is ours: the study's sparsity (share of |x| below 0.001) reads the layer's scale, not its
shape, so each panel also shows the scale-free Hoyer sparseness when its statistics have it.
With ``norm="model"``/``"shared"`` the colour bar gives the panel's value range instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ddpm_lens.analysis.stat_registry import PANEL_STATS
from ddpm_lens.analysis.stats import scale_to_unit
from ddpm_lens.output.colours import (
    BACKGROUND,
    BG_INDEX,
    FRAME_INDEX,
    HIGH_PCT,
    LEVELS,
    LOW_PCT,
    NORM_MODES,
    NOTE_TEXT,
    normalize_maps,
    palette,
)
from ddpm_lens.output.text_stamps import draw_text, get_font, line_height

_COLORBAR_LABELS = {
    "channel": "Activation Strength",  # the study's label: each map scaled to [0, 1]
    "model": "per-panel {lo:g}–{hi:g}th pct",
    "shared": "shared {lo:g}–{hi:g}th pct",
}

# Geometry in pixels (a 150 dpi figure).
DPI = 150  # the study's savefig(dpi=150); stored in each PNG's pHYs chunk
STUDY_GRID_PX = 1264  # side of one panel's grid in the study's 20x10 inch figures at 150 dpi
_MARGIN = 20
_CELL_GAP = 2
_PANEL_GAP = 64
_HEADER_GAP = 12  # between the title/note block and the panel labels
_STATS_GAP = 10  # between the stats lines and the grid
_CBAR_GAP = 30  # between a grid and its colorbar
_CBAR_WIDTH = 60
_TICK_LEN = 7
_TICK_PAD = 5
_CBAR_LABEL_PAD = 10
_WIDEST_VALUE = "-8.88e-88"  # fixes the tick column so same-mode figures share one width
_UNIT_TICKS = tuple(f"{v / 10:.1f}" for v in range(0, 11, 2))  # 0.0, 0.2, ..., 1.0: matplotlib's

# Font sizes in pixels: the study's points at 150 dpi (pt * 150 / 72).
_TITLE_PX = 33  # 16 pt, bold
_NOTE_PX = 25
_LABEL_PX = 29  # 14 pt, bold: the panel's two title lines
_STATS_PX = 29
_QUALIFIER_PX = 25  # our grey line under the study's stats
_TICK_PX = 21  # 10 pt
_CBAR_LABEL_PX = 25  # 12 pt
_CAPTION_PX = 29  # 14 pt, bold

_INPUT_TARGET_PX = 768  # input_figure's default scale makes the longer side at most this


def study_cell_px(grid_size: int) -> int:
    """The cell side that makes a ``grid_size``² grid as large as the study's panels."""
    return max(1, (STUDY_GRID_PX - (grid_size - 1) * _CELL_GAP) // grid_size)


def _colorbar_label(norm: str) -> str:
    return _COLORBAR_LABELS[norm].format(lo=LOW_PCT, hi=HIGH_PCT)


def _qualifier(stats: Mapping[str, float]) -> str:
    """Our line under the study's: the scale-free Hoyer sparseness, and what the study's sparsity is."""
    hoyer = stats.get("hoyer")
    head = f"Hoyer={hoyer:.3f} · " if hoyer is not None and np.isfinite(hoyer) else ""
    return head + "sparsity (|x| small) is scale-dependent"


def _ticks(norm: str, rng) -> tuple[str, ...]:
    """Tick labels, bottom to top: 0.0 … 1.0 for the per-map [0, 1] scale, else the range's ends."""
    return _UNIT_TICKS if norm == "channel" else (_format_value(rng[0]), _format_value(rng[1]))


def _format_value(value: float) -> str:
    """3 decimals for ordinary magnitudes, 3 significant digits for tiny or huge ones (1e-05)."""
    if value == 0 or 0.01 <= abs(value) < 1000:
        return f"{value:.3f}"
    return f"{value:.3g}"


# ---------------------------------------------------------------------------------------------
# Comparison figure


@dataclass(frozen=True)
class Panel:
    """One model's side of a comparison figure.

    Attributes:
        label: heading, e.g. ``"Baseline"``.
        maps: (K, h, w) float, the channels to show, already ranked; map k goes to cell k
            (row-major).
        stats: at least ``mean``, ``std`` and ``sparsity`` (a fraction in [0, 1]); ``hoyer``
            when present is printed on the grey line.
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
    stats_y: int  # the study's stats line; our grey line follows it

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
    widest = _UNIT_TICKS if norm == "channel" else (_WIDEST_VALUE,)
    tick_width = math.ceil(max(get_font(_TICK_PX).getlength(t) for t in widest))
    cbar_block = _CBAR_GAP + _CBAR_WIDTH + _TICK_LEN + _TICK_PAD + tick_width + _CBAR_LABEL_PAD
    cbar_block += line_height(_CBAR_LABEL_PX)  # the rotated label

    y = _MARGIN
    title_y = y
    y += line_height(_TITLE_PX)
    note_y = None
    if note:
        note_y = y
        y += line_height(_NOTE_PX)
    y += _HEADER_GAP
    label_y = y
    y += line_height(_LABEL_PX)
    stats_y = y
    grid_y = y + line_height(_STATS_PX) + line_height(_QUALIFIER_PX) + _STATS_GAP

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
        get_font(_TITLE_PX, bold=True).getlength(title),
        get_font(_NOTE_PX).getlength(note) if note else 0,
    )
    width = max(content_right, math.ceil(text_width) + 2 * _MARGIN)
    shift = (width - content_right) // 2  # centre the panels under a title wider than them

    label_length = math.ceil(get_font(_CBAR_LABEL_PX).getlength(_colorbar_label(norm)))
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

    Each map fills its cell, upscaled nearest-neighbour as matplotlib's ``imshow`` does (pixel
    blocks of whole size when the cell is a multiple of the map, else one pixel apart); cells
    beyond K and the gaps keep the background.
    """
    g, cell, pitch = layout.grid_size, layout.cell, layout.cell + layout.gap
    k, h, w = normed.shape
    hf, wf = cell, cell
    idx = (normed * (LEVELS - 1) + 0.5).astype(np.uint8)  # (K, h, w) palette indices
    rows, cols = (np.arange(cell) * h) // cell, (np.arange(cell) * w) // cell  # source of each pixel
    idx = idx[:, rows][:, :, cols]  # (K, cell, cell)
    if k < g * g:
        idx = np.concatenate([idx, np.full((g * g - k, hf, wf), BG_INDEX, dtype=np.uint8)])
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


def _paint_colorbar(
    canvas: np.ndarray, box: tuple[int, int, int, int], *, ticks: tuple[str, str], label: str
):
    """A framed vertical viridis gradient in ``box`` (high at the top), ``ticks`` spread evenly
    from its bottom to its top and ``label`` reading upwards just right of them (the layout
    reserves room for the widest possible tick)."""
    x0, y0, x1, y1 = box
    canvas[y0:y1, x0:x1] = np.round(np.linspace(LEVELS - 1, 0, y1 - y0)).astype(np.uint8)[:, None]
    canvas[[y0 - 1, y1], x0 - 1 : x1 + 1] = FRAME_INDEX
    canvas[y0 - 1 : y1 + 1, [x0 - 1, x1]] = FRAME_INDEX
    tick_font, label_font = get_font(_TICK_PX), get_font(_CBAR_LABEL_PX)
    last = len(ticks) - 1
    for i, tick in enumerate(ticks):
        y = round(y1 - 1 - i * (y1 - 1 - y0) / last)
        canvas[y, x1 : x1 + _TICK_LEN] = FRAME_INDEX
        draw_text(canvas, (x1 + _TICK_LEN + _TICK_PAD, y), tick, font=tick_font, anchor="lm")
    tick_width = math.ceil(max(tick_font.getlength(t) for t in ticks))
    label_x = x1 + _TICK_LEN + _TICK_PAD + tick_width + _CBAR_LABEL_PAD + line_height(_CBAR_LABEL_PX) // 2
    # centred on the bar, or hanging from its top when longer than the bar (tiny grids)
    label_y = y0 + max(y1 - y0, math.ceil(label_font.getlength(label))) // 2
    draw_text(canvas, (label_x, label_y), label, font=label_font, vertical=True)


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

    canvas = np.full((layout.height, layout.width), BG_INDEX, dtype=np.uint8)  # (H, W) palette indices
    for origin, maps01 in zip(layout.grid_origins, normed):
        _paint_grid(canvas, maps01, origin=origin, layout=layout)

    centre = layout.width // 2
    draw_text(canvas, (centre, layout.title_y), title, font=get_font(_TITLE_PX, bold=True))
    if note:
        draw_text(canvas, (centre, layout.note_y), note, font=get_font(_NOTE_PX), colour=NOTE_TEXT)
    stats_font, qualifier_font = get_font(_STATS_PX, bold=True), get_font(_QUALIFIER_PX)
    for panel, (gx, _) in zip(panels, layout.grid_origins):
        cx = gx + layout.grid_extent // 2
        draw_text(canvas, (cx, layout.label_y), panel.label, font=get_font(_LABEL_PX, bold=True))
        draw_text(canvas, (cx, layout.stats_y), _stats_line(panel.stats), font=stats_font)
        qualifier_y = layout.stats_y + line_height(_STATS_PX)
        draw_text(canvas, (cx, qualifier_y), _qualifier(panel.stats), font=qualifier_font, colour=NOTE_TEXT)

    label = _colorbar_label(norm)
    for box, rng in zip(layout.colorbars, ranges):
        _paint_colorbar(canvas, box, ticks=_ticks(norm, rng), label=label)
    return canvas


def _stats_line(stats: Mapping[str, float]) -> str:
    """The study's panel line: ``μ=-0.038 σ=0.287 sparsity=0.24%`` (its 3 and 2 decimals)."""
    mean, std = _format_value(stats["mean"]), _format_value(stats["std"])
    return f"μ={mean} σ={std} sparsity={stats['sparsity']:.2%}"


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

    font = get_font(_CAPTION_PX, bold=True)
    width = max(w * scale, math.ceil(font.getlength(caption))) + 2 * _MARGIN
    image_y = _MARGIN + line_height(_CAPTION_PX) + _STATS_GAP
    canvas = np.full((image_y + h * scale + _MARGIN, width, 3), BACKGROUND, dtype=np.uint8)
    x0 = (width - w * scale) // 2
    canvas[image_y : image_y + h * scale, x0 : x0 + w * scale] = big

    draw_text(canvas, (width // 2, _MARGIN), caption, font=font)
    return canvas
