"""Datasets of face images as float32 tensors (3, H, W) in [-1, 1], by name.

``build_dataset(name, ...)`` looks ``name`` up in :data:`DATASETS`:

- ``celeba``: the aligned CelebA release on disk, ``<root>/celeba/img_align_celeba/*.jpg``
  with ``<root>/celeba/list_eval_partition.txt``; ``root`` may also be the ``celeba`` folder
  itself. Each 178x218 image is cropped to the 148x148 box at left 15, top 40 and resized
  (bilinear, antialiased) to ``resolution``, as in the original study (ddpm-torch).
- ``celeba32``: the same files and crop, for the study's 32x32 CelebA models (its ``CelebA32``:
  resolution 32 unless the config says otherwise).
- ``cifar10``: the CIFAR-10 python release on disk, ``<root>/cifar-10-batches-py/`` with
  ``data_batch_1`` .. ``data_batch_5`` (train) and ``test_batch`` (test), as torchvision's
  ``CIFAR10(download=False)`` reads it; ``root`` may be that folder itself. The batches are
  pickles: they are read with an unpickler that builds numpy arrays and nothing else. Any split
  but ``test`` is the training set (the study's reader), ``all`` both.
- ``folder``: every image under a folder, recursively (jpg, jpeg, png, webp, bmp), in sorted
  path order, centre-cropped to a square and resized. A folder has no splits: ``train``,
  ``valid``, ``test`` and ``all`` all mean the whole folder.
- ``synthetic-faces``: :func:`ddpm_lens.data.synthetic_faces.draw_face`, no download. Splits are
  fixed, disjoint index ranges (see :data:`SYNTHETIC_SPLITS`); ``seed`` picks another family.

``random_flip`` mirrors an image left-right with probability 1/2 on every read, drawing from
torch's default generator (as torchvision's ``RandomHorizontalFlip`` does), so seeding torch
and the DataLoader's workers makes it reproducible.

The helpers :func:`to_uint8`, :func:`from_uint8`, :func:`center_crop_resize`,
:func:`load_images` and :func:`first_n` are shared with the trainer and the visualizer.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ddpm_lens.data.synthetic_faces import MIN_RESOLUTION, draw_face
from ddpm_lens.util.errors import UserError, warn

SPLITS = ("train", "valid", "test", "all")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# (left, top, right, bottom) of the 148x148 face box in a 178x218 aligned CelebA image.
CELEBA_BOX = (15, 40, 163, 188)
# CelebA's list_eval_partition.txt codes for each split.
CELEBA_PARTITIONS = {"train": {0}, "valid": {1}, "test": {2}, "all": {0, 1, 2}}
# split -> (first index, number of faces); the ranges never overlap, so "test face 0" is fixed.
SYNTHETIC_SPLITS = {
    "train": (0, 50_000),
    "valid": (50_000, 1_000),
    "test": (51_000, 1_000),
    "all": (0, 52_000),
}
# What PIL raises for files that are missing, not images, truncated or corrupt.
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Images (..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8, rounded and clipped."""
    x = ((x.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255)
    return x.to(torch.uint8).movedim(-3, -1).numpy()


def from_uint8(a: np.ndarray) -> torch.Tensor:
    """Images (..., H, W, 3) uint8 -> float32 (..., 3, H, W) in [-1, 1], as x / 127.5 - 1."""
    x = torch.from_numpy(np.asarray(a, dtype=np.float32) / 127.5 - 1)
    return x.movedim(-1, -3).contiguous()


def center_crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """The largest centred square of ``img``, resized (bilinear, antialiased) to resolution^2."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize(
        (resolution, resolution), Image.Resampling.BILINEAR
    )


def celeba_crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """The study's CelebA preprocessing: crop :data:`CELEBA_BOX`, then resize (bilinear)."""
    return img.crop(CELEBA_BOX).resize((resolution, resolution), Image.Resampling.BILINEAR)


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Open any image as RGB: EXIF rotation applied, transparency composited onto white.

    A missing file or one PIL cannot decode raises :class:`UserError` naming the path.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in _DEEP_MODES:
                return _to_8_bit(im).convert("RGB")
            if im.has_transparency_data:
                im = im.convert("RGBA")
                return Image.alpha_composite(Image.new("RGBA", im.size, "white"), im).convert("RGB")
            return im.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except _UNREADABLE as exc:
        raise UserError(f"not a readable image: {path} ({type(exc).__name__}: {exc})") from None


_DEEP_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # one channel, more than 8 bits


def _to_8_bit(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grey image as 8 bits ("L"), scaled by its range
    (``convert`` would clip every value above 255 to white): 16-bit and non-negative integers
    below 2**16 by 65535, floats in [0, 1] by 255, anything else from its own min to max."""
    a = np.asarray(im, dtype=np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size and np.isfinite(a).all() else (0.0, 0.0)
    if im.mode.startswith("I;16") or (im.mode == "I" and lo >= 0 and hi <= 65535):
        scaled = a / 65535
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        scaled = a
    elif hi > lo:
        scaled = (a - lo) / (hi - lo)
    else:
        scaled = np.zeros_like(a)
    return Image.fromarray(np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8), mode="L")


def _maybe_flip(x: torch.Tensor, random_flip: bool) -> torch.Tensor:
    if random_flip and torch.rand(()) < 0.5:
        return x.flip(-1)
    return x


class ImageFiles(Dataset):
    """Image files read on demand, each passed through ``prepare`` (PIL -> PIL of the target size)."""

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        prepare: Callable[[Image.Image], Image.Image],
        random_flip: bool = False,
    ):
        self.paths = list(paths)
        self.prepare = prepare
        self.random_flip = random_flip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self.prepare(open_rgb(self.paths[i]))
        return _maybe_flip(from_uint8(np.asarray(img)), self.random_flip)  # (3, R, R)


class SyntheticFaces(Dataset):
    """Faces ``start .. start + length - 1`` of family ``seed`` from :func:`draw_face`."""

    def __init__(self, *, start: int, length: int, resolution: int, seed: int = 0, random_flip: bool = False):
        if resolution < MIN_RESOLUTION:
            raise UserError(f"synthetic faces need resolution >= {MIN_RESOLUTION}, got {resolution}")
        self.start = start
        self.length = length
        self.resolution = resolution
        self.seed = seed
        self.random_flip = random_flip

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < self.length:
            raise IndexError(f"synthetic face {i} out of range for a dataset of {self.length}")
        face = draw_face(self.start + i, self.resolution, seed=self.seed)  # (R, R, 3)
        return _maybe_flip(from_uint8(face), self.random_flip)  # (3, R, R)


def _celeba_dir(root: str | os.PathLike | None) -> Path:
    """The folder holding img_align_celeba/: root/celeba, or root itself."""
    if root is None:
        raise UserError(
            "the celeba dataset needs --data-dir DIR with DIR/celeba/img_align_celeba/*.jpg "
            "and DIR/celeba/list_eval_partition.txt"
        )
    root = Path(root).expanduser()
    for base in (root / "celeba", root):
        if (base / "img_align_celeba").is_dir():
            return base
    raise UserError(
        f"CelebA not found under {root}: expected {root / 'celeba' / 'img_align_celeba'}/*.jpg and "
        f"{root / 'celeba' / 'list_eval_partition.txt'}; pass --data-dir naming the folder that holds celeba/"
    )


def _celeba_names(partition: Path, codes: set[int]) -> list[str]:
    """File names in ``partition`` (lines ``000001.jpg 0``) whose code is in ``codes``, in file order."""
    names = []
    for lineno, line in enumerate(partition.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise UserError(
                f"{partition}:{lineno}: expected '<image>.jpg <0|1|2>', got {line.strip()!r}; "
                "use the list_eval_partition.txt of the CelebA release"
            )
        if int(fields[1]) in codes:
            names.append(fields[0])
    return names


def _build_celeba(*, root, split, resolution, random_flip, seed) -> ImageFiles:
    base = _celeba_dir(root)
    images = base / "img_align_celeba"
    partition = base / "list_eval_partition.txt"
    if not partition.is_file():
        raise UserError(
            f"CelebA partition file missing: expected {partition} (lines like '000001.jpg 0'; "
            "0 train, 1 valid, 2 test) from the CelebA release"
        )
    names = _celeba_names(partition, CELEBA_PARTITIONS[split])
    if not names:
        raise UserError(f"{partition} lists no images for split {split!r}")
    present = set(os.listdir(images))
    missing = [n for n in names if n not in present]
    if missing:
        raise UserError(
            f"{len(missing)} of the {len(names)} {split} images listed in {partition} are missing "
            f"from {images}, e.g. {missing[0]}; extract the full img_align_celeba there"
        )
    prepare = functools.partial(celeba_crop_resize, resolution=resolution)
    return ImageFiles([images / n for n in names], prepare=prepare, random_flip=random_flip)


CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; any other global is refused, never run."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): __import__("codecs").encode,
    }

    def find_class(self, module: str, name: str):
        found = self.ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"{module}.{name}")
        return found


class ArrayImages(Dataset):
    """Images held in memory as uint8 (N, 3, h, w), resized to ``resolution`` on read."""

    def __init__(self, images: np.ndarray, *, resolution: int, random_flip: bool = False):
        self.images = images
        self.resolution = resolution
        self.random_flip = random_flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self.images[i].transpose(1, 2, 0)  # (h, w, 3)
        if img.shape[0] != self.resolution or img.shape[1] != self.resolution:
            img = np.asarray(center_crop_resize(Image.fromarray(img), self.resolution))
        return _maybe_flip(from_uint8(np.ascontiguousarray(img)), self.random_flip)


def _build_cifar10(*, root, split, resolution, random_flip, seed) -> ArrayImages:
    layout = "DIR/cifar-10-batches-py/{data_batch_1..5,test_batch} (the CIFAR-10 python release)"
    if root is None:
        raise UserError(f"the cifar10 dataset needs --data-dir DIR with {layout}; it is never downloaded")
    root = Path(root).expanduser()
    base = next((b for b in (root / "cifar-10-batches-py", root) if (b / "test_batch").is_file()), None)
    if base is None:
        raise UserError(
            f"CIFAR-10 not found under {root}: expected {root / 'cifar-10-batches-py'}/test_batch and "
            "data_batch_1..5; pass --data-dir naming the folder that holds cifar-10-batches-py/"
        )
    names = {"test": CIFAR_TEST, "all": CIFAR_TRAIN + CIFAR_TEST}.get(split, CIFAR_TRAIN)
    arrays = []
    for name in names:
        path = base / name
        try:
            with open(path, "rb") as f:
                batch = _ArraysOnly(io.BytesIO(f.read()), encoding="latin1").load()
            data = batch.get("data", batch.get(b"data")) if isinstance(batch, dict) else None
            arrays.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        except FileNotFoundError:
            raise UserError(
                f"CIFAR-10 batch {path} is missing; extract the whole cifar-10-python release there"
            ) from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
            raise UserError(
                f"CIFAR-10 batch {path} is not a batch of the python release ({type(exc).__name__}: {exc}); "
                "extract cifar-10-python.tar.gz there again"
            ) from None
    return ArrayImages(np.concatenate(arrays), resolution=resolution, random_flip=random_flip)


def _is_readable(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()
    except _UNREADABLE:
        return False
    return True


def _build_folder(*, root, split, resolution, random_flip, seed) -> ImageFiles:
    if root is None:
        raise UserError("the folder dataset needs --data-dir DIR, a folder of images")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}; pass --data-dir naming a folder of images")
    candidates = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    readable = [_is_readable(p) for p in candidates]
    paths = [p for p, ok in zip(candidates, readable) if ok]
    skipped = [p for p, ok in zip(candidates, readable) if not ok]
    if skipped:
        warn(f"skipped {len(skipped)} unreadable image(s) in {root}, e.g. {skipped[0]}")
    if not paths:
        raise UserError(
            f"no usable images under {root} (searched recursively for {', '.join(IMAGE_EXTENSIONS)})"
        )
    prepare = functools.partial(center_crop_resize, resolution=resolution)
    return ImageFiles(paths, prepare=prepare, random_flip=random_flip)


def _build_synthetic_faces(*, root, split, resolution, random_flip, seed) -> SyntheticFaces:
    start, length = SYNTHETIC_SPLITS[split]
    return SyntheticFaces(
        start=start, length=length, resolution=resolution, seed=seed, random_flip=random_flip
    )


# name -> builder(*, root, split, resolution, random_flip, seed); each ignores what it does not use.
DATASETS: dict[str, Callable[..., Dataset]] = {
    "celeba": _build_celeba,
    "celeba32": _build_celeba,  # the study's CelebA32: the same files, at the config's resolution (32)
    "cifar10": _build_cifar10,
    "folder": _build_folder,
    "synthetic-faces": _build_synthetic_faces,
}
# the datasets that use ``root``: a folder given to another is a mistake
READS_FOLDER = ("folder", "celeba", "celeba32", "cifar10")


def build_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    split: str = "train",
    resolution: int = 64,
    random_flip: bool = False,
    seed: int = 0,
) -> Dataset:
    """The dataset ``name`` (a key of :data:`DATASETS`); items are float32 (3, R, R) in [-1, 1].

    ``root`` is the data folder (celeba, folder; an error for the others), ``seed`` the
    synthetic-faces family.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if resolution < 1:
        raise UserError(f"resolution must be a positive number of pixels, got {resolution}")
    if root is not None and name not in READS_FOLDER:
        raise UserError(
            f"the {name} dataset reads no folder, but --data-dir {root} was given: drop --data-dir, or "
            f"choose a dataset that reads it ({', '.join(READS_FOLDER)})"
        )
    return DATASETS[name](root=root, split=split, resolution=resolution, random_flip=random_flip, seed=seed)


def load_images(paths: Sequence[str | os.PathLike], resolution: int) -> torch.Tensor:
    """The user's own pictures, any size or mode, centre-cropped and resized: (N, 3, R, R) in [-1, 1]."""
    if not paths:
        raise UserError("no image paths given; name one or more image files")
    arrays = [np.asarray(center_crop_resize(open_rgb(p), resolution)) for p in paths]  # N x (R, R, 3)
    return from_uint8(np.stack(arrays))


def first_n(dataset: Dataset, n: int) -> torch.Tensor:
    """The first ``n`` items of ``dataset`` stacked: (n, 3, H, W)."""
    if n < 1:
        raise UserError(f"asked for {n} images; ask for at least 1")
    if n > len(dataset):
        raise UserError(f"asked for {n} images but the dataset has only {len(dataset)}; ask for fewer")
    return torch.stack([dataset[i] for i in range(n)])
