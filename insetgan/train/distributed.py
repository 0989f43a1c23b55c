"""Data parallel: the process group under torchrun (set-up and tear-down), this process's rank and gradient sums."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from insetgan.errors import InsetganError


@dataclass(frozen=True)
class World:
    """This process's place in the run: device, rank and number of processes."""

    device: torch.device
    rank: int
    size: int


@contextlib.contextmanager
def torchrun_world(device: torch.device, batch: int) -> Iterator[World]:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPU) for the duration of a run.

    Without torchrun (``WORLD_SIZE`` unset or 1) this is a single process and does nothing.
    On leaving, every rank meets at a barrier before the group is destroyed: rank 0 may still
    be writing snapshots, and gloo aborts a peer that leaves early.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield World(device, 0, 1)
        return
    if batch % size:
        raise InsetganError(f"--batch {batch} must be divisible by the number of processes ({size})")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield World(device, int(os.environ.get("RANK", "0")), size)
    finally:
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sum_gradients(module: torch.nn.Module) -> None:
    """Sum gradients over processes (one flat all_reduce); missing gradients count as zero."""
    _, world = rank_and_size()
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad.nan_to_num_(nan=0, posinf=1e5, neginf=-1e5)
    if world > 1 and params:
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.view_as(p))
