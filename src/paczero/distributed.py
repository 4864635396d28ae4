"""Data parallelism on torch.distributed: every rank holds the model and perturbs it with the same seed;
ranks split the step's micro-batches and exchange only per-example scalars.

Micro-batches are formed globally (sorted by length, padded per micro-batch) and dealt round-robin to the
ranks, so every example is scored in the same micro-batch with the same padding whatever the number of
ranks: results are bitwise independent of the world size. Each rank fills the rows it scored and leaves the
others at 0; one SUM all-reduce (x + 0 = x exactly) assembles the vector in the original order.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_from_env(timeout_s: float = 300.0, device: torch.device | None = None) -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR...); NCCL on GPUs, else gloo.

    A dead or hung rank makes collectives fail after ``timeout_s`` instead of hanging the job.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        if device is not None and device.type == "cuda":  # NCCL binds each rank to its own GPU
            dist.init_process_group(backend="nccl", timeout=timeout, device_id=device)
        else:
            dist.init_process_group(backend="gloo", timeout=timeout)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def launched_as_main() -> bool:
    """Whether this process is rank 0 of its launch (true outside torchrun), before any group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def per_rank_device(device: str) -> str:
    """Each rank of a multi-GPU job takes its own GPU (LOCAL_RANK); CPU stays CPU."""
    if (
        int(os.environ.get("WORLD_SIZE", "1")) > 1
        and device in ("auto", "cuda")
        and torch.cuda.is_available()
    ):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def assemble(values: torch.Tensor, rows: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Per-example values computed for ``rows`` on each rank → the full vector, in order, on every rank."""
    if not ctx.active:
        return values
    on_gpu = dist.get_backend() == "nccl"
    full = torch.zeros(values.shape, dtype=values.dtype)
    full[rows] = values[rows].cpu()
    full = full.cuda() if on_gpu else full
    dist.all_reduce(full, op=dist.ReduceOp.SUM)
    return full.cpu()


def shutdown(ctx: DistContext) -> None:
    """Leave the process group together: gloo aborts a process that exits with its group still open."""
    if ctx.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's value of ``obj`` on every rank (used for the privacy entropy: drawn once, shared)."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
