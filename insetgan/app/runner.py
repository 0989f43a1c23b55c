"""Running jobs for the web page: a worker process with a time limit per stage, per-job folders.

A job request (:mod:`insetgan.jobs.requests`) runs in a child
process (:class:`Worker`, started with ``spawn``) that the server can kill: a job that runs
over the time limit of its stage (loading, inversion, optimisation, writing), a cancelled job
and a job whose client went away are stopped by killing that process, whatever the job is
doing (a Python thread could not be stopped inside a loader). A fresh process is started at
once for the next job. :meth:`Worker.run` is a generator that yields :class:`Step` and
:class:`Stage` events while the job runs and returns its
:class:`~insetgan.jobs.report.RequestOutput`; closing it stops the job.

Uploaded files are copied into a per-job folder (:func:`job_folder`) that is removed when
the job ends, whatever the outcome, so nothing a request uploaded outlives it.
"""
from __future__ import annotations

import contextlib
import importlib
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator, Sequence

from insetgan.errors import InsetganError
from insetgan.jobs.progress import shown

if TYPE_CHECKING:
    from insetgan.jobs.report import RequestOutput

JOB_PREFIX = "insetgan-job-"
STAGES = ("loading", "inversion", "optimisation", "writing")
MAX_STAGE_S = 86400.0  # the longest time limit a stage can be given (one day)
TICK_S = 0.5  # a waiting job yields a Stage event this often (the page notices a lost client then)
PROGRESS_EVERY_S = 0.25  # the page's status line is refreshed at most this often


@dataclass(frozen=True)
class StageLimits:
    """The time limit of each stage of a job, in seconds.

    ``loading``: from the start of the job to its first loop (networks, photos, loss weights);
    ``inversion``: projecting the user's photos; ``optimisation``: the job's main loop;
    ``writing``: from the last optimisation step until the files reach the page.
    """

    loading: float = 120.0
    inversion: float = 1800.0
    optimisation: float = 3600.0
    writing: float = 120.0

    def __post_init__(self) -> None:
        for f in fields(self):
            check_stage_seconds(getattr(self, f.name), f.name)

    def of(self, stage: str) -> float:
        """The limit of ``stage``."""
        return float(getattr(self, stage))

    def text(self) -> str:
        """``loading=120, inversion=1800, …``: every stage's limit, as ``--stage-timeout`` takes them."""
        return ", ".join(f"{stage}={self.of(stage):g}" for stage in STAGES)

    @classmethod
    def parse(cls, texts: Sequence[str]) -> "StageLimits":
        """Limits from ``SECONDS`` (every stage) and ``STAGE=SECONDS`` items, later items winning."""
        values = {f.name: getattr(cls, f.name) for f in fields(cls)}
        for text in texts:
            stage, sep, seconds = str(text).partition("=")
            if not sep:
                stage, seconds = "", stage
            stage = stage.strip().lower()
            if stage and stage not in STAGES:
                raise InsetganError(f"--stage-timeout: unknown stage {stage!r}: the stages are {', '.join(STAGES)}")
            try:
                number = float(seconds)
            except ValueError:
                raise InsetganError(f"--stage-timeout takes SECONDS or STAGE=SECONDS, got {text!r}") from None
            for name in [stage] if stage else STAGES:
                values[name] = check_stage_seconds(number, f"--stage-timeout {name}")
        return cls(**values)


def check_stage_seconds(seconds: float, what: str) -> float:
    """``seconds`` when it is a finite time limit in (0, MAX_STAGE_S]; a one-line error otherwise."""
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and 0 < seconds <= MAX_STAGE_S):
        raise InsetganError(f"{what}: a time limit must be a number of seconds in (0, {MAX_STAGE_S:g}]")
    return float(seconds)


@dataclass(frozen=True)
class Step:
    """A progress event: the loop (``desc``), its step and total, and its current values."""

    desc: str
    step: int
    total: int
    values: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        """One line for the page, e.g. ``compose: step 12/30 · total 0.531 · face:seam 1.2``."""
        values = [f"{k} {v:.4g}" for k, v in self.values.items() if isinstance(v, (int, float)) and shown(k)]
        return " · ".join([f"{self.desc}: step {self.step}/{self.total}", *values[:4]])


@dataclass(frozen=True)
class Stage:
    """A job waiting in a stage without progress to report: the stage and its time so far."""

    name: str
    elapsed_s: float

    def text(self) -> str:
        """One line for the page, e.g. ``loading… 3 s``."""
        return f"{self.name}… {self.elapsed_s:.0f} s"


def stage_of(desc: str) -> str:
    """The stage a job's loop belongs to: projecting a photo (``invert …``) or the main loop."""
    return "inversion" if desc.startswith("invert") else "optimisation"


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _ChildReporter:
    """The progress callback of a job's loop in the worker process: each step goes to the server."""

    def __init__(self, desc: str, conn: multiprocessing.connection.Connection) -> None:
        self.desc, self.conn, self.stage = desc, conn, stage_of(desc)
        conn.send(("stage", self.stage))

    def __call__(self, step: int, total: int, values: dict[str, float]) -> None:
        numbers = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
        self.conn.send(("step", Step(self.desc, int(step), int(total), numbers)))
        if self.stage == "optimisation" and step >= total:
            self.conn.send(("stage", "writing"))

    def close(self) -> None:
        """Nothing to release."""


def _job_result(fn: Callable[..., Any], request: Any, conn: multiprocessing.connection.Connection
                ) -> tuple[str, Any]:
    """Run one job in the worker process: ``("done", output)`` or ``("error", one line)``."""
    try:
        return "done", fn(request, lambda desc, notice: _ChildReporter(desc, conn))
    except (InsetganError, OSError) as exc:
        return "error", one_line(exc)
    except MemoryError:
        return "error", "the job ran out of memory"
    except Exception as exc:  # noqa: BLE001 - a bug: its traceback goes to the server's log, one line to the page
        traceback.print_exc()
        return "error", f"internal error ({type(exc).__name__}: {one_line(exc)}); the server log has the details"


def _exit_with_parent(parent: int) -> None:
    """End this process as soon as the server that started it is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def worker_main(conn: multiprocessing.connection.Connection, parent: int, preload: tuple[str, ...] = ()) -> None:
    """The worker process: import ``preload``, then run each job received on ``conn`` and send back
    its events and result.

    Ctrl-C in the terminal reaches the server, which stops this process; the process also ends
    when the server dies or closes the connection.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    for module in preload:
        importlib.import_module(module)
    while True:
        try:
            fn, request = conn.recv()
        except (EOFError, OSError):
            return
        kind, payload = _job_result(fn, request, conn)
        try:
            conn.send((kind, payload))
        except Exception as exc:  # noqa: BLE001 - an output that cannot be sent is the job's error
            conn.send(("error", f"the job's output could not be passed to the page ({one_line(exc)})"))


class Worker:
    """One worker process running jobs one at a time, each stage under its time limit.

    The process is started ahead of the first job (:meth:`start`), importing the ``preload``
    modules while no job waits, and replaced by a fresh one whenever a job is stopped before its
    end. :meth:`close` stops it for good.
    """

    def __init__(self, limits: StageLimits = StageLimits(), tick_s: float = TICK_S,
                 preload: tuple[str, ...] = ()) -> None:
        self.limits, self.tick_s, self.preload = limits, tick_s, preload
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._closed = False

    def start(self) -> None:
        """Start the worker process now (when none is running), so the next job does not wait for it."""
        if self._closed:
            raise InsetganError("the server is stopping")
        if self._proc is not None and self._proc.is_alive():
            return
        self._stop_process()
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=worker_main, args=(theirs, os.getpid(), self.preload),
                                 name="insetgan-worker", daemon=True)
        proc.start()
        theirs.close()
        self._proc, self._conn = proc, ours

    @property
    def pid(self) -> int | None:
        """The worker process's id (None when none is running)."""
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def _stop_process(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(timeout=10)
            with contextlib.suppress(ValueError):  # still running after the wait: left to the OS
                self._proc.close()
        self._proc, self._conn = None, None

    def _lost(self, proc: Any) -> InsetganError:
        """The error of a job whose worker process went away (killed, crashed, or the server stopping)."""
        if self._closed:
            return InsetganError("the server is stopping; the job was stopped")
        proc.join(timeout=2)
        code = proc.exitcode
        how = f"exit code {code}"
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                how = f"killed by {signal.Signals(-code).name}"
        return InsetganError(f"the job's worker process stopped ({how}); the job was lost")

    def run(self, fn: Callable[[Any, Callable[[str, str | None], Any]], RequestOutput], request: Any
            ) -> Generator[Step | Stage, None, RequestOutput]:
        """Run ``fn(request, progress_factory)`` in the worker process: yields events, returns its output.

        ``fn`` and ``request`` must be picklable (``fn`` a module-level function). A job's error,
        a stage over its time limit and a worker that died are raised here as one-line
        :class:`InsetganError`; closing the generator stops the job.
        """
        with self._lock:
            self.start()
            proc, conn = self._proc, self._conn
            finished = False
            try:
                try:
                    conn.send((fn, request))
                except OSError:
                    raise self._lost(proc) from None
                stage, since = "loading", time.monotonic()
                while True:
                    limit = self.limits.of(stage)
                    left = since + limit - time.monotonic()
                    if left <= 0:
                        raise InsetganError(f"the {stage} stage ran over its time limit ({limit:g} s); "
                                            f"the job was stopped")
                    try:
                        ready = conn.poll(min(left, self.tick_s))
                    except (EOFError, OSError):
                        raise self._lost(proc) from None
                    if not ready:
                        yield Stage(stage, time.monotonic() - since)
                        continue
                    try:
                        kind, payload = conn.recv()
                    except (EOFError, OSError):
                        raise self._lost(proc) from None
                    if kind == "stage":
                        stage, since = payload, time.monotonic()
                    elif kind == "step":
                        yield payload
                    elif kind == "done":
                        finished = True
                        return payload
                    else:
                        finished = True
                        raise InsetganError(payload)
            finally:
                if not finished:
                    self._stop_process()
                    if not self._closed:
                        self.start()

    def close(self) -> None:
        """Stop the worker process (a running job with it); no job runs after this."""
        self._closed = True
        self._stop_process()


def drive(worker: Worker, fn: Callable, request: Any, status: Any) -> Generator[dict, None, RequestOutput]:
    """Run a request in ``worker``, yielding the page's status-line updates ``{status: text}`` (steps
    throttled); returns its output.

    A stage that reports no steps still yields its name and time every tick, so a client that
    went away is noticed (Gradio then closes this generator, which stops the job).
    """
    gen = worker.run(fn, request)
    last, text, step_stage = 0.0, "", ""
    try:
        while True:
            event: Step | Stage = next(gen)
            now = time.monotonic()
            if isinstance(event, Step):
                step_stage = stage_of(event.desc)
                if now - last < PROGRESS_EVERY_S and event.step != event.total:
                    continue
                text = event.text()
            elif event.name != step_stage:
                text = event.text()
            last = now
            yield {status: text}
    except StopIteration as stop:
        return stop.value
    finally:
        gen.close()


@contextlib.contextmanager
def job_folder(root: Path) -> Iterator[Path]:
    """A fresh folder under ``root`` for one job (uploads, cache, outputs), removed when the job ends."""
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=JOB_PREFIX, dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def take_upload(upload: str | None, folder: Path, name: str, uploads: Path) -> str | None:
    """Copy an uploaded file into the job folder (as ``name`` + its suffix); the copy's path, or None.

    Only a file inside ``uploads`` (the server's upload folder) is taken; any other path gets
    the same answer as a missing upload. The job reads only the copy, which goes with the job
    folder; the page keeps the upload (so the same selfie can run again) until the server's
    upload cache expires it.
    """
    if upload is None:
        return None
    src = Path(upload).resolve()
    if not (src.is_relative_to(uploads.resolve()) and src.is_file()):
        raise InsetganError(f"the uploaded {name} is missing; upload it again")
    dst = folder / f"{name}{src.suffix.lower()}"
    shutil.copyfile(src, dst)
    return str(dst)


def leftover_jobs(root: Path) -> list[Path]:
    """Job folders still under ``root`` (none once every job has ended)."""
    return sorted(root.glob(f"{JOB_PREFIX}*")) if root.is_dir() else []
