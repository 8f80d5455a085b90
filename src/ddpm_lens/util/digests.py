"""SHA-256 of input files for run manifests, hashed on a background thread.

A command that will record its checkpoints' hashes starts :class:`FileDigests` first thing,
before it imports torch: ``hashlib`` releases the GIL on large buffers, so hashing large
trainer files runs on the second core while the interpreter imports torch on the first.
Nothing here imports torch. (benchmarks/visualize_speed.py measures what it saves.)
"""

from __future__ import annotations

import hashlib
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

_BLOCK = 1 << 20


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file at ``path`` (memory-mapped); of a folder (a diffusers
    model), of each file's relative path and bytes in sorted order."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if file != path:
            h.update(file.relative_to(path).as_posix().encode() + b"\0")
        _hash_file(h, file)
    return h.hexdigest()


def _hash_file(h, file: Path) -> None:
    """Feed ``file``'s bytes to ``h``: memory-mapped, in one ``update`` call (the thread needs
    the GIL once for the whole file, not twice per block: a thread that waits for the GIL after
    every block crawls while the main thread imports torch); in blocks where it cannot be mapped."""
    with open(file, "rb") as f:
        try:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # an empty file, or a file system without mmap
            mapped = None
        if mapped is not None:
            with mapped:
                h.update(mapped)
            return
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)


class FileDigests:
    """Hashes files in the background, one at a time, in the order given.

    ``future(path)`` returns the digest's future, queuing the file if it was not given at
    start. A file that cannot be read gives a future holding the ``OSError``; whoever opens
    the file for real reports that problem first.
    """

    def __init__(self, paths=()):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self._futures: dict[str, Future] = {}
        for path in paths:
            self.future(path)

    def future(self, path: str | os.PathLike) -> Future:
        key = str(Path(path).resolve())
        if key not in self._futures:
            self._futures[key] = self._pool.submit(sha256_of, key)
        return self._futures[key]

    def close(self) -> None:
        """Stop taking files; queued ones still finish."""
        self._pool.shutdown(wait=False)
