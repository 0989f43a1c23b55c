"""Running the ``insetgan`` command line from tests: in-process (fast) or as a real subprocess.

Most CLI tests call :func:`run`, which calls the console script's ``main`` in this process with
the streams captured by click's test runner (same parsing, error handling and exit codes, no
interpreter start-up or torch import per call). :func:`run_subprocess` starts ``python -m insetgan`` for real;
the suite keeps one such run per command (``SUBPROCESS_COMMANDS``) so the entry point, the
allocator set-up and the process exit codes stay covered.
"""
from __future__ import annotations

import logging
import os
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
