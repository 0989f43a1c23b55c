"""A time limit for in-process test cases that might hang (SIGALRM; the main thread only)."""
from __future__ import annotations

import contextlib
import signal
from typing import Iterator


class Hang(BaseException):
    """Raised by :func:`within` when a case runs too long (a BaseException, so no loader can swallow it)."""


@contextlib.contextmanager
def within(seconds: float, label: str = "the case") -> Iterator[None]:
    """Raise :class:`Hang` in the block when it runs longer than ``seconds``."""
    def expire(signum: int, frame: object) -> None:
        raise Hang(f"{label} took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
