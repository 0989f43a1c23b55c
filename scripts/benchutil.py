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
