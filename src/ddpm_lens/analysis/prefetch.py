"""Work started early on the second core: checkpoint hashes and the second model's weights.

A visualizer run records each checkpoint's SHA-256 and loads two checkpoints. Hashing a
large trainer file takes a while and ``hashlib`` releases the GIL, so the CLI starts
a :class:`Prefetch` before it imports torch; copying the second model's weights out of its
memory-mapped file (page reads and copies, GIL released) overlaps the first model's forward
pass. Both are optional: without a Prefetch everything runs in the foreground, in order.
Both files are read and checked in the foreground first (their index of tensors, which is
quick), so no error about either surfaces after work has begun.
``benchmarks/prefetch_ab.py`` measures the saving (``--no_prefetch`` in the CLI turns it off).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from ddpm_lens.util.digests import FileDigests, sha256_of


class Prefetch:
    def __init__(self, paths: Iterable[str | os.PathLike] = ()):
        self._digests = FileDigests(p for p in paths if os.path.exists(p))
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")

    def digest(self, path: str | os.PathLike) -> Future:
        return self._digests.future(path)

    def submit(self, fn: Callable, *args) -> Future:
        return self._loader.submit(fn, *args)

    def close(self) -> None:
        """Stop taking work; what was queued still finishes."""
        self._digests.close()
        self._loader.shutdown(wait=False)


def done(value) -> Future:
    """A future that already holds ``value`` (the foreground path)."""
    future: Future = Future()
    future.set_result(value)
    return future


def foreground_digest(path: str | os.PathLike) -> Future:
    """The SHA-256 future of ``path`` without a Prefetch: computed on first use."""
    return _Lazy(lambda: sha256_of(path))


class _Lazy(Future):
    def __init__(self, fn: Callable):
        super().__init__()
        self._fn = fn

    def result(self, timeout=None):
        if not self.done():
            try:
                self.set_result(self._fn())
            except OSError as exc:
                self.set_exception(exc)
        return super().result(timeout)
