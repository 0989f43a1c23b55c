"""Running one job for the web page: a per-job folder, live progress and cancellation.

A request (:class:`insetgan.requests.ComposeRequest` / ``RefineRequest``) runs in a worker
thread; :func:`run_job` is a generator that yields :class:`Step` events while it runs and
returns the job's :class:`~insetgan.requests.RequestOutput`. Closing the generator (the page's
Cancel button, or a client that went away) cancels the job at its next progress step. Uploaded
files are copied into a per-job folder (:func:`job_folder`) that is removed when the job ends,
whatever the outcome, so nothing a request uploaded outlives it.
"""
from __future__ import annotations

import contextlib
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

from insetgan.errors import InsetganError
from insetgan.requests import RequestOutput

JOB_PREFIX = "insetgan-job-"


class JobCancelled(Exception):
    """Raised inside a job's progress callback once the job has been cancelled."""


@dataclass(frozen=True)
class Step:
    """A progress event: the loop (``desc``), its step and total, and its current values."""

    desc: str
    step: int
    total: int
    values: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        """One line for the page, e.g. ``compose: step 12/30 · total 0.531 · face:seam 1.2``."""
        shown = [f"{k} {v:.4g}" for k, v in self.values.items() if isinstance(v, (int, float))
                 and (k == "total" or k.endswith("coarse_l1") or k.endswith(":border") or k == "loss")]
        return " · ".join([f"{self.desc}: step {self.step}/{self.total}", *shown[:4]])


class _Reporter:
    """The progress callback a job's loops call: forwards steps, stops a cancelled job."""

    def __init__(self, desc: str, events: "queue.Queue[tuple[str, Any]]", cancel: threading.Event) -> None:
        self.desc, self.events, self.cancel = desc, events, cancel

    def __call__(self, step: int, total: int, values: dict[str, float]) -> None:
        if self.cancel.is_set():
            raise JobCancelled("the job was cancelled")
        self.events.put(("step", Step(self.desc, step, total, dict(values))))

    def close(self) -> None:
        """Nothing to release."""


def run_job(fn: Callable[[Any, Callable[[str, str | None], _Reporter]], RequestOutput], request: Any
            ) -> Generator[Step, None, RequestOutput]:
    """Run ``fn(request, progress_factory)`` in a worker thread: yields steps, returns its output.

    Errors of the job are raised here; closing the generator cancels the job and waits for
    its thread to stop.
    """
    events: "queue.Queue[tuple[str, Any]]" = queue.Queue()
    cancel = threading.Event()

    def target() -> None:
        try:
            events.put(("done", fn(request, lambda desc, notice: _Reporter(desc, events, cancel))))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            events.put(("error", exc))

    worker = threading.Thread(target=target, name="insetgan-job", daemon=True)
    worker.start()
    try:
        while True:
            kind, payload = events.get()
            if kind == "step":
                yield payload
            elif kind == "done":
                return payload
            else:
                raise payload
    finally:
        cancel.set()
        worker.join()


@contextlib.contextmanager
def job_folder(root: Path) -> Iterator[Path]:
    """A fresh folder under ``root`` for one job (uploads, cache, outputs), removed when the job ends."""
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=JOB_PREFIX, dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def take_upload(upload: str | None, folder: Path, name: str) -> str | None:
    """Copy an uploaded file into the job folder (as ``name`` + its suffix); the copy's path, or None.

    The job reads only this copy, which goes with the job folder; the page keeps the upload
    (so the same selfie can run again) until the server's upload cache expires it.
    """
    if upload is None:
        return None
    src = Path(upload)
    if not src.is_file():
        raise InsetganError(f"the uploaded {name} is missing; upload it again")
    dst = folder / f"{name}{src.suffix.lower()}"
    shutil.copyfile(src, dst)
    return str(dst)


def leftover_jobs(root: Path) -> list[Path]:
    """Job folders still under ``root`` (none once every job has ended)."""
    return sorted(root.glob(f"{JOB_PREFIX}*")) if root.is_dir() else []
