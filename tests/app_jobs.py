"""Jobs for the web page's worker process in tests (module-level, so the worker can import them).

Each takes ``(request, progress)`` as the page's jobs do; ``request`` is a small number or None.
"""
from __future__ import annotations

import time

from insetgan.errors import InsetganError


def count(n, progress):
    """An optimisation loop of ``n`` quick steps; returns ``'counted n'``."""
    bar = progress("count", None)
    for i in range(n):
        time.sleep(0.01)
        bar(i + 1, n, {"total": float(i)})
    return f"counted {n}"


def refuse(request, progress):
    """A job refused with a user error while loading."""
    raise InsetganError("no face found in the photo\nsecond line")


def crash(request, progress):
    """A job with a bug (not a user error)."""
    return {}["missing"]


def spin(seconds, progress):
    """A loading stage that keeps the CPU busy for ``seconds`` without reporting anything (a wedged loader)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


def slow_steps(step_s, progress):
    """An inversion loop whose steps take ``step_s`` each (1000 of them)."""
    bar = progress("invert face", None)
    for i in range(1000):
        time.sleep(step_s)
        bar(i + 1, 1000, {})
    return "inverted"


def slow_writing(seconds, progress):
    """A quick optimisation loop, then ``seconds`` of writing."""
    bar = progress("compose", None)
    bar(1, 1, {})
    time.sleep(seconds)
    return "written"


def die(request, progress):
    """A worker process that disappears mid-job (as when the kernel kills it for memory)."""
    import os

    os._exit(3)
