"""Cached reference features of datasets: features, mean and covariance, keyed by what made them.

A dataset's features depend on the dataset, split, resolution, number of images (and, for
data on disk, its folder) and on the feature network (weights hash and preprocessing); the
key holds all of them. One ``.npz`` per key under ``<cache_dir>/fid_reference/``, written
atomically; the key is stored inside and checked on reading, and an unreadable file is
recomputed. The cache folder is ``--cache_dir``, else ``$DDPM_LENS_CACHE``, else
``$XDG_CACHE_HOME/ddpm-lens``, else ``~/.cache/ddpm-lens``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ddpm_lens.util.atomic import atomic_path
from ddpm_lens.util.errors import warn

CACHE_ENV = "DDPM_LENS_CACHE"
FORMAT = 1  # bump when what a cached file means changes


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ddpm-lens"


def cache_path(cache_dir: str | os.PathLike, key: dict) -> Path:
    """The file for ``key``: readable name parts plus a hash of the whole key."""
    digest = hashlib.sha256(_key_text(key).encode()).hexdigest()[:16]
    name = "_".join(str(key.get(k, "")) for k in ("dataset", "split", "resolution", "n"))
    return Path(cache_dir) / "fid_reference" / f"{name}_{digest}.npz"


def load_cached(cache_dir: str | os.PathLike, key: dict) -> dict[str, np.ndarray] | None:
    """{"features", "mu", "sigma"} stored under ``key``, or None when absent or unreadable."""
    path = cache_path(cache_dir, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != _key_text(key):
                return None
            return {name: z[name] for name in ("features", "mu", "sigma")}
    except (OSError, ValueError, KeyError) as exc:
        warn(f"ignoring unreadable cached reference {path} ({type(exc).__name__}); recomputing it")
        return None


def store(cache_dir: str | os.PathLike, key: dict, *, features, mu, sigma) -> Path:
    path = cache_path(cache_dir, key)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, key=np.array(_key_text(key)), features=features, mu=mu, sigma=sigma)
    return path


def _key_text(key: dict) -> str:
    return json.dumps({"format": FORMAT, **key}, sort_keys=True)
