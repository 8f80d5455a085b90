"""Work split over torchrun's processes: contiguous shares of an index range, gathered in order.

``dist`` is anything with ``rank`` and ``world_size`` (``train.distributed.DistInfo``), the
process group already joined; None means one process. Objects travel with
``torch.distributed``'s object collectives (gloo on CPUs, nccl on GPUs).
"""

from __future__ import annotations

import numpy as np


def world(dist) -> tuple[int, int]:
    """(rank, world_size); (0, 1) for one process."""
    return (dist.rank, dist.world_size) if dist is not None else (0, 1)


def my_share(n: int, dist) -> np.ndarray:
    """The indices of 0..n-1 this process works on: the rank-th of world_size contiguous shares."""
    rank, size = world(dist)
    return np.array_split(np.arange(n), size)[rank]


def gather(value, dist) -> list:
    """Every process's ``value``, in rank order (``[value]`` for one process)."""
    if world(dist)[1] == 1:
        return [value]
    import torch.distributed as tdist

    out = [None] * dist.world_size
    tdist.all_gather_object(out, value)
    return out


def from_rank0(value, dist):
    """Rank 0's ``value`` on every process."""
    if world(dist)[1] == 1:
        return value
    import torch.distributed as tdist

    box = [value if dist.rank == 0 else None]
    tdist.broadcast_object_list(box, src=0)
    return box[0]
