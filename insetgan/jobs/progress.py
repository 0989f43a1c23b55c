"""How a job reports progress to its front end: one reporter per loop, and which values a front end shows."""
from __future__ import annotations

from typing import Callable, Protocol


class Reporter(Protocol):
    """A progress callback that is closed when its loop ends (:class:`insetgan.progress.ProgressBar`)."""

    def __call__(self, step: int, total: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[str, "str | None"], Reporter]  # (loop description, one-time notice) -> reporter


def shown(key: str) -> bool:
    """Whether a front end shows a loop's value ``key``: the total, the coarse and border losses, a plain loss."""
    return key in ("total", "loss") or key.endswith("coarse_l1") or key.endswith(":border")


class Silent:
    """A reporter that shows nothing (scripts and tests)."""

    def __call__(self, step: int, total: int, values: dict[str, float]) -> None:
        """Ignore the step."""

    def close(self) -> None:
        """Nothing to close."""


def silent(desc: str, notice: str | None) -> Reporter:
    """A :data:`ProgressFactory` of silent reporters."""
    return Silent()
