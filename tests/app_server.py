"""Starting ``insetgan app`` as a real server process for tests, and stopping it."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

START_TIMEOUT_S = 180


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class AppServer:
    """A running ``python -m insetgan app``: its process, page address and log file."""

    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self, sig: int | None = None, timeout: float = 30) -> int:
        """Send ``sig`` (default SIGTERM) and wait for the exit; the exit code (killed after ``timeout``)."""
        if sig is None:
            self.proc.terminate()
        else:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def children(self) -> set[int]:
        """Ids of the server's child processes, whichever of its threads started them."""
        found: set[int] = set()
        for path in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                found.update(int(p) for p in path.read_text().split())
        return found

    def workers(self) -> set[int]:
        """Ids of the server's job worker processes (multiprocessing's helper process left out)."""
        found = set()
        for pid in self.children():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(pid)
        return found


def start_app(args: list[str], work: Path, env: dict[str, str] | None = None) -> AppServer:
    """Start ``insetgan app ARGS --port FREE --device cpu`` (log in ``work/server.log``); wait until it answers."""
    port = free_port()
    log = work / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "insetgan", "app", "--port", str(port), "--device", "cpu",
                                 *args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return AppServer(proc, url, log)
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the app did not start: {log.read_text()[-2000:]}")
        time.sleep(0.25)
