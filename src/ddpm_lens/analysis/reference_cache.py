"""Cached reference features of datasets: features, mean and covariance, keyed by what made them.

A dataset's features depend on the dataset, split, resolution, number of images (and, for
data on disk, its folder) and on the feature network (weights hash and preprocessing); the
key holds all of them. One ``.npz`` per key under ``<cache_dir>/fid_reference/``, written
atomically, with the key and a SHA-256 of the key and the arrays inside: a file that is
unreadable or whose arrays no longer match their checksum (truncated, a flipped bit) is never
used: one warning line, the file is removed and recomputed. A full disk (or an unwritable
folder) leaves the entry uncached with one warning line; the scores do not depend on the cache.
Two runs that compute one entry at once each write it whole (the last rename wins); the temp
file of a writer killed mid-write is removed by the next write of that entry. The cache folder
is ``--cache_dir``, else ``$DDPM_LENS_CACHE``, else ``$XDG_CACHE_HOME/ddpm-lens``, else
``~/.cache/ddpm-lens``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from ddpm_lens.util.atomic import atomic_path, disk_full_reported
from ddpm_lens.util.errors import UserError, warn

CACHE_ENV = "DDPM_LENS_CACHE"
FORMAT = 2  # bump when what a cached file means changes (2: with a checksum)
ARRAYS = ("features", "mu", "sigma")
STALE_TEMP_S = 3600  # a temp file of an entry untouched this long belongs to a killed writer


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
            arrays = {name: z[name] for name in ARRAYS}
            intact = str(z["checksum"]) == _checksum(_key_text(key), arrays)
    except Exception as exc:  # noqa: BLE001 - a damaged zip fails in many ways (BadZipFile, EOFError, ...)
        why = f"unreadable: {type(exc).__name__}"
    else:
        if intact:
            return arrays
        why = "its arrays do not match their checksum"
    warn(f"cached reference {path} is damaged ({why}); discarding it and recomputing it")
    path.unlink(missing_ok=True)
    return None


def store(cache_dir: str | os.PathLike, key: dict, *, features, mu, sigma) -> Path | None:
    """Cache the arrays under ``key``; None, with one warning line, when they cannot be written."""
    path = cache_path(cache_dir, key)
    arrays = {"features": features, "mu": mu, "sigma": sigma}
    text = _key_text(key)
    needed = sum(np.asarray(a).nbytes for a in arrays.values())
    fix = "free some space or pass another --cache_dir"
    try:
        _remove_stale_temps(path)
        with disk_full_reported(path, needed=needed, fix=fix), atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, key=np.array(text), checksum=np.array(_checksum(text, arrays)), **arrays)
    except UserError as exc:
        warn(f"{exc}; the reference is not cached (the scores do not depend on it)")
        return None
    except OSError as exc:
        warn(f"cannot cache the reference in {path}: {exc.strerror or exc}; the scores do not depend on it")
        return None
    return path


def _checksum(key_text: str, arrays: dict) -> str:
    h = hashlib.sha256(key_text.encode())
    for name in ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def _remove_stale_temps(path: Path) -> None:
    """Temp files of this entry that no writer has touched for an hour: left by a killed run."""
    if not path.parent.is_dir():
        return
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > STALE_TEMP_S:
                tmp.unlink()
        except FileNotFoundError:  # another run removed it meanwhile
            pass


def _key_text(key: dict) -> str:
    return json.dumps({"format": FORMAT, **key}, sort_keys=True)
