"""The per-checkpoint cache of an across-training study: rerun with more checkpoints, or after a
kill, and only the checkpoints not yet measured cost time.

An entry is the folder ``<cache>/<key>/`` holding ``rows.json`` (the measures' rows and what the
entry was made from) and ``arrays.npz`` (what measures kept for later: per-image losses, CKA
features); ``pairs/`` holds what was measured between two entries (CKA). The key is the
checkpoint's SHA-256 (:func:`ddpm_lens.util.digests.sha256_of`) and the digest of every option
that changes a number, so a changed option or file never reads an old entry. An entry is
written into a temporary folder beside it and renamed into place, so a run killed part-way
leaves either the whole entry or none (a stray temporary folder is removed by the next run):
results are never mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ddpm_lens.util.atomic import write_text

SCHEMA = 1  # bumped whenever a measure's definition changes: old entries are then never read


def options_digest(options: dict) -> str:
    text = json.dumps({"schema": SCHEMA, **options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def entry_key(checkpoint_sha256: str, options_sha256: str) -> str:
    return f"{checkpoint_sha256[:24]}-{options_sha256[:12]}"


class TrajectoryCache:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def clean(self) -> None:
        """Remove the temporary folders a killed run left."""
        if self.folder.is_dir():
            for stray in self.folder.glob(".tmp-*"):
                shutil.rmtree(stray, ignore_errors=True)

    def get(self, key: str) -> tuple[dict, dict[str, np.ndarray]] | None:
        """(record, arrays) of a whole entry, or None. Arrays load lazily (an ``NpzFile``)."""
        entry = self.folder / key
        try:
            record = json.loads((entry / "rows.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if record.get("key") != key or not (entry / "arrays.npz").is_file():
            return None
        return record, np.load(entry / "arrays.npz")

    def put(self, key: str, record: dict, arrays: dict[str, np.ndarray]) -> None:
        """Write the entry: all of it, or (killed part-way) nothing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.folder, prefix=".tmp-"))
        try:
            np.savez(tmp / "arrays.npz", **arrays)
            (tmp / "rows.json").write_text(
                json.dumps({**record, "key": key}, allow_nan=True), encoding="utf-8"
            )
            final = self.folder / key
            if final.exists():  # another process (or an earlier run) wrote it: same key, same content
                shutil.rmtree(tmp)
                return
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def get_peek(self, sha256: str) -> dict | None:
        """What a checkpoint file says about itself (its step, the config it carries), or None."""
        try:
            return json.loads((self.folder / "files" / f"{sha256}.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def put_peek(self, sha256: str, value: dict) -> None:
        write_text(self.folder / "files" / f"{sha256}.json", json.dumps(value), fsync=False)

    def get_pair(self, name: str, a: str, b: str):
        """A measure of two entries (e.g. their CKA), or None."""
        try:
            return json.loads((self.folder / "pairs" / f"{name}-{a}-{b}.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def put_pair(self, name: str, a: str, b: str, value) -> None:
        write_text(self.folder / "pairs" / f"{name}-{a}-{b}.json", json.dumps(value), fsync=False)
