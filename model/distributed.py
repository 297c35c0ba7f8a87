"""Process-group setup for DistributedDataParallel under torchrun (or any launcher setting the env vars)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the run: rank 0 of 1 when not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this code created the process group, so it destroys it at the end

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates, checkpoints and exports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistributedContext:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT), if any.

    NCCL on CUDA, gloo on CPU. Without WORLD_SIZE > 1 in the environment this is a single process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns_group)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Sum of `tensor` over all ranks (a new tensor; the input is left as it is)."""
    total = tensor.clone()
    if ctx.distributed:
        dist.all_reduce(total)
    return total


def all_reduce_max(tensor: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Elementwise max of `tensor` over all ranks (a new tensor)."""
    result = tensor.clone()
    if ctx.distributed:
        dist.all_reduce(result, op=dist.ReduceOp.MAX)
    return result


def barrier(ctx: DistributedContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistributedContext) -> None:
    """Destroy the process group if this code created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
