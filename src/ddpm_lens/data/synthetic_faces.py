"""Procedurally drawn faces: a built-in dataset that needs no download.

Each face is a pure function of ``(index, seed)``: skin tone, hair (colour, length,
fringe), eyes with iris and pupil, eyebrows, nose, mouth, ears, clothes, background and a
small pose change (tilt, shift, scale) all come from ``np.random.default_rng([seed, index])``.
The framing follows aligned CelebA crops: eyes a little above the middle about a quarter
of the image apart, chin near the bottom edge, hair reaching the top.

Shapes are polygons in a face-local frame (origin at the head centre, y down, units of the
image side), so one rotation, scale and shift places every part. They are drawn with PIL
at four times the target resolution and downsampled with LANCZOS for anti-aliasing.

Make a sample sheet::

    python -c "from PIL import Image; from ddpm_lens.data.synthetic_faces import sample_grid; \\
        Image.fromarray(sample_grid(8, 64)).save('docs/synthetic_faces.png')"
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ddpm_lens.util.errors import UserError

MIN_RESOLUTION = 16
_SUPERSAMPLE = 4
_GRADIENT_SIZE = 16

# (RGB, weight): hair colours roughly in CelebA's proportions.
_HAIR = [
    ((22, 17, 14), 0.30),
    ((58, 38, 26), 0.25),
    ((105, 70, 42), 0.15),
    ((200, 160, 95), 0.12),
    ((140, 62, 30), 0.07),
    ((150, 148, 145), 0.06),
    ((228, 205, 150), 0.05),
]
_IRIS = [(70, 45, 25), (40, 28, 18), (60, 110, 165), (80, 125, 75), (120, 95, 50), (95, 110, 120)]
# Light to dark skin tones; a face's tone is a jittered blend of two neighbours.
_SKIN = np.array(
    [(255, 226, 205), (241, 194, 160), (224, 172, 130), (198, 140, 100), (160, 105, 70), (110, 70, 45)],
    dtype=np.float64,
)
_EYE_WHITE = (245, 242, 238)
_PUPIL = (12, 10, 10)
_LID = (35, 25, 20)
_TEETH = (240, 236, 228)
# The factors a face is drawn from (face_factors), in this column order; all independent draws.
FACE_FACTORS = (
    "background_solid",
    "background_level",
    "head_scale",
    "shift_x",
    "shift_y",
    "tilt",
    "skin_tone",
    "hair_colour",
    "iris_colour",
    "clothes_level",
    "head_width",
    "head_aspect",
    "jaw",
    "hair_length",
    "fringe",
    "eye_spacing",
    "gaze",
    "brow_raise",
    "smile",
    "mouth_width",
)


def _rgb(c) -> tuple[int, int, int]:
    return tuple(int(round(min(255.0, max(0.0, v)))) for v in c)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return _rgb(np.asarray(a, dtype=np.float64) * (1 - t) + np.asarray(b, dtype=np.float64) * t)


def _ellipse(cx, cy, rx, ry, a0=0.0, a1=2 * np.pi, n=40) -> np.ndarray:
    """Points along an elliptical arc from angle a0 to a1 (radians, y down): (n, 2)."""
    t = a0 + (a1 - a0) / (n - 1) * np.arange(n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _curve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([x, y], axis=1)  # (n, 2)


class _Canvas:
    """A supersampled image plus the face-local frame: pixel = centre + scale * R(tilt) @ point."""

    def __init__(self, img: Image.Image, centre: np.ndarray, scale: float, tilt: float):
        self.img = img
        self._draw = ImageDraw.Draw(img)
        self._centre = centre
        self._scale = scale
        self._rot_t = np.array([[np.cos(tilt), np.sin(tilt)], [-np.sin(tilt), np.cos(tilt)]])

    def _place(self, points) -> list[float]:
        """Face-local points (n, 2) -> flat pixel coordinates [x0, y0, x1, y1, ...]."""
        return (self._centre + self._scale * (np.asarray(points) @ self._rot_t)).ravel().tolist()

    def poly(self, points, fill) -> None:
        self._draw.polygon(self._place(points), fill=fill)

    def line(self, points, fill, width: float) -> None:
        """A polyline whose width is in face-local units."""
        px = max(1, int(round(width * self._scale)))
        self._draw.line(self._place(points), fill=fill, width=px, joint="curve")


def _background(rng: np.random.Generator, size: int) -> tuple[Image.Image, dict]:
    """Solid colour, or a linear gradient in a random direction: size x size RGB, and its factors."""
    c0 = rng.uniform(20, 240, size=3)
    if rng.random() < 0.35:
        return Image.new("RGB", (size, size), _rgb(c0)), {
            "background_solid": 1.0,
            "background_level": c0.mean(),
        }
    c1 = np.clip(c0 + rng.normal(0, 60, size=3), 0, 255)
    angle = rng.uniform(0, 2 * np.pi)
    # A linear ramp survives bilinear upsampling, so build it small and scale it up.
    axis = np.linspace(-0.5, 0.5, _GRADIENT_SIZE)
    t = np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None] + 0.5  # (g, g)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]  # (g, g, 3)
    small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    level = (c0.mean() + c1.mean()) / 2
    return small.resize((size, size), Image.Resampling.BILINEAR), {
        "background_solid": 0.0,
        "background_level": level,
    }


def _palette(rng: np.random.Generator) -> tuple[dict[str, tuple[int, int, int]], dict]:
    """The face's colours by part, and its factors (skin tone, hair, iris and clothes colour)."""
    tone = rng.uniform(0, len(_SKIN) - 1)
    lo = int(tone)
    hi = min(lo + 1, len(_SKIN) - 1)
    skin = _rgb(_SKIN[lo] + (tone - lo) * (_SKIN[hi] - _SKIN[lo]) + rng.normal(0, 6, size=3))
    weights = np.array([w for _, w in _HAIR])
    hair_index = int(rng.choice(len(_HAIR), p=weights / weights.sum()))
    hair = _rgb(np.array(_HAIR[hair_index][0], dtype=np.float64) * rng.uniform(0.85, 1.15))
    iris_index = int(rng.integers(len(_IRIS)))
    iris = _rgb(np.array(_IRIS[iris_index]) * rng.uniform(0.8, 1.2))
    lips = _mix(skin, (170, 40, 50), rng.uniform(0.3, 0.6))
    clothes_rgb = rng.uniform(10, 245, size=3)
    clothes = _rgb(clothes_rgb)
    shade = _mix(skin, (40, 20, 10), 0.22)
    factors = {
        "skin_tone": tone,
        "hair_colour": hair_index,
        "iris_colour": iris_index,
        "clothes_level": clothes_rgb.mean(),
    }
    colours = {
        "skin": skin,
        "shade": shade,
        "nose": _mix(skin, shade, 0.7),
        "nostril": _mix(shade, (0, 0, 0), 0.3),
        "hair": hair,
        "hairline": _mix(hair, (0, 0, 0), 0.3),
        "brow": _mix(hair, (10, 5, 0), 0.35),
        "iris": iris,
        "lips": lips,
        "lip_line": _mix(lips, (0, 0, 0), 0.45),
        "clothes": clothes,
    }
    return colours, factors


def _head_outline(w: float, h: float, jaw: float, n: int = 64) -> np.ndarray:
    """Egg-shaped head of half-width w and half-height h; jaw narrows the chin. (n, 2)."""
    p = _ellipse(0.0, 0.0, w, h, n=n)
    lower = np.clip(p[:, 1] / h, 0.0, 1.0)
    p[:, 0] *= 1.0 - jaw * lower**2
    return p


def _hairline(rng: np.random.Generator, fringe: int, w: float, h: float, side_len: float) -> np.ndarray:
    """Where the hair meets the forehead, right to left, ending at side_len on both temples: (25, 2)."""
    xs = np.linspace(w * 0.97, -w * 0.97, 25)
    u = xs / w  # about -1..1 across the forehead
    top = -h * (0.58, 0.34, 0.50, 0.72)[fringe]
    if fringe == 0:  # parted: a peak at the parting
        d = np.abs(u - rng.uniform(-0.5, 0.5))
        ys = top + h * 0.12 * (1 - d) - h * 0.10 * d**2
    elif fringe == 1:  # straight bangs, slightly curved
        ys = top + h * 0.04 * (1 - u**2)
    elif fringe == 2:  # swept to one side
        ys = top + h * 0.18 * (rng.choice([-1, 1]) * u + 1) / 2
    else:  # high and receding
        ys = top - h * 0.08 * u**2
    temple = np.clip((np.abs(u) - 0.7) / 0.27, 0.0, 1.0) ** 1.5
    return _curve(xs, ys * (1 - temple) + side_len * temple)


def _draw_eyes(c: _Canvas, rng: np.random.Generator, w: float, h: float, col: dict) -> tuple[float, dict]:
    """Eye whites, irises, pupils, highlights and upper lids, with eyebrows above.

    Returns the face-local y of the bottom of the eyes, where the nose starts, and the factors.
    """
    eye_y = rng.uniform(-0.03, 0.0)
    spacing = rng.uniform(0.40, 0.47)
    eye_dx = w * spacing
    ew, eh = w * rng.uniform(0.20, 0.25), h * rng.uniform(0.055, 0.075)
    gaze = rng.normal(0, 0.25)
    look = gaze * ew * 0.4
    brow_raise = rng.uniform(0.16, 0.24)
    brow_dy = h * brow_raise
    brow_arch = rng.uniform(0.0, 0.04)
    brow_w = rng.uniform(0.010, 0.018)
    ir = eh * 0.95
    for s in (-1, 1):
        ex = s * eye_dx
        c.poly(_ellipse(ex, eye_y, ew, eh, n=30), _EYE_WHITE)
        c.poly(_ellipse(ex + look, eye_y, ir, ir, n=24), col["iris"])
        c.poly(_ellipse(ex + look, eye_y, ir * 0.45, ir * 0.45, n=16), _PUPIL)
        c.poly(_ellipse(ex + look + ir * 0.3, eye_y - ir * 0.3, ir * 0.2, ir * 0.2, n=10), _EYE_WHITE)
        c.line(_ellipse(ex, eye_y, ew * 1.02, eh * 1.05, np.pi * 1.05, np.pi * 1.95, 16), _LID, 0.006)
        bx = np.linspace(ex - s * ew * 1.1, ex + s * ew * 1.15, 8)
        by = eye_y - brow_dy - brow_arch * np.sin(np.linspace(0.3, np.pi - 0.2, 8))
        c.line(_curve(bx, by), col["brow"], brow_w)
    return eye_y + eh, {"eye_spacing": spacing, "gaze": gaze, "brow_raise": brow_raise}


def _draw_nose(c: _Canvas, rng: np.random.Generator, w: float, h: float, top: float, col: dict) -> None:
    """A shadow down one side of the nose from `top`, and two nostrils."""
    nose_y = h * rng.uniform(0.28, 0.36)
    nw = w * rng.uniform(0.16, 0.22)
    side = rng.choice([-1, 1])
    c.line([[side * nw * 0.25, top], [side * nw * 0.5, nose_y], [0.0, nose_y + 0.016]], col["nose"], 0.007)
    for s in (-1, 1):
        c.poly(_ellipse(s * nw * 0.45, nose_y + 0.008, nw * 0.2, nw * 0.12, n=12), col["nostril"])


def _draw_mouth(c: _Canvas, rng: np.random.Generator, w: float, h: float, col: dict) -> dict:
    """Lips as a crescent whose curvature is the smile; broad smiles show teeth. Returns its factors."""
    mouth_y = h * rng.uniform(0.55, 0.63)
    mouth_width = rng.uniform(0.38, 0.5)
    mw = w * mouth_width
    smile = rng.uniform(-0.2, 1.0)
    mx = np.linspace(-mw, mw, 16)
    bulge = 1 - (mx / mw) ** 2  # 0 at the corners, 1 in the middle
    upper = mouth_y - smile * 0.02 * (1 - bulge) - 0.004 * bulge
    gap = 0.025 * max(0.0, smile - 0.45) / 0.55
    lower = mouth_y + (0.01 + smile * 0.012 + gap) * bulge
    c.poly(np.concatenate([_curve(mx, upper), _curve(mx, lower)[::-1]]), col["lips"])
    if gap > 0.004:
        teeth_low = mouth_y + (0.004 + gap * 0.8) * bulge
        c.poly(
            np.concatenate([_curve(mx * 0.85, upper + 0.004 * bulge), _curve(mx, teeth_low)[::-1]]), _TEETH
        )
    c.line(_curve(mx, upper + 0.002 * bulge), col["lip_line"], 0.004)
    return {"smile": smile, "mouth_width": mouth_width}


def _check(index: int, seed: int) -> None:
    if index < 0 or seed < 0:
        raise UserError(f"synthetic face index and seed must be >= 0, got index={index} seed={seed}")


def _render(index: int, resolution: int, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """Face ``index`` of family ``seed``: the (R, R, 3) uint8 image and its factors by name.

    Every random draw comes from ``default_rng([seed, index])`` in one fixed order, none of
    them depends on ``resolution``, so the factors are the same at every resolution.
    """
    rng = np.random.default_rng([seed, index])
    size = resolution * _SUPERSAMPLE
    background, factors = _background(rng, size)
    head_scale = rng.uniform(1.25, 1.45)
    shift_x, shift_y = rng.normal(0, 0.02), rng.normal(0, 0.015)
    centre = np.array([0.5 + shift_x, 0.51 + shift_y]) * size
    tilt = rng.normal(0, 0.07)
    c = _Canvas(background, centre, head_scale * size, tilt=tilt)
    col, palette_factors = _palette(rng)

    w = rng.uniform(0.205, 0.245)  # head half-width
    aspect = rng.uniform(1.22, 1.38)
    h = w * aspect  # head half-height
    jaw = rng.uniform(0.15, 0.35)
    length = int(rng.choice(3, p=[0.35, 0.25, 0.40]))  # 0 short, 1 medium, 2 long
    fringe = int(rng.choice(4, p=[0.35, 0.30, 0.25, 0.10]))  # 0 parted, 1 bangs, 2 swept, 3 high

    if length > 0:  # hair that falls behind the head
        bottom = h * (0.55 if length == 1 else rng.uniform(1.1, 1.6))
        spread = w * rng.uniform(1.12, 1.35)
        ends = [[spread * 1.02, bottom], [spread * 0.55, bottom + 0.03], [-spread * 0.55, bottom + 0.03]]
        arc = _ellipse(0.0, 0.0, spread, h * 1.12, np.pi, 2 * np.pi, 24)
        c.poly(np.concatenate([arc, ends, [[-spread * 1.02, bottom]]]), col["hair"])

    # Neck, then a collar line and clothes over the shoulders below it.
    neck_w = w * rng.uniform(0.42, 0.52)
    c.poly(
        [[-neck_w, h * 0.5], [neck_w, h * 0.5], [neck_w * 1.05, h * 1.45], [-neck_w * 1.05, h * 1.45]],
        col["shade"],
    )
    sh = w * rng.uniform(1.9, 2.4)
    collar = h * rng.uniform(1.25, 1.4)
    body = [[-neck_w * 1.05, collar - 0.01], [neck_w * 1.05, collar - 0.01], [sh, collar + 0.12], [sh, 0.9]]
    c.poly(body + [[-sh, 0.9], [-sh, collar + 0.12]], col["clothes"])
    c.poly(_ellipse(0.0, collar - 0.01, neck_w * 1.05, 0.04, 0, np.pi, 16), col["shade"])

    ear_y = rng.uniform(-0.01, 0.02)
    for s in (-1, 1):
        c.poly(_ellipse(s * w * 0.97, ear_y, w * 0.16, h * 0.17, n=20), col["skin"])
        c.poly(_ellipse(s * w * 0.99, ear_y, w * 0.07, h * 0.09, n=16), col["shade"])
    c.poly(_head_outline(w, h, jaw), col["skin"])

    side_len = h * (0.05 if length == 0 else 0.25)  # how far the hair comes down the temples
    hairline = _hairline(rng, fringe, w, h, side_len)
    crown = _ellipse(0.0, 0.0, w * 1.06, h * rng.uniform(1.04, 1.16), np.pi, 2 * np.pi, 30)
    c.poly(np.concatenate([[[-w * 1.06, side_len]], crown, [[w * 1.06, side_len]], hairline]), col["hair"])
    c.line(hairline[2:-2], col["hairline"], 0.005)

    eye_bottom, eye_factors = _draw_eyes(c, rng, w, h, col)
    _draw_nose(c, rng, w, h, eye_bottom, col)
    mouth_factors = _draw_mouth(c, rng, w, h, col)
    factors.update(
        head_scale=head_scale,
        shift_x=shift_x,
        shift_y=shift_y,
        tilt=tilt,
        **palette_factors,
        head_width=w,
        head_aspect=aspect,
        jaw=jaw,
        hair_length=length,
        fringe=fringe,
        **eye_factors,
        **mouth_factors,
    )
    image = np.asarray(c.img.resize((resolution, resolution), Image.Resampling.LANCZOS), dtype=np.uint8)
    return image, {name: float(factors[name]) for name in FACE_FACTORS}


def draw_face(index: int, resolution: int = 64, *, seed: int = 0) -> np.ndarray:
    """Draw face ``index`` of family ``seed`` as an (H, W, 3) uint8 array, H = W = resolution."""
    if resolution < MIN_RESOLUTION:
        raise UserError(f"synthetic faces need resolution >= {MIN_RESOLUTION}, got {resolution}")
    _check(index, seed)
    return _render(index, resolution, seed)[0]


def face_factors(index: int, *, seed: int = 0) -> dict[str, float]:
    """The factors face ``index`` of family ``seed`` was drawn from, by name (:data:`FACE_FACTORS`).

    These are the random draws themselves (independent of each other by construction), not
    measurements of the image: e.g. ``smile`` is the mouth curvature drawn in [-0.2, 1]
    before any pixel is set. Categorical factors are codes: ``hair_colour`` 0-6 (dark to
    blonde, as :data:`_HAIR`), ``iris_colour`` 0-5, ``hair_length`` 0 short / 1 medium /
    2 long, ``fringe`` 0 parted / 1 bangs / 2 swept / 3 high, ``background_solid`` 0/1.
    """
    _check(index, seed)
    return _render(index, MIN_RESOLUTION, seed)[1]


def face_factor_table(start: int, count: int, *, seed: int = 0) -> np.ndarray:
    """Factors of faces ``start .. start + count - 1``: (count, F) float64, columns :data:`FACE_FACTORS`."""
    rows = [face_factors(start + i, seed=seed) for i in range(count)]
    return np.array([[row[name] for name in FACE_FACTORS] for row in rows], dtype=np.float64).reshape(
        count, len(FACE_FACTORS)
    )


def sample_grid(n: int, resolution: int = 64, *, seed: int = 0) -> np.ndarray:
    """Faces 0 .. n*n-1 tiled row by row into an (n*R, n*R, 3) uint8 sheet, R = resolution."""
    faces = np.stack([draw_face(i, resolution, seed=seed) for i in range(n * n)])  # (n*n, R, R, 3)
    return (
        faces.reshape(n, n, resolution, resolution, 3).transpose(0, 2, 1, 3, 4).reshape(n * resolution, -1, 3)
    )
