"""The edit spec of ``--edit``: ``FILE[:NAME][@ROWS][%THRESHOLD][=STRENGTH]`` parsed into an :class:`Edit`.

- ``FILE=α`` adds ``α·d`` (W directions) or ``α·v_i`` to every style layer ``i`` the file holds
  (style-space directions);
- ``FILE@4-7=α`` restricts the edit to W+ rows 4..7 (W) or to style layers 4..7 (S);
  ``FILE@5=α`` to one row or layer;
- ``FILE:NAME=α`` picks one named direction of a file that holds several (``.npz``, a dict in a
  ``.pt``/``.pkl``); ``default-body:upper_length`` names a built-in direction of the built-in body;
- ``FILE%0.2=α``: the channel mask of a style-space file keeps channels whose score exceeds 0.2.

Without ``=α`` the strength is 1 where the caller allows it (the strip job scales it per column).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from insetgan.errors import InsetganError
from insetgan.limits import Range, clipped

STRENGTH_RANGE = Range(-100.0, 100.0)  # |α| of one edit; unit directions move W by a few units per step
THRESHOLD_RANGE = Range(0.0, 1e4)
MAX_ROW = 63  # W+ rows and style layers of the largest networks stay below 64
MAX_SPEC_CHARS = 1024
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ROWS_RE = re.compile(r"@(\d{1,3})(?:-(\d{1,3}))?$")
_THRESHOLD_RE = re.compile(rf"%({_NUMBER})$")
_STRENGTH_RE = re.compile(rf"^{_NUMBER}$")


@dataclass(frozen=True)
class Edit:
    """One edit as the user wrote it: a direction source, an optional name, rows or layers, a strength.

    ``rows`` is an inclusive ``(first, last)`` pair or None (all rows / all layers the file holds);
    ``threshold`` applies a style-space file's channel mask (None: no mask).
    """

    source: str
    name: str | None = None
    rows: tuple[int, int] | None = None
    strength: float = 1.0
    threshold: float | None = None

    def __post_init__(self) -> None:
        if not self.source:
            raise InsetganError("an edit needs a direction file")
        STRENGTH_RANGE.check(self.strength, f"the strength of edit {clipped(self.source)}")
        if self.threshold is not None:
            THRESHOLD_RANGE.check(self.threshold, f"the mask threshold of edit {clipped(self.source)}")
        if self.name is not None and not NAME_RE.match(self.name):
            raise InsetganError(f"invalid direction name {clipped(self.name)!r}: letters, digits, _ . - "
                                "(at most 64)")
        if self.rows is not None and not 0 <= self.rows[0] <= self.rows[1] <= MAX_ROW:
            raise InsetganError(f"invalid rows {self.rows[0]}-{self.rows[1]} of edit {clipped(self.source)}: "
                                f"first <= last <= {MAX_ROW}")

    def scaled(self, factor: float) -> "Edit":
        """This edit with its strength multiplied by ``factor``."""
        return replace(self, strength=self.strength * factor)

    def text(self) -> str:
        """The spec that parses back into this edit."""
        out = self.source + (f":{self.name}" if self.name else "")
        if self.rows is not None:
            out += f"@{self.rows[0]}" + (f"-{self.rows[1]}" if self.rows[1] != self.rows[0] else "")
        if self.threshold is not None:
            out += f"%{self.threshold:g}"
        return out + f"={self.strength:g}"

    def to_dict(self) -> dict[str, Any]:
        """The edit for a report."""
        return {"spec": self.text(), "source": self.source, "name": self.name,
                "rows": list(self.rows) if self.rows is not None else None, "strength": self.strength,
                "threshold": self.threshold}


def _strength(text: str, spec: str) -> float:
    if not _STRENGTH_RE.match(text.strip()):
        raise InsetganError(f"invalid edit {clipped(spec)!r}: the strength after '=' must be a number")
    value = float(text)
    if not math.isfinite(value):
        raise InsetganError(f"invalid edit {clipped(spec)!r}: the strength must be finite")
    return value


def parse_rows(text: str, what: str = "--rows") -> tuple[int, int]:
    """``4-7`` or ``5`` as an inclusive ``(first, last)`` pair of W+ rows or style layers."""
    m = _ROWS_RE.match("@" + str(text).strip())
    if not m:
        raise InsetganError(f"{what} takes a row or a range of rows (e.g. 4-7), got {clipped(str(text))!r}")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) is not None else first
    if not first <= last <= MAX_ROW:
        raise InsetganError(f"{what}: expected first <= last <= {MAX_ROW}, got {first}-{last}")
    return first, last


def parse_edit(spec: str, strength_required: bool = True) -> Edit:
    """Parse ``FILE[:NAME][@ROWS][%THRESHOLD][=STRENGTH]`` (see the module doc) into an :class:`Edit`.

    ``strength_required=False`` accepts a spec without ``=α`` (strength 1).
    """
    if not isinstance(spec, str) or not spec.strip() or len(spec) > MAX_SPEC_CHARS or "\n" in spec:
        raise InsetganError(f"invalid edit {clipped(str(spec))!r}: expected FILE[:NAME][@ROWS]=STRENGTH")
    head, sep, tail = spec.strip().rpartition("=")
    if sep and _STRENGTH_RE.match(tail.strip()):
        strength = _strength(tail, spec)
    elif strength_required:
        raise InsetganError(f"invalid edit {clipped(spec)!r}: expected FILE[:NAME][@ROWS]=STRENGTH "
                            "(e.g. dirs.npz:sefa0@4-7=3)")
    else:
        head, strength = spec.strip(), 1.0
    threshold = None
    m = _THRESHOLD_RE.search(head)
    if m:
        threshold, head = float(m.group(1)), head[:m.start()]
    rows = None
    m = _ROWS_RE.search(head)
    if m:
        first = int(m.group(1))
        rows, head = (first, int(m.group(2)) if m.group(2) is not None else first), head[:m.start()]
    source, colon, name = head.rpartition(":")
    if not colon or not source or not NAME_RE.match(name):
        source, name = head, None
    return Edit(source, name, rows, strength, threshold)
