"""Torch work on several Python threads at once, each with its own share of the CPU's threads.

Two models' forward passes on a CPU are independent. Run one after the other, each uses every
core through torch's OpenMP team, and every parallel region waits for its slowest thread: a
core taken for a moment by other work (PNG encoding, numpy statistics) stalls the whole team.
Run side by side on Python threads with fewer intra-op threads each (torch releases the GIL
inside its kernels), the same convolutions leave no core idle between regions and share the
cores with the other work without stalls. :func:`lanes` gives one single-thread executor per
job stream (a model: its jobs run in order, never two at once, so its hooks never mix) and
puts the caller's torch thread count back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import torch


@contextmanager
def lanes(count: int, *, enabled: bool = True) -> Iterator[list[Executor]]:
    """``count`` executors, each running its jobs one at a time, in order, on its own thread.

    The lanes share ``torch.get_num_threads()`` cores: each gets cores // min(count, cores)
    intra-op threads (at least one). With fewer than two lanes or cores, or ``enabled=False``
    (e.g. on a GPU), every job runs at once in the calling thread, with its threads as they are.
    """
    cores = torch.get_num_threads()
    if not enabled or min(count, cores) < 2:
        yield [_InCaller() for _ in range(count)]
        return
    share = max(1, cores // min(count, cores))
    with ExitStack() as stack:
        pools = []
        for i in range(count):
            pool = ThreadPoolExecutor(
                1, thread_name_prefix=f"torch-lane{i}", initializer=torch.set_num_threads, initargs=(share,)
            )
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            pools.append(pool)
        try:
            yield pools
        finally:
            stack.close()
            torch.set_num_threads(cores)  # the lanes' setting is also the default of threads started later


class _InCaller(Executor):
    """Runs each submitted call at once, in the caller's thread (the futures come back done)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # re-raised by future.result(), as a pool's would be
            future.set_exception(exc)
        return future
