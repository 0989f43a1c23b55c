"""Latent files (``.npy``, ``.npz``) read with bounded work and one-line errors.

The ``.npy`` header (format version, dtype, shape) is parsed and checked against the shape the
caller expects before a single data byte is read, so a header that declares 10¹¹ elements costs
nothing; then exactly the declared bytes are read. Only float16/32/64 data is accepted (never
pickles or object arrays), values must be finite and within :data:`MAX_LATENT_ABS`. Inside an
``.npz`` the chosen member is streamed the same way and its CRC is verified.
"""
from __future__ import annotations

import contextlib
import math
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

import numpy as np

from insetgan.errors import InsetganError, error_line
from insetgan.limits import MAX_CANDIDATES, clipped

MAX_BATCH = MAX_CANDIDATES  # the most latents one file may hold
MAX_LATENT_ABS = 1e4  # |w| of a trained mapping network stays within tens; larger values are corrupt data
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"

ShapeCheck = Callable[[tuple[int, ...]], bool]
# What a damaged file can raise from numpy's header parser, zipfile or zlib; each becomes one line.
READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError,
               OverflowError, KeyError, SyntaxError, tokenize.TokenError, RecursionError, MemoryError)


def read_npy(fp: BinaryIO, what: str, allowed: ShapeCheck, want: str) -> np.ndarray:
    """One float array from an open ``.npy`` stream; the header is checked before the data is read.

    ``allowed`` decides whether a shape fits; ``want`` describes the fitting shapes for the error.
    """
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise InsetganError(f"{what}: unsupported .npy format version {version[0]}.{version[1]}")
    if dtype.kind != "f" or dtype.itemsize > 8 or dtype.hasobject or dtype.names is not None:
        raise InsetganError(f"{what} holds {clipped(str(dtype))} data; a latent is float16, float32 or float64")
    if not allowed(tuple(shape)):
        raise InsetganError(f"{what} has shape {clipped(str(list(shape)))}; {want}")
    nbytes = math.prod(shape) * dtype.itemsize
    data = fp.read(nbytes)
    if len(data) != nbytes:
        raise InsetganError(f"{what} is truncated ({len(data)} of {nbytes} data bytes)")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _pick_member(zf: zipfile.ZipFile, names: Sequence[str], what: str) -> zipfile.ZipInfo:
    """The member ``NAME.npy`` for the first of ``names`` present, else the only ``.npy`` member."""
    members = {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith(".npy")}
    for name in names:
        if name in members:
            return members[name]
    if len(members) == 1:
        return next(iter(members.values()))
    listed = clipped(", ".join(sorted(members)), 120) if members else "none"
    raise InsetganError(f"{what} has no array {names[0]!r} (it has {listed})")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str, allowed: ShapeCheck, want: str
                 ) -> np.ndarray:
    with zf.open(info) as member:
        arr = read_npy(member, what, allowed, want)
        if member.read(1):  # also reaches the end of the member, where zipfile verifies its CRC
            raise InsetganError(f"{what} has data after its array")
    return arr


@contextlib.contextmanager
def one_line_errors(what: str) -> Iterator[None]:
    """Turn what a damaged file makes numpy, zipfile or zlib raise into one :class:`InsetganError` line."""
    try:
        yield
    except InsetganError:
        raise
    except READ_ERRORS as exc:
        raise InsetganError(f"cannot read {what}: {error_line(exc)}") from None


def _open_checked(path: str | Path, what: str) -> BinaryIO:
    p = Path(path)
    if not p.is_file():
        raise InsetganError(f"{what} not found: {path}")
    return p.open("rb")


def _kind(fp: BinaryIO, what: str) -> str:
    head = fp.read(len(NPY_MAGIC))
    fp.seek(0)
    if not head:
        raise InsetganError(f"{what} is empty")
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC):
        return "npz"
    raise InsetganError(f"{what} is not a .npy or .npz file")


def read_array(path: str | Path, names: Sequence[str], allowed: ShapeCheck, want: str, what: str) -> np.ndarray:
    """A float array from a ``.npy`` file, or from the member of an ``.npz`` named by the first of ``names`` found.

    Any damage (truncation, a corrupt archive, a bad header) is a one-line :class:`InsetganError`.
    """
    with one_line_errors(what), _open_checked(path, what) as fp:
        if _kind(fp, what) == "npy":
            return read_npy(fp, what, allowed, want)
        with zipfile.ZipFile(fp) as zf:
            return _read_member(zf, _pick_member(zf, names, what), what, allowed, want)


def read_npz_arrays(path: str | Path, shapes: dict[str, tuple[int, ...]], what: str) -> dict[str, np.ndarray]:
    """The members ``NAME.npy`` of an ``.npz`` with exactly the given shapes (finite float data), as float32."""
    out: dict[str, np.ndarray] = {}
    with one_line_errors(what), _open_checked(path, what) as fp, zipfile.ZipFile(fp) as zf:
        present = set(zf.namelist())
        for name, shape in shapes.items():
            if f"{name}.npy" not in present:
                raise InsetganError(f"{what} has no array {name!r}")
            arr = _read_member(zf, zf.getinfo(f"{name}.npy"), f"{what} ({name})",
                               lambda s, shape=shape: s == shape, f"expected {list(shape)}")
            out[name] = finite_float32(arr, f"{what} ({name})")
    return out


def finite_float32(arr: np.ndarray, what: str, max_abs: float = MAX_LATENT_ABS) -> np.ndarray:
    """``arr`` as a writable float32 array; a one-line error for NaN, inf or values beyond ``max_abs``."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.array(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise InsetganError(f"{what} contains NaN or inf")
    if out.size and float(np.abs(out).max()) > max_abs:
        raise InsetganError(f"{what} holds values beyond ±{max_abs:g}")
    return out


def latent_shapes(num_ws: int, w_dim: int, max_batch: int = MAX_BATCH) -> tuple[ShapeCheck, str]:
    """The shape test for a latent of a generator with ``num_ws`` layers of ``w_dim``, and its description."""
    def allowed(shape: tuple[int, ...]) -> bool:
        if shape in ((w_dim,), (1, w_dim), (num_ws, w_dim)):
            return True
        return len(shape) == 3 and 1 <= shape[0] <= max_batch and shape[1:] == (num_ws, w_dim)

    return allowed, (f"this generator needs [{w_dim}] or [{num_ws}, {w_dim}] (or [B, {num_ws}, {w_dim}] "
                     f"with B <= {max_batch})")


def read_latent(path: str | Path, num_ws: int, w_dim: int, key: str = "ws", max_batch: int = MAX_BATCH
                ) -> np.ndarray:
    """W+ [1|B, num_ws, w_dim] float32 from a latent file.

    ``.npy``: w [D], [1, D], W+ [L, D] or [B, L, D]. ``.npz``: the array ``key``, else ``ws``
    (``latents.npz`` of ``insetgan invert``), else ``w`` (``projected_w.npz`` of the official projector and
    of ``insetgan invert``), else its only array. A single w is repeated over the layers.
    """
    allowed, want = latent_shapes(num_ws, w_dim, max_batch)
    what = f"latent {path}"
    arr = finite_float32(read_array(path, (key, "ws", "w"), allowed, want, what), what)
    if arr.ndim == 1 or arr.shape == (1, w_dim) and num_ws != 1:
        return np.ascontiguousarray(np.broadcast_to(arr.reshape(1, 1, w_dim), (1, num_ws, w_dim)))
    return arr.reshape(-1, num_ws, w_dim)
