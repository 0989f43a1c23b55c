"""Bounded readers of the array files directions come in: ``.npy``, ``.npz``, ``.pt``, ``.pkl``, ``.csv``.

Every reader returns plain float arrays by name (``""`` for a file that holds one unnamed array),
reads at most :data:`MAX_FILE_BYTES` from disk and :data:`MAX_ELEMENTS` numbers in all, never
runs code from a file (``.npy``/``.npz`` headers are checked before any data is read, pickles go
through the project's scanning, allow-listing unpickler, ``torch.save`` files through its bounded
weights-only reader) and turns every kind of damage into one :class:`InsetganError` line.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from insetgan.errors import InsetganError, error_line
from insetgan.latents import NPY_MAGIC, ZIP_MAGIC, finite_float32, one_line_errors, read_npy
from insetgan.limits import clipped
from insetgan.networks.pickle_scan import PickleLimits
from insetgan.networks.safe_pickle import safe_load_pickle
from insetgan.networks.torch_files import load_torch_file

MAX_FILE_BYTES = 64 * 2**20  # a SeFa file of 512 directions of 512 numbers is 1 MiB
MAX_ELEMENTS = 2**23  # the numbers one direction file may hold in all
MAX_MEMBERS = 4096  # arrays in one .npz, .pt or .pkl
MAX_CSV_ROWS = 65_536
PICKLE_LIMITS = PickleLimits(max_ops=200_000, max_bytes=2 * MAX_FILE_BYTES, max_depth=16, max_nodes=20_000)
KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

Arrays = dict[str, np.ndarray]


def checked_size(path: Path, what: str) -> int:
    """The size of the file ``path``; a one-line error when it is missing, empty or over :data:`MAX_FILE_BYTES`."""
    if not path.is_file():
        raise InsetganError(f"{what} not found: {clipped(str(path), 120)}")
    size = path.stat().st_size
    if size == 0:
        raise InsetganError(f"{what} is empty")
    if size > MAX_FILE_BYTES:
        raise InsetganError(f"{what} is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit of a direction file")
    return size


class _Budget:
    """The numbers read so far from one file, against :data:`MAX_ELEMENTS`."""

    def __init__(self, what: str) -> None:
        self.what, self.left = what, MAX_ELEMENTS

    def allowed(self, shape: tuple[int, ...]) -> bool:
        """True for an array of at most two axes that fits what is left (and counts it)."""
        size = int(np.prod(shape, dtype=object)) if shape else 1
        if len(shape) > 2 or size > self.left:
            return False
        self.left -= size
        return True


def _finite(arr: Any, what: str) -> np.ndarray:
    """A float32 copy of a numeric array; a one-line error for non-numeric, NaN, inf or huge values."""
    if isinstance(arr, torch.Tensor):
        if not (arr.dtype.is_floating_point or arr.dtype in (torch.int32, torch.int64)):
            raise InsetganError(f"{what} holds {arr.dtype} data; a direction is a float array")
        arr = arr.detach().to(torch.float64).numpy()
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        raise InsetganError(f"{what} holds {clipped(str(kind))}; a direction is a float array")
    if arr.ndim > 2 or arr.size > MAX_ELEMENTS:
        raise InsetganError(f"{what} has shape {clipped(str(list(arr.shape)))}; a direction has one or two axes")
    return finite_float32(arr, what)


def _named(value: Any, what: str) -> Arrays:
    """An array, or a dict of named arrays (at most :data:`MAX_MEMBERS`), as checked float32 arrays."""
    if isinstance(value, dict):
        if len(value) > MAX_MEMBERS:
            raise InsetganError(f"{what} holds {len(value)} entries (at most {MAX_MEMBERS})")
        out = {}
        for key, arr in value.items():
            if not isinstance(key, str) or not KEY_RE.match(key):
                raise InsetganError(f"{what} has an entry named {clipped(repr(key))}; names are letters, digits, "
                                    "_ . - (at most 64)")
            out[key] = _finite(arr, f"{what} ({key})")
        return out
    return {"": _finite(value, what)}


def read_npy_file(path: Path, what: str) -> Arrays:
    """The one array of a ``.npy`` file (its header checked before the data is read)."""
    budget = _Budget(what)
    with one_line_errors(what), path.open("rb") as fp:
        arr = read_npy(fp, what, budget.allowed, f"a direction has one or two axes and at most {MAX_ELEMENTS:,} "
                                                 "numbers")
        return {"": finite_float32(arr, what)}


def read_npz_file(path: Path, what: str, names: tuple[str, ...] | None = None) -> Arrays:
    """The arrays of an ``.npz`` (only ``names`` when given), each header checked before its data is read."""
    budget = _Budget(what)
    out: Arrays = {}
    with one_line_errors(what), path.open("rb") as fp, zipfile.ZipFile(fp) as zf:
        members = [info for info in zf.infolist() if info.filename.endswith(".npy")]
        if len(members) > MAX_MEMBERS:
            raise InsetganError(f"{what} holds {len(members)} arrays (at most {MAX_MEMBERS})")
        for info in members:
            key = info.filename[:-4]
            if names is not None and key not in names:
                continue
            with zf.open(info) as member:
                arr = read_npy(member, f"{what} ({key})", budget.allowed,
                               f"a direction has one or two axes and at most {MAX_ELEMENTS:,} numbers in all")
                if member.read(1):
                    raise InsetganError(f"{what} ({key}) has data after its array")
            out[key] = finite_float32(arr, f"{what} ({key})")
    return out


def npz_names(path: Path, what: str) -> list[str]:
    """The array names of an ``.npz`` (its ``.npy`` members without the suffix), without reading them."""
    with one_line_errors(what), path.open("rb") as fp, zipfile.ZipFile(fp) as zf:
        names = [info.filename[:-4] for info in zf.infolist() if info.filename.endswith(".npy")]
    if len(names) > MAX_MEMBERS:
        raise InsetganError(f"{what} holds {len(names)} arrays (at most {MAX_MEMBERS})")
    return names


def read_pickle_file(path: Path, what: str) -> Arrays:
    """A pickled numpy array (or dict of arrays), read by the allow-listing unpickler with bounded work."""
    data = path.read_bytes()
    try:
        value = safe_load_pickle(data, PICKLE_LIMITS)
    except InsetganError as exc:
        raise InsetganError(f"{what}: {error_line(exc)}") from None
    return _named(value, what)


def read_torch_file(path: Path, what: str) -> Arrays:
    """A tensor (or dict of tensors) saved with ``torch.save``, read by the bounded weights-only reader."""
    try:
        value = load_torch_file(path, limits=PICKLE_LIMITS)
    except InsetganError as exc:
        raise InsetganError(f"{what}: {error_line(exc)}") from None
    return _named(dict(value) if isinstance(value, dict) else value, what)


def read_direction_arrays(path: Path, what: str, names: tuple[str, ...] | None = None) -> Arrays:
    """The arrays of a direction file, by its content: ``.npy``/``.npz`` by magic, ``.pt`` by zip content, ``.pkl``.

    A ``.pt`` file is a zip archive like an ``.npz``; the suffix tells them apart (``.pt``,
    ``.pth`` are torch files, any other zip is an ``.npz``).
    """
    checked_size(path, what)
    with path.open("rb") as fp:
        head = fp.read(len(NPY_MAGIC))
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        return read_torch_file(path, what)
    if head.startswith(NPY_MAGIC):
        return read_npy_file(path, what)
    if head.startswith(ZIP_MAGIC):
        return read_npz_file(path, what, names)
    if suffix in (".pkl", ".pickle") or head[:1] == b"\x80":
        return read_pickle_file(path, what)
    raise InsetganError(f"{what} is not a .npy, .npz, .pt or .pkl file")


def read_channel_scores(path: Path, what: str) -> np.ndarray:
    """Per-channel scores from a StyleGAN-Human ``statis.csv`` (columns ``channel`` and ``strength``)."""
    checked_size(path, what)
    if path.stat().st_size > 4 * 2**20:
        raise InsetganError(f"{what} is over 4 MiB; a channel table has one short row per channel")
    with one_line_errors(what):
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8", errors="strict"))))
    if not rows or not {"channel", "strength"} <= set(rows[0]):
        raise InsetganError(f"{what} needs the columns channel and strength")
    if len(rows) > MAX_CSV_ROWS:
        raise InsetganError(f"{what} has {len(rows)} rows (at most {MAX_CSV_ROWS})")
    try:
        pairs = sorted((int(r["channel"]), float(r["strength"])) for r in rows)
    except (TypeError, ValueError):
        raise InsetganError(f"{what}: every row needs an integer channel and a number strength") from None
    if [c for c, _ in pairs] != list(range(len(pairs))):
        raise InsetganError(f"{what}: the channels must be 0..{len(pairs) - 1}, each once")
    return finite_float32(np.array([s for _, s in pairs]), what)
