"""Data-parallel set-up under torchrun: the process group for this run's device, and its tear-down."""
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
