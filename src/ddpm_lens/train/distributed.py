"""torchrun detection and process-group setup, returned as values (no module state).

Under ``torchrun`` (which sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``) with more than one
process, :func:`init_distributed` joins the process group, gloo on the CPU and nccl on CUDA
(process ``LOCAL_RANK`` uses ``cuda:LOCAL_RANK``); otherwise it describes a single process::

    info = init_distributed("auto")
    try:
        ...  # train on info.device; only is_main(info) writes files
    finally:
        cleanup(info)

Nothing here touches CUDA at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ddpm_lens.util.devices import pick_device
from ddpm_lens.util.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int  # global process index, 0 .. world_size-1
    local_rank: int  # process index on this machine
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def torchrun_env(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) outside torchrun."""
    env = os.environ if env is None else env
    try:
        rank, local_rank = int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0))
        world = int(env.get("WORLD_SIZE", 1))
    except ValueError:
        raise UserError("RANK, LOCAL_RANK and WORLD_SIZE must be integers; launch with torchrun") from None
    if not (world >= 1 and 0 <= rank < world and local_rank >= 0):
        raise UserError(
            f"inconsistent torchrun environment RANK={rank} WORLD_SIZE={world}; launch with torchrun"
        )
    return rank, local_rank, world


def init_distributed(device_arg: str = "auto") -> DistInfo:
    """Pick this process's device (auto | cpu | cuda | cuda:N) and join torchrun's group if any.

    ``cuda`` when CUDA is unavailable is a UserError. Under torchrun every process uses
    ``cuda:LOCAL_RANK``, so ``cuda:N`` is refused there.
    """
    rank, local_rank, world = torchrun_env()
    device = pick_device(device_arg, fallback=False)
    if device.type == "cuda":
        if world > 1:
            if device.index is not None:
                raise UserError(
                    f"--device {device_arg} under torchrun: pass --device cuda (process k uses cuda:k)"
                )
            if local_rank >= torch.cuda.device_count():
                raise UserError(
                    f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} found): "
                    "lower --nproc_per_node"
                )
            device = torch.device("cuda", local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    info = DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=device)
    if info.distributed and not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
    return info


def cleanup(info: DistInfo) -> None:
    """Leave the process group joined by :func:`init_distributed` (no-op for one process)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def is_main(info: DistInfo) -> bool:
    """The process that writes checkpoints, logs and messages."""
    return info.rank == 0


def mean_over_ranks(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``x`` over all processes (``x`` itself for one process)."""
    if not info.distributed:
        return x
    out = x.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op for one process)."""
    if info.distributed:
        dist.barrier()
