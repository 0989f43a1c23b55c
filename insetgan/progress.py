"""Progress reporting for long loops: one callback type, one reporter.

Every loop (projection, PTI, composition, dataset preparation, training) calls
``progress(step, total, values)`` after each step. :class:`ProgressBar` shows a tqdm bar on a
terminal; when the output is not a terminal (a log file, CI) it writes one plain line every
few percent or every ``every_s`` seconds instead of thousands of carriage-return updates.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

Progress = Callable[[int, int, dict[str, float]], None]


def _fmt(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in values.items())


class ProgressBar:
    """A :data:`Progress` callback: tqdm on a terminal, else a line every ``every_pct`` % or ``every_s`` s.

    ``keys`` picks which values are shown (a predicate on the name; all by default);
    ``notice`` is printed once, at the first step (so input errors print nothing else);
    ``last`` holds the values of the latest step.
    """

    def __init__(self, desc: str, *, quiet: bool = False, stream: TextIO | None = None, notice: str | None = None,
                 keys: Callable[[str], bool] | None = None, unit: str = "it", every_pct: float = 5.0,
                 every_s: float = 30.0, tty: bool | None = None) -> None:
        self.desc, self.quiet, self.notice, self.keys, self.unit = desc, quiet, notice, keys, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_pct, self.every_s = every_pct, every_s
        self.bar: Any = None
        self.last: dict[str, float] | None = None
        self._started = False
        self._next_pct = 0.0
        self._t_line = 0.0

    def __call__(self, step: int, total: int, values: dict[str, float]) -> None:
        shown = {k: v for k, v in values.items() if self.keys is None or self.keys(k)}
        self.last = dict(values)
        if not self._started:
            self._started = True
            if self.notice and not self.quiet:
                print(f"WARNING: {self.notice}", file=self.stream)
            if self.tty and not self.quiet:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=self.desc,
                                unit=self.unit, leave=False, file=self.stream, dynamic_ncols=True)
            self._t_line = time.monotonic()
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
            self.bar.update(min(step, total) - self.bar.n)
            return
        pct = 100.0 * step / max(total, 1)
        now = time.monotonic()
        if pct >= self._next_pct or step >= total or now - self._t_line >= self.every_s:
            print(f"{self.desc}: {pct:3.0f}% ({step}/{total} {self.unit}) {_fmt(shown)}".rstrip(), file=self.stream,
                  flush=True)
            self._t_line = now
            while self._next_pct <= pct:
                self._next_pct += self.every_pct

    def close(self) -> None:
        """Close the terminal bar (a no-op for plain lines)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
