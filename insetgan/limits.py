"""Documented ranges of numbers: a :class:`Range` per config field, checked by the config itself.

A config dataclass declares its numeric fields with :func:`ranged` and calls
:func:`check_ranges` in ``__post_init__``; the command line builds its option types from the
same :class:`Range` objects, so a number typed on the command line and one read from a file
pass the same test: the right type (an integer where one is needed, never a bool), finite,
and inside the range.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from insetgan.errors import InsetganError

MAX_SEED = 2**32 - 1  # seeds seed numpy's RandomState, which takes 32-bit values
MAX_CANDIDATES = 256  # the most candidates one job optimises together (sample-bodies' bodies, latents in a file)


def clipped(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (with ``...`` when cut)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def short_repr(value: Any, limit: int = 40) -> str:
    """A user value for an error message: a scalar's ``repr`` cut to ``limit`` characters, else its type.

    Containers are named by type only, so a deeply nested or huge value never reaches ``repr``.
    """
    if value is None or isinstance(value, (str, bytes, bool, numbers.Number)):
        try:
            text = repr(value)
        except ValueError:  # an integer with more digits than Python converts to text
            return f"an integer of {value.bit_length()} bits" if isinstance(value, int) else type(value).__name__
        return clipped(text, limit)
    return f"a {type(value).__name__}"


def listed(value: Any, limit: int = 60) -> str:
    """A user list or tuple for an error message (its items as :func:`short_repr`), else :func:`short_repr`."""
    if isinstance(value, (list, tuple)):
        return clipped("[" + ", ".join(short_repr(v) for v in value[:limit]) + "]", limit)
    return short_repr(value)


@dataclass(frozen=True)
class Range:
    """An interval of allowed numbers (open or closed ends); ``integer``: whole numbers, ``optional``: None too."""

    lo: float
    hi: float
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False

    def text(self) -> str:
        """The interval as ``[lo, hi]`` / ``(lo, hi)`` with integer bounds written as integers."""
        def fmt(v: float) -> str:
            return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"

        return f"{'(' if self.lo_open else '['}{fmt(self.lo)}, {fmt(self.hi)}{')' if self.hi_open else ']'}"

    def contains(self, value: float) -> bool:
        """True when the finite ``value`` lies in the interval."""
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def check(self, value: Any, name: str) -> None:
        """Raise a one-line :class:`InsetganError` naming ``name`` unless ``value`` is a number in the range."""
        if value is None and self.optional:
            return
        kind = "an integer" if self.integer else "a number"
        typed = not isinstance(value, bool) and isinstance(value, numbers.Integral if self.integer else numbers.Real)
        if not typed or not math.isfinite(value) or not self.contains(value):
            raise InsetganError(f"{name} must be {kind} in {self.text()}, got {short_repr(value)}")


def ranged(default: Any, lo: float, hi: float, **kwargs: Any) -> Any:
    """A dataclass field with ``default`` whose values must lie in ``Range(lo, hi, **kwargs)``."""
    return dataclasses.field(default=default, metadata={"range": Range(lo, hi, **kwargs)})


def field_range(cls: type, name: str) -> Range:
    """The :class:`Range` declared for field ``name`` of the dataclass ``cls``."""
    for f in dataclasses.fields(cls):
        if f.name == name and "range" in f.metadata:
            return f.metadata["range"]
    raise KeyError(f"{cls.__name__}.{name} has no declared range")


def check_ranges(obj: Any, prefix: str = "", dashes: bool = False) -> None:
    """Check every field of the dataclass instance ``obj`` declared with :func:`ranged`.

    Errors name the field as ``prefix + name`` (with ``dashes``: underscores written as dashes,
    so ``prefix="--"`` names the command-line option).
    """
    for f in dataclasses.fields(obj):
        rng = f.metadata.get("range")
        if rng is not None:
            rng.check(getattr(obj, f.name), prefix + (f.name.replace("_", "-") if dashes else f.name))


def check_text(value: Any, name: str, max_len: int = 100) -> None:
    """A one-line error unless ``value`` is a string of at most ``max_len`` characters."""
    if not isinstance(value, str) or len(value) > max_len:
        raise InsetganError(f"{name} must be a string of at most {max_len} characters, got {short_repr(value)}")


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    """A one-line error unless ``value`` is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InsetganError(f"{name} must be one of {', '.join(choices)}, got {short_repr(value)}")


SEED_RANGE = Range(0, MAX_SEED, integer=True)  # every seed a user gives
