"""Typed, bounded config fields: each generator config lists its fields' rules once, in one table.

Every way a config is made (our safetensors metadata, the constructor arguments an official
pickle records, the shapes of a rosinality state dict, the code) ends in the config's
``__post_init__``, which checks every field against its table with :func:`check_fields` before
any network is built: the type (no bool for a number, no float for an integer), finiteness,
the range, and for a few the allowed values. :func:`coerce_fields` first converts values that
have the right meaning in another representation (numpy scalars, ``512.0`` from JSON, 0/1 for
a flag, a list for a tuple); anything else is left for the check to refuse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from insetgan.errors import InsetganError
from insetgan.networks.errors import short_repr

# The largest network (weights and buffers) a config may describe: 8x the official 1024x1024
# StyleGAN2 and StyleGAN3 generators (about 30 M each), so that no file can make the loader
# allocate gigabytes.
MAX_PARAMETERS = 250_000_000
MAX_FILTER_TAPS = 16


@dataclass(frozen=True)
class Field:
    """What one config field accepts: ``kind`` ("int", "float", "bool", "str", "floats": a
    tuple of floats), an inclusive range ``[lo, hi]`` (for "floats": of each element),
    ``optional`` (None allowed), ``choices`` (for "str") and ``power_of_two`` (for "int")."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    optional: bool = False
    choices: tuple[str, ...] = ()
    power_of_two: bool = False

    def describe(self) -> str:
        """The rule in words, e.g. ``an integer in [1, 8192]``."""
        span = f" in [{_num(self.lo)}, {_num(self.hi)}]" if self.lo is not None else ""
        text = {
            "int": f"{'a power of two' if self.power_of_two else 'an integer'}{span}",
            "float": f"a finite number{span}",
            "bool": "true or false",
            "str": f"one of {', '.join(self.choices)}",
            "floats": f"1 to {MAX_FILTER_TAPS} finite numbers{span}",
        }[self.kind]
        return text + (" or null" if self.optional else "")


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _as_float(value: Any) -> Any:
    """``value`` as a float when it is a number a float can hold, else unchanged."""
    if not _is_number(value):
        return value
    try:
        return float(value)
    except OverflowError:  # an integer beyond the float range: left for the range check
        return value


def _coerce(value: Any, field: Field) -> Any:
    if field.kind == "int" and isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if field.kind == "int" and isinstance(value, (float, np.floating)) and math.isfinite(value) \
            and float(value).is_integer():
        return int(value)
    if field.kind == "float":
        return _as_float(value)
    if field.kind == "bool" and (isinstance(value, (bool, np.bool_)) or (_is_number(value) and value in (0, 1))):
        return bool(value)
    if field.kind == "floats" and isinstance(value, (list, tuple)) and len(value) <= MAX_FILTER_TAPS:
        return tuple(_as_float(v) for v in value)
    return value


def coerce_fields(values: Mapping[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    """``values`` with each known field converted to its kind where that changes no meaning."""
    return {k: _coerce(v, fields[k]) if k in fields and v is not None else v for k, v in values.items()}


def _valid(value: Any, field: Field) -> bool:
    if value is None:
        return field.optional
    if field.kind == "str":
        return isinstance(value, str) and value in field.choices
    if field.kind == "bool":
        return isinstance(value, bool)
    if field.kind == "floats":
        return isinstance(value, tuple) and 1 <= len(value) <= MAX_FILTER_TAPS \
            and all(_valid(v, Field("float", field.lo, field.hi)) for v in value)
    if field.kind == "int" and (type(value) is not int or (field.power_of_two and (value < 1 or value & (value - 1)))):
        return False
    if field.kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or (isinstance(value, float) and not math.isfinite(value))):
        return False
    return (field.lo is None or value >= field.lo) and (field.hi is None or value <= field.hi)


def check_fields(config: Any, fields: Mapping[str, Field], what: str) -> None:
    """Raise :class:`InsetganError` naming the first field of ``config`` that breaks its rule."""
    for name, field in fields.items():
        value = getattr(config, name)
        if not _valid(value, field):
            raise InsetganError(f"{what} {name} must be {field.describe()}, got {short_repr(value)}")


def check_size(parameters: int, what: str) -> None:
    """Refuse a config whose network would hold more than :data:`MAX_PARAMETERS` values."""
    if parameters > MAX_PARAMETERS:
        raise InsetganError(f"{what} describes a network of about {parameters:,} parameters; the limit is "
                            f"{MAX_PARAMETERS:,}")


def mapping_parameters(z_dim: int, c_dim: int, w_dim: int, layers: int, embed: int | None = None,
                       hidden: int | None = None) -> int:
    """About how many weights a StyleGAN mapping network of these sizes holds."""
    embed = w_dim if embed is None else embed
    hidden = w_dim if hidden is None else hidden
    first = z_dim + (embed if c_dim else 0)
    return c_dim * embed + first * hidden + layers * hidden * max(hidden, w_dim) + w_dim
