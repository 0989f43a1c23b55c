"""Opt-in tuning of glibc's allocator for large CPU tensors.

glibc serves each allocation above ``M_MMAP_THRESHOLD`` (dynamic, at most 32 MiB) with a fresh
``mmap`` and returns it with ``munmap`` on free, so every activation of a 1024x1024 generator
(tens to hundreds of MiB) is page-faulted in from zero again at every step. Raising the
threshold keeps freed blocks in the heap for reuse: measured here, a generator
forward+backward runs 2-3x faster on CPU (docs/PERFORMANCE.md), at the cost of the process
keeping its peak heap. Never applied at import; the CLI and benchmarks call
:func:`tune_cpu_allocator` explicitly, and ``INSETGAN_MALLOC_TUNE=0`` disables it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
DEFAULT_THRESHOLD = 1 << 30


def tune_cpu_allocator(mmap_threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Raise glibc's mmap threshold so large freed tensors are reused; True when applied.

    Does nothing (returns False) off Linux/glibc or when ``INSETGAN_MALLOC_TUNE=0``.
    """
    if os.environ.get("INSETGAN_MALLOC_TUNE", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(int(mmap_threshold))))
    log.debug("mallopt(M_MMAP_THRESHOLD, %d) -> %s", mmap_threshold, ok)
    return ok
