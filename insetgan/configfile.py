"""Bounded readers of small structured files (JSON or YAML configs, ``dataset.json``).

Every failure is a one-line :class:`InsetganError`: a file over the size limit, bytes that are
not UTF-8, nesting deeper than a config can use, ``NaN``/``Infinity`` literals, invalid syntax,
or a document that is not a mapping. The nesting is measured before the parser runs, so a
deeply nested file costs one linear scan, never a deep recursion.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from insetgan.errors import InsetganError, error_line

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a config is a few hundred bytes
MAX_DEPTH = 16  # the deepest config nests three levels (stages -> stage -> optimize)
YAML_SUFFIXES = (".yaml", ".yml")

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def read_limited(path: str | Path, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of ``path``; a one-line error when it is missing, unreadable or over ``max_bytes``."""
    p = Path(path)
    if not p.is_file():
        raise InsetganError(f"{what} not found: {path}")
    with p.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InsetganError(f"{what} {path} is larger than {max_bytes // 1024} KiB")
    return data


def decode_text(data: bytes, what: str) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark is dropped); a one-line error for binary data."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InsetganError(f"{what} is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x})") from None


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (brackets inside strings are ignored)."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub('""', text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _no_constant(name: str) -> Any:
    raise InsetganError(f"{name} is not a number JSON allows (give a finite value)")


def parse_json(text: str, what: str, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``text``, refusing ``NaN``/``Infinity`` and nesting deeper than ``max_depth``."""
    depth = json_depth(text)
    if depth > max_depth:
        raise InsetganError(f"{what} nests {depth} levels deep (at most {max_depth})")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except InsetganError as exc:
        raise InsetganError(f"{what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InsetganError(f"{what}: invalid JSON ({error_line(exc)})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer with more digits than Python converts
        raise InsetganError(f"{what}: invalid JSON ({error_line(exc)})") from None


def parse_yaml(text: str, what: str) -> Any:
    """The YAML value of ``text`` (safe loader: plain data only)."""
    try:
        import yaml
    except ImportError:
        raise InsetganError("YAML configs need PyYAML: pip install pyyaml") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InsetganError(f"{what}: invalid YAML ({error_line(exc)})") from None
    except RecursionError:
        raise InsetganError(f"{what} nests too deeply") from None
    except (ValueError, TypeError) as exc:  # e.g. an unhashable mapping key
        raise InsetganError(f"{what}: invalid YAML ({error_line(exc)})") from None


def read_mapping(path: str | Path, what: str = "config file", max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """The mapping stored in a JSON file (or YAML, by a .yaml/.yml suffix) of at most ``max_bytes``."""
    label = f"{what} {path}"
    text = decode_text(read_limited(path, what, max_bytes), label)
    return as_mapping(parse_yaml(text, label) if Path(path).suffix.lower() in YAML_SUFFIXES
                      else parse_json(text, label), label)


def as_mapping(data: Any, what: str) -> dict[str, Any]:
    """``data`` when it is a mapping with string keys; a one-line error otherwise."""
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise InsetganError(f"{what} must hold a mapping of names to values")
    return data
