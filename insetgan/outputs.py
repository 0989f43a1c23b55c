"""Output sets that appear whole or not at all, and interruptions that clean up after themselves.

A job's files (encoded in memory first) are written into a staging folder and committed at the
end (:func:`write_set`, :func:`staged_set`):

- a new output folder is staged as a hidden sibling (``.NAME.XXXX.tmp``) and renamed into
  place, so it appears with every file or not at all; folders above it that the job created
  are removed again when it fails;
- an existing output folder keeps what it holds (an earlier set, the inversion cache, the
  user's own files): the set is staged in a hidden folder inside it and its files are moved
  in at the end, the set's completion file (``report.json``) removed first and moved in last,
  with SIGINT/SIGTERM held back for those few renames. Files of an earlier set that the new
  one does not rewrite stay unless the job names them stale.

A failure while staging (a full disk, an error, Ctrl-C, SIGTERM) removes the staging folder and
leaves the output folder as it was. :func:`interrupts_as_exceptions` turns SIGTERM and SIGHUP
into :class:`Terminated` (a ``KeyboardInterrupt``), so the clean-up written for Ctrl-C runs
for them too; :func:`made_folder` removes a folder that a refused command created.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Mapping

from insetgan.errors import InsetganError

REPORT = "report.json"
STAGING_SUFFIX = ".tmp"
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP delivered as an exception, so the clean-up written for Ctrl-C runs for it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(exc: BaseException | None) -> int:
    """The shell's status for a process stopped by ``exc``: 128 + the signal number (Ctrl-C: 130)."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


def _interrupt(signum: int, _frame: Any) -> None:
    """Signal handler: ignore further interrupts (the clean-up must finish), then raise."""
    for sig in INTERRUPTS:
        signal.signal(sig, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """Within the block, SIGINT raises ``KeyboardInterrupt`` and SIGTERM/SIGHUP :class:`Terminated`.

    The first interrupt also ignores later ones, so the clean-up it starts is not cut short; a
    signal already ignored (``nohup``) stays ignored. The previous handlers are restored on
    leaving. Off the main thread this does nothing.
    """
    if not _on_main_thread():
        yield
        return
    # A signal ignored from the start (nohup, a background job) stays ignored.
    previous = {sig: signal.getsignal(sig) for sig in INTERRUPTS if signal.getsignal(sig) != signal.SIG_IGN}
    for sig in previous:
        signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back during the block, then deliver them (main thread; elsewhere a no-op)."""
    if not _on_main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in INTERRUPTS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


@contextlib.contextmanager
def made_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Create folder ``path`` (and missing parents); if the block fails, remove those of them still empty."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InsetganError(f"{path} exists and is not a directory")
    missing = _missing_folders(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def set_member(name: str) -> PurePosixPath:
    """A file name of a set as a relative path inside the output folder (no absolute paths, no ``..``)."""
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts or rel.parts[0].startswith("."):
        raise InsetganError(f"invalid output file name {name!r}")
    return rel


def write_bytes(path: Path, data: bytes) -> None:
    """Write one new file of a staged set (plain permissions under the umask)."""
    with open(path, "xb") as f:
        f.write(data)


def _staged_files(staging: Path) -> list[PurePosixPath]:
    return sorted(PurePosixPath(p.relative_to(staging).as_posix()) for p in staging.rglob("*") if p.is_file())


def _merge(staging: Path, out: Path, last: str, stale: Callable[[str], bool] | None) -> None:
    """Move the staged files into the existing ``out``: the completion file removed first and moved last."""
    names = _staged_files(staging)
    for rel in names:
        if (out / rel).is_dir():
            raise InsetganError(f"cannot write {out / rel}: a folder of that name is in the way")
    ordered = [rel for rel in names if str(rel) != last] + [rel for rel in names if str(rel) == last]
    with interrupts_deferred():
        if ordered and str(ordered[-1]) == last:
            (out / last).unlink(missing_ok=True)
        for rel in ordered:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, out / rel)
        if stale is not None:
            written = {str(rel) for rel in names}
            for p in out.iterdir():
                if p.is_file() and p.name not in written and stale(p.name):
                    p.unlink()


def _plain_folder_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o777 & ~umask


@contextlib.contextmanager
def staged_set(outdir: str | os.PathLike, last: str = REPORT,
               stale: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """A staging folder for a set of files, committed to ``outdir`` when the block succeeds.

    On any failure (exceptions, ``KeyboardInterrupt``, :class:`Terminated`) the staging folder
    is removed and ``outdir`` is as it was (absent, or with its earlier content). ``last``: the
    set's completion file; ``stale(name)``: top-level files of an existing ``outdir`` that the
    new set replaces (removed unless the set rewrote them).
    """
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InsetganError(f"{outdir} exists and is not a directory")
    fresh = not out.exists()
    with made_folder(out.parent if fresh else out) as home:
        prefix = f".{out.resolve().name or 'out'}." if fresh else ".insetgan-staging."
        staging = Path(tempfile.mkdtemp(prefix=prefix, suffix=STAGING_SUFFIX, dir=home))
        try:
            yield staging
            if fresh:
                os.chmod(staging, _plain_folder_mode())
                try:
                    os.rename(staging, out)
                    return
                except OSError:  # the folder appeared meanwhile: merge into it
                    if not out.is_dir():
                        raise
            _merge(staging, out, last, stale)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def write_set(outdir: str | os.PathLike, files: Mapping[str, bytes], last: str = REPORT) -> Path:
    """Write a job's encoded files (name -> bytes; names may hold sub-folders) as one set (:func:`staged_set`)."""
    members = {set_member(name): data for name, data in files.items()}
    with staged_set(outdir, last) as staging:
        for rel, data in members.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            write_bytes(staging / rel, data)
    return Path(outdir)
