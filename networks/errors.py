"""Errors raised by the checkpoint loaders (user errors: see :mod:`insetgan.errors`), and the short
renderings of untrusted values their messages use."""
from __future__ import annotations

import reprlib
from typing import Any

from insetgan.errors import InsetganError


class CheckpointError(InsetganError):
    """A checkpoint file cannot be read safely or does not describe a supported generator."""


class UnsafePickleError(CheckpointError):
    """A pickle references a global outside the allow-list; nothing in it was executed."""


def short_repr(value: Any, size: int = 60) -> str:
    """A repr of ``value`` cut to about ``size`` characters, with bounded work on nested or shared data."""
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother = 3, size, size
    text = r.repr(value)
    return text if len(text) <= size else text[: size - 3] + "..."


def one_line(text: str, size: int = 160) -> str:
    """The first non-empty line of ``text``, cut to ``size`` characters (for error messages)."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= size else line[: size - 3] + "..."


def short_text(value: Any, size: int = 60) -> str:
    """A string as it is (first line, cut to ``size``), anything else as :func:`short_repr`."""
    return one_line(value, size) if isinstance(value, str) else short_repr(value, size)
