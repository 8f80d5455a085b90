"""The data order of a run: each process's share of every global batch, reproducible per epoch."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class GlobalBatches(Sampler[list[int]]):
    """This process's share of every global batch of an epoch, in a seeded permutation.

    Global batch k of epoch e is ``perm_e[k B : (k + 1) B]`` with ``perm_e`` drawn from
    ``seed + e``; process r takes the contiguous slice ``[r b, (r + 1) b)``, b = B / world, so the
    processes together see exactly one process's batch. ``set_epoch(e, start=k)`` skips the
    first k batches (resuming inside an epoch).
    """

    def __init__(
        self, size: int, *, global_batch: int, num_batches: int, rank: int, world_size: int, seed: int
    ):
        self.size, self.global_batch, self.num_batches = size, global_batch, num_batches
        self.local = global_batch // world_size
        self.rank, self.seed = rank, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.num_batches - self.start

    def __iter__(self):
        perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        for k in range(self.start, self.num_batches):
            lo = k * self.global_batch + self.rank * self.local
            yield perm[lo : lo + self.local].tolist()
