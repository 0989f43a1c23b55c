"""Running the ``insetgan`` command line from tests: in-process (fast) or as a real subprocess.

Most CLI tests call :func:`run`, which calls the console script's ``main`` in this process with
the streams captured by click's test runner (same parsing, error handling and exit codes, no
interpreter start-up or torch import per call). :func:`run_subprocess` starts ``python -m insetgan`` for real;
the suite keeps one such run per command (``SUBPROCESS_COMMANDS``) so the entry point, the
allocator set-up and the process exit codes stay covered.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CliResult:
    """What a CLI run left: exit status and the two output streams."""

    returncode: int
    stdout: str
    stderr: str


def run(*args: object, cwd: Path | None = None) -> CliResult:
    """Run ``insetgan ARGS`` in this process through the console script's ``main`` (same error handling).

    Streams are captured with click's runner; a bug's exception propagates to pytest.
    """
    from insetgan.cli import main

    old_cwd = Path.cwd()
    os.chdir(cwd or REPO)
    try:
        with CliRunner().isolation() as (out, err, _):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    finally:
        os.chdir(old_cwd)
        _reset_logging()
    return CliResult(code, stdout, stderr)


def run_subprocess(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
                   timeout: float = 300) -> CliResult:
    """Run ``python -m insetgan ARGS`` as a real process."""
    proc = subprocess.run([sys.executable, "-m", "insetgan", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


# Runs each JSON argument list read from stdin through :func:`run` and prints one JSON line per
# run: a "start" line before it and the result after it, so a caller can name a run that hangs.
_BATCH = """
import json, sys, time, traceback
from tests.cli_run import run
for i, args in enumerate(json.load(sys.stdin)):
    print(json.dumps({"start": i}), flush=True)
    t0 = time.perf_counter()
    try:
        r = run(*args)
        res = {"returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr}
    except BaseException:
        res = {"returncode": -1, "stdout": "", "stderr": traceback.format_exc()}
    print(json.dumps({**res, "seconds": time.perf_counter() - t0}), flush=True)
"""


def run_many_subprocess(arg_lists: list[list[object]], timeout: float,
                        memory_limit: int | None = None) -> list[tuple[CliResult, float]]:
    """Run ``insetgan ARGS`` for each list in ``arg_lists`` in one fresh process, each as :func:`run` does.

    One interpreter and torch start-up serve every run. Returns each run's result and seconds;
    an exception escaping the CLI comes back as return code -1 with its traceback on stderr.
    ``memory_limit`` caps the process's address space (bytes), so a runaway allocation fails
    instead of exhausting the machine. A batch still running after ``timeout`` seconds raises
    AssertionError naming the run that did not finish.
    """
    def limit() -> None:
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    payload = json.dumps([[str(a) for a in args] for args in arg_lists])
    try:
        proc = subprocess.run([sys.executable, "-c", _BATCH], input=payload, capture_output=True, text=True,
                              cwd=REPO, timeout=timeout, preexec_fn=limit)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        started = [json.loads(line)["start"] for line in out.splitlines() if line.startswith('{"start"')]
        stuck = arg_lists[started[-1]] if started else "interpreter start-up"
        raise AssertionError(f"insetgan {stuck} did not finish within the batch's {timeout} s") from None
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = [r for r in records if "start" not in r]
    assert len(results) == len(arg_lists), proc.stderr[-2000:]
    return [(CliResult(r["returncode"], r["stdout"], r["stderr"]), r["seconds"]) for r in results]


def assert_one_line_error(proc: CliResult, pattern: str) -> None:
    """A non-zero exit with exactly one ``Error: …`` line on stderr that contains ``pattern``, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in proc.stderr
    assert pattern.lower() in lines[0].lower(), lines[0]


def _reset_logging() -> None:
    """The CLI points logging at the runner's captured stderr; detach it once the run is over."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
