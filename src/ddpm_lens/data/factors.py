"""Labelled factors of a dataset's images, in the dataset's own order, for channel purity
(``analysis/channel_purity.py``): what each synthetic face was drawn from, or CelebA's 40
binary attributes when its ``list_attr_celeba.txt`` is there.

``dataset_factors(name, ...)`` gives the factors of the images ``first_n(build_dataset(name,
...), count)`` returns, row for row, or ``None`` when the dataset has no labels (a folder of
images; CelebA without its attribute file). The factors describe the images as stored: a
dataset read with ``random_flip`` mirrors some of them, which flips the sign of left-right
factors (``shift_x``, ``tilt``, ``gaze``).
"""

from __future__ import annotations

import os

import numpy as np

from ddpm_lens.data.datasets import DATASETS, SPLITS, SYNTHETIC_SPLITS, _celeba_dir, build_dataset
from ddpm_lens.data.synthetic_faces import FACE_FACTORS, face_factor_table
from ddpm_lens.util.errors import UserError

CELEBA_ATTRIBUTES = "list_attr_celeba.txt"


def _parse_attributes(path) -> tuple[list[str], dict[str, np.ndarray]]:
    """CelebA's attribute file: a count line, a line of K names, then '<image> ±1 x K' per image."""
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise UserError(
            f"{path}: expected a count line, a line of attribute names, then one line per image; "
            "use the list_attr_celeba.txt of the CelebA release"
        )
    names = lines[1].split()
    rows = {}
    for lineno, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1 or any(v not in ("-1", "1") for v in fields[1:]):
            raise UserError(
                f"{path}:{lineno}: expected '<image>.jpg' and {len(names)} values of -1 or 1, got "
                f"{line.strip()[:80]!r}; use the list_attr_celeba.txt of the CelebA release"
            )
        rows[fields[0]] = np.array(fields[1:], dtype=np.int8) > 0
    return names, rows


def celeba_attributes(
    root: str | os.PathLike | None, *, split: str = "train"
) -> tuple[np.ndarray, list[str]] | None:
    """CelebA's attributes of the images of ``split``, in the dataset's order: ((N, K) float64
    of 0/1, the K names), or ``None`` when ``list_attr_celeba.txt`` is not beside the images.
    An image the file does not list is an error naming it."""
    base = _celeba_dir(root)
    path = base / CELEBA_ATTRIBUTES
    if not path.is_file():
        return None
    images = build_dataset("celeba", root=root, split=split, resolution=16).paths
    names, rows = _parse_attributes(path)
    missing = [p.name for p in images if p.name not in rows]
    if missing:
        raise UserError(
            f"{len(missing)} of the {len(images)} {split} images have no line in {path}, e.g. {missing[0]}; "
            "use the list_attr_celeba.txt of the same CelebA release"
        )
    return np.stack([rows[p.name] for p in images]).astype(np.float64), names


def dataset_factors(
    name: str,
    *,
    count: int,
    root: str | os.PathLike | None = None,
    split: str = "train",
    seed: int = 0,
) -> tuple[np.ndarray, list[str]] | None:
    """Factors of the first ``count`` images of dataset ``name`` (as ``first_n`` reads them):
    ((count, F) float64, the F names), or ``None`` when the dataset has none.

    synthetic-faces: :data:`FACE_FACTORS` of family ``seed``; celeba: its 40 attributes
    (0/1) when ``list_attr_celeba.txt`` is present; folder: none.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if count < 1:
        raise UserError(f"asked for the factors of {count} images; ask for at least 1")
    if name == "synthetic-faces":
        start, length = SYNTHETIC_SPLITS[split]
        if count > length:
            raise UserError(f"asked for {count} images but the dataset has only {length}; ask for fewer")
        return face_factor_table(start, count, seed=seed), list(FACE_FACTORS)
    if name == "celeba":
        found = celeba_attributes(root, split=split)
        if found is None:
            return None
        table, names = found
        if count > len(table):
            raise UserError(f"asked for {count} images but the dataset has only {len(table)}; ask for fewer")
        return table[:count], names
    return None
