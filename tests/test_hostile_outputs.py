"""Outputs and interruptions: whole output sets, clean exits on SIGTERM, kernel builds, the kernels' self-check."""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from insetgan import outputs
from insetgan.errors import InsetganError
from insetgan.torch_utils import custom_ops
from insetgan.torch_utils.ops import dispatch, selfcheck
from tests.cli_run import REPO, assert_one_line_error, run

GENERATE = ["generate", "--network", "default-face", "--seeds", "0-3", "--raw"]


def leftovers(root: Path) -> list[str]:
    """Temporary files and staging folders anywhere under ``root``."""
    return sorted(str(p) for p in root.rglob("*") if ".tmp" in p.name)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative name."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_full_disk_during_generate_leaves_no_set(tmp_path, monkeypatch):
    """ENOSPC on the third file: no folder (nor the parents made for it), no temporary file; an earlier set stays."""
    real = outputs.write_bytes
    calls = []

    def full_disk(path: Path, data: bytes) -> None:
        calls.append(path.name)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(outputs, "write_bytes", full_disk)
    new = tmp_path / "a" / "b" / "gen"
    assert_one_line_error(run(*GENERATE, "--outdir", new), "No space left on device")
    assert len(calls) == 3 and list(tmp_path.iterdir()) == []

    monkeypatch.setattr(outputs, "write_bytes", real)
    old = tmp_path / "old"
    assert run("generate", "--network", "default-face", "--seeds", "7", "--outdir", old).returncode == 0
    (old / "notes.txt").write_text("the user's own file")
    before = snapshot(old)
    calls.clear()
    monkeypatch.setattr(outputs, "write_bytes", full_disk)
    assert_one_line_error(run(*GENERATE, "--outdir", old), "No space left on device")
    assert snapshot(old) == before and leftovers(tmp_path) == []


def test_a_set_in_an_existing_folder_keeps_other_files_and_ends_with_its_report(tmp_path):
    out = tmp_path / "out"
    (out / "cache").mkdir(parents=True)
    (out / "cache" / "kept.npz").write_bytes(b"cache")
    (out / "report.json").write_text("{}")
    outputs.write_set(out, {"report.json": b'{"new": 1}', "a.png": b"a", "cache/new.npz": b"n"})
    assert snapshot(out) == {"a.png": b"a", "cache/kept.npz": b"cache", "cache/new.npz": b"n",
                             "report.json": b'{"new": 1}'}
    assert leftovers(tmp_path) == []
    for bad in ("../x", "/etc/x", ".hidden", ""):
        with pytest.raises(InsetganError, match="invalid output file name"):
            outputs.write_set(out, {bad: b""})
    (tmp_path / "file").write_text("")
    with pytest.raises(InsetganError, match="not a directory"):
        outputs.write_set(tmp_path / "file", {"a": b""})


def test_interrupts_during_a_commit_wait_for_its_end():
    """SIGTERM inside a deferred block is raised (as Terminated, exit status 143) only when the block ends."""
    reached_end, before = False, signal.getsignal(signal.SIGTERM)
    with pytest.raises(outputs.Terminated) as info:
        with outputs.interrupts_as_exceptions():
            with outputs.interrupts_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                reached_end = True
    assert reached_end and outputs.exit_status(info.value) == 143 and outputs.exit_status(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are restored


# A CLI run in a real process that signals itself while its output set is being written.
SELF_SIGNAL = textwrap.dedent("""
    import os, signal, sys
    from insetgan import outputs
    real = outputs.write_bytes
    def write_then_signal(path, data):
        real(path, data)
        if len(os.listdir(path.parent)) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    outputs.write_bytes = write_then_signal
    from insetgan.cli import main
    main(sys.argv[1:])
""")


def test_sigterm_while_writing_a_set_leaves_nothing(tmp_path):
    out = tmp_path / "gen"
    proc = subprocess.run([sys.executable, "-c", SELF_SIGNAL, *GENERATE, "--outdir", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 143, proc.stderr
    assert "Terminated." in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_compose_leaves_no_set_and_no_temporary_file(tmp_path):
    out = tmp_path / "comp"
    cmd = [sys.executable, "-m", "insetgan", "compose", "--steps", "400", "--progress", "lines", "--outdir", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # the optimisation has started once it reports progress
            if "/400 step" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert not out.exists() and leftovers(tmp_path) == []


def test_refused_resume_leaves_no_run_folder(tmp_path):
    data = tmp_path / "ds"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (16, 8, 3), dtype=np.uint8)).save(data / f"{i:05d}.png")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a training state")
    out = tmp_path / "runs" / "new"
    r = run("train", "--data", data, "--outdir", out, "--kimg", "0.004", "--resume", junk, "--z-dim", "32",
            "--map-layers", "2", "--channel-base", "256", "--channel-max", "32", "--device", "cpu")
    assert_one_line_error(r, "cannot read training state")
    assert not (tmp_path / "runs").exists()


def test_prepare_writes_a_whole_dataset_or_none(tmp_path, monkeypatch):
    """A prepared dataset fails as a whole; a new one replaces the numbered images of the last, not other files."""
    import shutil

    from insetgan import io as iio
    from tests.conftest import SHARED

    ccp = SHARED / "data" / "ccp"
    if not (ccp / "labels").is_dir():
        pytest.skip(f"{ccp} not found (set INSETGAN_SHARED to the shared folder)")
    photos = tmp_path / "photos"
    photos.mkdir()
    for stem in ("0001", "0002"):
        shutil.copy(ccp / "photos" / f"{stem}.jpg", photos)
    args = ["prepare", "shoes", photos, "--labels", ccp / "labels", "--size", "16", "--progress", "off"]
    real, calls = iio.atomic_write_bytes, []

    def full_disk(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(iio, "atomic_write_bytes", full_disk)
    assert_one_line_error(run(*args, "--out", tmp_path / "new" / "shoes"), "No space left on device")
    assert not (tmp_path / "new").exists() and len(calls) == 3
    monkeypatch.setattr(iio, "atomic_write_bytes", real)
    out = tmp_path / "shoes"
    out.mkdir()
    (out / "00099.png").write_bytes(b"an image of an earlier, larger run")
    (out / "notes.txt").write_text("the user's own file")
    assert run(*args, "--out", out).returncode == 0
    written = json.loads((out / "dataset.json").read_text())["counts"]["written"]
    assert sorted(p.name for p in out.iterdir()) == \
        sorted([f"{i:05d}.png" for i in range(written)] + ["dataset.json", "notes.txt"])
    assert_one_line_error(run(*args, "--out", photos), "is a source folder")


# Compiled kernels: the build cache key, builds that die with their parent, the self-check.
def test_cache_key_follows_the_cpu_identity(monkeypatch):
    cpuinfo = "processor\t: 0\nmodel name\t: Fake CPU 9000\nflags\t\t: sse2 avx2 fma\n\nprocessor\t: 1\n" \
              "model name\t: Other\n"
    assert custom_ops.cpuinfo_identity(cpuinfo) == ["model name=Fake CPU 9000", "flags=avx2 fma sse2"]
    target = "  -march=                     \t\tznver3\n  -mavx2    \t\t[enabled]\n  -mavx512f \t\t[disabled]\n"
    assert custom_ops.native_target(target) == ["-march=znver3", "-mavx2"]
    assert "model name=" in custom_ops.cpu_identity() or not Path("/proc/cpuinfo").is_file()

    cpu, cuda = custom_ops.PLUGINS["cpu"], custom_ops.PLUGINS["cuda"]
    portable = custom_ops.PluginSpec(cpu.name, cpu.sources, cflags=("-O3",))
    for spec in (cpu, cuda):
        assert custom_ops.plugin_hash(spec, "cpu A") != custom_ops.plugin_hash(spec, "cpu B")
    assert custom_ops.plugin_hash(portable, "cpu A") == custom_ops.plugin_hash(portable, "cpu B")
    real = custom_ops.plugin_hash(cpu)
    monkeypatch.setattr(custom_ops, "cpu_identity", lambda: "x86_64\nmodel name=Another CPU")
    assert custom_ops.plugin_hash(cpu) != real


# A plugin whose compile waits on a named pipe while "wait.h" exists (the file is not a source: the
# build's cache key stays the same once it is gone).
TINY = textwrap.dedent("""
    #if __has_include("wait.h")
    #include "wait.h"
    #endif
    #include <pybind11/pybind11.h>
    int answer() { return 42; }
    PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("answer", &answer); }
""")
BUILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from insetgan import outputs
    from insetgan.torch_utils import custom_ops
    spec = custom_ops.PluginSpec("insetgan_tiny", ("tiny.cpp",), source_dir=Path(sys.argv[1]))
    if sys.argv[2] == "handled":  # as under the command line: SIGTERM raises and the build is cleaned up
        with outputs.interrupts_as_exceptions():
            try:
                custom_ops.build_plugin(spec)
            except KeyboardInterrupt as exc:
                sys.exit(outputs.exit_status(exc))
    print(custom_ops.build_plugin(spec).answer())
""")


def _processes_naming(*texts: str) -> list[int]:
    """Ids of the processes whose command line contains every one of ``texts``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode() if proc.name.isdigit() else ""
            if cmdline and all(t in cmdline for t in texts):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _start_build(src: Path, mode: str, env: dict[str, str]) -> subprocess.Popen:
    """Start a tiny build and return once its compiler runs (the compiler driver names the object file)."""
    proc = subprocess.Popen([sys.executable, "-c", BUILD, str(src), mode], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _processes_naming(str(src / "tiny.cpp"), "-o tiny.o"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc


def _wait_until_gone(text: str, seconds: float = 5) -> list[int]:
    deadline = time.monotonic() + seconds
    while _processes_naming(text) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _processes_naming(text)


def _release(fifo: Path) -> None:
    """Let a compiler still waiting on ``fifo`` go on (it reads an empty header)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader left
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux-only")
def test_interrupted_builds_take_their_compilers_along_and_leave_no_half_build(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.cpp").write_text(TINY)
    os.mkfifo(src / "wait.h")
    cache = tmp_path / "cache" / "ops"
    env = {**os.environ, "INSETGAN_CACHE": str(tmp_path / "cache")}
    try:
        # SIGTERM under the command line's handlers: the build group is killed and its folder removed at once.
        proc = _start_build(src, "handled", env)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        assert _wait_until_gone(str(src / "tiny.cpp")) == []
        assert [p.name for p in cache.iterdir() if p.is_dir()] == []
        # The builder killed outright: the kernel signals the build process, which kills its group.
        proc = _start_build(src, "plain", env)
        proc.kill()
        proc.wait(timeout=60)
        assert _wait_until_gone(str(src / "tiny.cpp")) == []
        assert [p.name for p in cache.iterdir() if p.is_dir()][0].startswith(".insetgan_tiny_")  # left unfinished
    finally:
        _release(src / "wait.h")
    # The next build removes the unfinished folder and completes.
    (src / "wait.h").unlink()
    done = subprocess.run([sys.executable, "-c", BUILD, str(src), "plain"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "42", done.stderr
    built = [p for p in cache.iterdir() if p.is_dir()]
    assert len(built) == 1 and built[0].name.startswith("insetgan_tiny_")
    assert json.loads((built[0] / custom_ops.COMPLETE).read_text())["name"] == "insetgan_tiny"


@pytest.fixture
def fresh_self_check():
    """A self-check run for this test only (the process-wide verdicts are recomputed afterwards)."""
    selfcheck.kernel_check.cache_clear()
    yield
    selfcheck.kernel_check.cache_clear()


class _BrokenPlugin:
    """The real CPU plugin with bias_act returning wrong values and filtered_lrelu crashing."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def bias_act(self, *args):
        return self._real.bias_act(*args) + 0.5

    def filtered_lrelu(self, *args):
        raise RuntimeError("illegal instruction in the kernel")


def test_a_broken_kernel_is_routed_to_the_reference_and_reported(tmp_path, monkeypatch, caplog, fresh_self_check):
    monkeypatch.delenv("INSETGAN_OPS", raising=False)
    if not custom_ops.plugin_status("cpu")[0]:
        pytest.skip("the compiled CPU kernels do not build here")
    broken = _BrokenPlugin(custom_ops.get_plugin("cpu"))
    monkeypatch.setattr(dispatch, "plugin", lambda kind: broken)
    x = torch.zeros(1, 2, 4, 4)
    with caplog.at_level(logging.WARNING):
        assert [dispatch.resolve("auto", x, op) for op in ("upfirdn2d", "bias_act", "filtered_lrelu")] == \
            ["cpp", "ref", "ref"]
        assert dispatch.resolve("auto", x, "bias_act") == "ref"  # checked once per process
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "bias_act failed its self-check (float32: error" in warnings[0]
    assert "filtered_lrelu failed its self-check (float32: RuntimeError: illegal instruction" in warnings[1]

    doctor = run("doctor", "--json")
    cpu = json.loads(doctor.stdout)["devices"]["cpu"]
    assert cpu["ops"] == {"upfirdn2d": "cpp", "bias_act": "ref", "filtered_lrelu": "ref"}
    assert cpu["self_check"]["upfirdn2d"].startswith("passed")
    assert cpu["self_check"]["bias_act"].startswith("failed")
    assert "self-check bias_act: failed" in run("doctor").stdout

    out = tmp_path / "gen"
    assert run("generate", "--network", "default-face", "--seeds", "0", "--device", "cpu", "--outdir", out
               ).returncode == 0
    ops = json.loads((out / "report.json").read_text())["ops"]
    assert ops["ops"]["bias_act"] == "ref" and ops["self_check"]["filtered_lrelu"].startswith("failed")
