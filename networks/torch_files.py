"""``torch.save`` files read with bounded work: scanned first, then torch's weights-only loader.

Both of torch's layouts are scanned with :func:`insetgan.networks.pickle_scan.scan_pickle`
before ``torch.load`` runs: in a zip archive (torch >= 1.6) the ``data.pkl`` member, after
checking that every member is stored uncompressed (as ``torch.save`` writes them, so no member
is larger than the file); in the legacy layout the five pickles that precede the raw storage
bytes. Every failure of either step is one :class:`CheckpointError` line.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import torch

from insetgan.networks.errors import CheckpointError, UnsafePickleError, one_line, short_repr
from insetgan.networks.pickle_scan import DEFAULT_LIMITS, Budget, PickleLimits, scan_pickle

# The first pickle of a legacy (pre-zip) torch.save stream is this magic number.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
# A legacy stream holds five pickles (magic number, protocol version, system info, the object,
# the storage keys), then the raw storage bytes.
_LEGACY_PICKLES = 5
ZIP_MAGIC = b"PK\x03\x04"


def refusal(exc: BaseException) -> str:
    """The line of a weights-only loader error that names what it refused (else its first line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "GLOBAL" in line or "global" in line), lines[0] if lines else "")
    return one_line(detail, 200)


def scan_legacy(stream: BinaryIO, budget: Budget, end: int | None = None) -> None:
    """Scan the pickles of a legacy ``torch.save`` stream (from its start) against ``budget``."""
    if stream.read(len(LEGACY_MAGIC)) != LEGACY_MAGIC:
        raise CheckpointError("not a legacy torch.save stream (wrong magic number)")
    stream.seek(-len(LEGACY_MAGIC), io.SEEK_CUR)
    for _ in range(_LEGACY_PICKLES):
        scan_pickle(stream, budget, end)


def scan_zip(stream: BinaryIO, budget: Budget) -> None:
    """Scan a torch zip archive: members stored uncompressed, one ``data.pkl`` within ``budget``'s limits."""
    try:
        with zipfile.ZipFile(stream) as archive:
            members = archive.infolist()
            for info in members:
                if info.compress_type != zipfile.ZIP_STORED:
                    raise CheckpointError(f"archive member {short_repr(info.filename)} is compressed "
                                          "(torch.save stores every member uncompressed)")
                budget.spend_bytes(info.file_size, "the archive's members")
            pickles = [info for info in members if info.filename.endswith("/data.pkl")
                       and info.filename.count("/") == 1]
            if len(pickles) != 1:
                raise CheckpointError(f"archive has {len(pickles)} top-level data.pkl members, expected 1")
            data = archive.read(pickles[0])
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError, OverflowError,
            MemoryError, NotImplementedError) as exc:
        raise CheckpointError(f"corrupt or truncated zip archive ({type(exc).__name__}: {one_line(str(exc))})") \
            from None
    scan_pickle(io.BytesIO(data), budget)


def load_torch_file(path: str | os.PathLike, extra_globals: Iterable[Any] = (),
                    limits: PickleLimits = DEFAULT_LIMITS) -> Any:
    """Read a ``torch.save`` file with the weights-only loader after a bounded scan.

    ``extra_globals`` are classes the file may hold besides tensors and containers (e.g.
    ``argparse.Namespace``). Raises :class:`CheckpointError` naming ``path`` for an empty,
    oversized, foreign, corrupt or over-limit file, :class:`UnsafePickleError` for a global the
    loader refuses.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        budget = Budget(limits)
        budget.spend_bytes(size, "the file")
        if size == 0:
            raise CheckpointError("file is empty")
        with open(path, "rb") as f:
            head = f.read(len(LEGACY_MAGIC))
            f.seek(0)
            if head.startswith(ZIP_MAGIC):
                scan_zip(f, budget)
            elif head == LEGACY_MAGIC:
                scan_legacy(f, budget, size)
            else:
                raise CheckpointError("not a torch.save file (neither a zip archive nor a legacy torch stream)")
    except CheckpointError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafePickleError(f"{path}: refused by the weights-only loader: {refusal(exc)}") from None
    except Exception as exc:  # torch.load fails on corrupt input with many exception types
        raise CheckpointError(f"{path}: corrupt or truncated torch file ({type(exc).__name__}: "
                              f"{one_line(str(exc))})") from None
