"""Text for the figures: DejaVu Sans from matplotlib's package data, rendered by PIL into
small cached coverage stamps and blended into an RGB or palette-index canvas in place."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ddpm_lens.output.colours import RAMP_STEPS, RAMPS, TEXT


def line_height(size: int) -> int:
    """Height of one text line for a font of ``size`` px."""
    return round(1.3 * size)


@functools.cache
def get_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """matplotlib's bundled DejaVu Sans (it has μ, σ and the en dash) at ``size`` px.

    The file is found in matplotlib's package data without importing matplotlib (its
    import and font-cache lookup would slow a figure thread's first call).
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


def blend(canvas: np.ndarray, alpha: np.ndarray, xy: tuple[int, int], colour: tuple[int, int, int]):
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
        step = (alpha[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.uint16) * RAMP_STEPS + 127) // 255
        np.copyto(region, (RAMPS[colour] - 1 + step).astype(np.uint8), where=step > 0)
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None].astype(np.uint16)  # (h, w, 1)
    region[...] = (region * (255 - a) + np.asarray(colour, dtype=np.uint16) * a + 127) // 255


@functools.lru_cache(maxsize=1024)
def stamp(text: str, font: ImageFont.FreeTypeFont, anchor: str) -> tuple[np.ndarray, int, int]:
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


def draw_text(
    canvas: np.ndarray,
    xy: tuple[int, int],
    text: str,
    *,
    font: ImageFont.FreeTypeFont,
    anchor: str = "ma",
    colour: tuple[int, int, int] = TEXT,
    vertical: bool = False,
) -> None:
    """Draw ``text`` into canvas (H, W, 3) at ``xy`` with a PIL ``anchor`` ("ma": centred, top
    at y). ``vertical`` text reads bottom-to-top and is centred on ``xy``.

    The glyphs are rendered into a small coverage stamp and blended in place, which keeps the
    whole canvas out of a numpy → PIL → numpy round trip.
    """
    alpha, x0, y0 = stamp(text, font, anchor)
    if vertical:
        alpha = np.rot90(alpha)
        blend(canvas, alpha, (xy[0] - alpha.shape[1] // 2, xy[1] - alpha.shape[0] // 2), colour)
    else:
        blend(canvas, alpha, (xy[0] + x0, xy[1] + y0), colour)
