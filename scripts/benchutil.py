"""Timing helper shared by the benchmark scripts."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def median_time(fn: Callable[[], object], repeats: int, device: str | torch.device) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after one warm-up (CUDA synchronised)."""
    cuda = torch.device(device).type == "cuda"
    fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine_line() -> str:
    """One line naming the machine and torch build a table was measured on."""
    import os
    import platform

    return (f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads "
            f"({torch.get_num_threads()} used), torch {torch.__version__}")
