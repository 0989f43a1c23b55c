"""Build and load the C++/CUDA op plugins lazily, on first use (never at import).

Each plugin is compiled with ``torch.utils.cpp_extension.load`` (ninja) into a cache folder
named by a hash of its sources, the build flags, the torch version, the device kind and, for
builds with ``-march=native``, the CPU's identity (its model and the instruction sets the
compiler targets on it), so a changed source, a different torch or another CPU gets a fresh
build and an unchanged one is reused. A cache shared between machines therefore never hands
one CPU a build with another's instructions.

The build runs in a child process of its own process group, in a private temporary folder
that gets a completion record (``build.json``) and is then renamed into place, under a file
lock: two processes building at once neither collide nor see half a build, and a folder
without its record is rebuilt. When this process stops waiting (an exception, Ctrl-C,
SIGTERM turned into an exception by the command line) the build is stopped (SIGTERM to its
group: ninja stops the compilers it started; SIGKILL for what is left after a grace period)
and the temporary folder removed; when this process dies outright, the kernel tells the child
(``PR_SET_PDEATHSIG`` on Linux), which stops its build the same way, and the next build
removes the folder it left. Build output goes to ``logging`` (logger ``torch_utils.custom_ops``).

The cache root is ``$INSETGAN_CACHE/ops``, else ``$XDG_CACHE_HOME/insetgan/ops``, else
``~/.cache/insetgan/ops``.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import torch

log = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "ops" / "csrc"
CPU_FLAGS = ("-O3", "-fopenmp", "-march=native")
COMPLETE = "build.json"  # written into a build folder last, before it is renamed into place
CPUINFO_KEYS = ("model name", "flags", "Features", "CPU implementer", "CPU architecture", "CPU variant", "CPU part")
# The child process that compiles: it takes the parent's import path, then runs build_child.
CHILD = ("import json, sys; args = json.loads(sys.argv[1]); sys.path[:] = args['path']; "
         "from insetgan.torch_utils.custom_ops import build_child; build_child(args)")


@dataclass(frozen=True)
class PluginSpec:
    """What to compile: a name, source files (relative to ``csrc``) and compiler flags.

    ``sources`` lists headers too: they count in the build's cache key but are not compiled.
    """

    name: str
    sources: tuple[str, ...]
    cflags: tuple[str, ...] = CPU_FLAGS
    cuda_cflags: tuple[str, ...] = ()
    device: str = "cpu"
    source_dir: Path = CSRC


# The kernel sources of each op, per device: one file per op (a plugin compiles them all).
OP_SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "cpu": {"upfirdn2d": ("upfirdn2d_cpu.cpp",), "bias_act": ("bias_act_cpu.cpp",),
            "filtered_lrelu": ("filtered_lrelu_cpu.cpp",)},
    "cuda": {"upfirdn2d": ("upfirdn2d_cuda.cu",), "bias_act": ("bias_act_cuda.cu",),
             "filtered_lrelu": ("filtered_lrelu_cuda.cu",)},
}
# The Python binding and the headers each plugin shares between its ops' files.
PLUGIN_COMMON = {
    "cpu": ("ops_cpu.cpp", "ops_cpu.h"),
    "cuda": ("ops_cuda.cpp", "ops_cuda.h", "ops_cuda_common.cuh"),
}


def plugin_sources(device: str) -> tuple[str, ...]:
    """Every file of ``device``'s plugin (binding, shared headers, each op's kernels), relative to ``csrc``."""
    return PLUGIN_COMMON[device] + tuple(f for files in OP_SOURCES[device].values() for f in files)


PLUGINS = {
    "cpu": PluginSpec("insetgan_ops_cpu", plugin_sources("cpu")),
    "cuda": PluginSpec("insetgan_ops_cuda", plugin_sources("cuda"), cflags=CPU_FLAGS, cuda_cflags=("-O3",),
                       device="cuda"),
}


def cache_root() -> Path:
    """The folder that holds built plugins."""
    if os.environ.get("INSETGAN_CACHE"):
        return Path(os.environ["INSETGAN_CACHE"]) / "ops"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "insetgan" / "ops"


def cpuinfo_identity(text: str) -> list[str]:
    """The first ``model name`` / ``flags`` (x86) or ``Features`` / ``CPU part`` (Arm) lines of /proc/cpuinfo."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in CPUINFO_KEYS and key not in found:
            found[key] = " ".join(sorted(value.split())) if key in ("flags", "Features") else value.strip()
    return [f"{k}={found[k]}" for k in CPUINFO_KEYS if k in found]


def native_target(text: str) -> list[str]:
    """What ``-march=native`` means to the compiler, from ``CC -march=native -Q --help=target``.

    The ``-march=`` / ``-mtune=`` values and every enabled ``-m`` instruction-set switch.
    """
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("-march=", "-mtune=", "-mcpu="):
            out.append(parts[0] + parts[1])
        elif len(parts) == 2 and parts[0].startswith("-m") and parts[1] == "[enabled]":
            out.append(parts[0])
    return sorted(out)


def _compiler_target(compiler: str) -> str:
    """The compiler's ``-march=native -Q --help=target`` output ('' when it cannot tell)."""
    try:
        proc = subprocess.run([compiler, "-march=native", "-Q", "--help=target"], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


@functools.lru_cache(maxsize=None)
def cpu_identity() -> str:
    """This machine's CPU as a native build sees it: architecture, cpuinfo model and flags, compiler target."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    compiler = os.environ.get("CXX", "c++")
    return "\n".join([platform.machine(), *cpuinfo_identity(cpuinfo), *native_target(_compiler_target(compiler))])


def plugin_hash(spec: PluginSpec, cpu: str | None = None) -> str:
    """Hash of the sources, flags, torch version, device kind and CPU identity that identifies a build.

    ``cpu`` overrides :func:`cpu_identity` (it counts only for builds with ``-march=native``).
    """
    h = hashlib.sha256()
    for src in spec.sources:
        h.update(src.encode())
        h.update((spec.source_dir / src).read_bytes())
    extra = [spec.name, *spec.cflags, *spec.cuda_cflags, torch.__version__, spec.device,
             sysconfig.get_config_var("EXT_SUFFIX") or ""]
    if "-march=native" in (*spec.cflags, *spec.cuda_cflags):
        extra += [cpu if cpu is not None else cpu_identity()]
    if spec.device == "cuda":
        extra += [str(torch.version.cuda)]
        if torch.cuda.is_available():
            extra += [torch.cuda.get_device_name(0), str(torch.cuda.get_device_capability(0))]
    h.update("\0".join(extra).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _import_extension(name: str, so_path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(name, str(so_path))
    spec = importlib.util.spec_from_file_location(name, so_path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when the process that started it dies (elsewhere: nothing)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def _stop_build(*_: Any) -> None:
    """Signal handler of the build process: stop ninja and its compilers, wait for them, exit.

    ninja starts each compiler in a process group of its own and stops them all when it gets
    SIGTERM, so the signal goes to this process's group (ninja) and the handler waits until
    ninja has exited.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    if os.getpgrp() == os.getpid():  # only a group leader owns its group; never signal a caller's group
        os.killpg(os.getpgrp(), signal.SIGTERM)
    with contextlib.suppress(ChildProcessError):
        while True:
            os.waitpid(-1, 0)
    os._exit(128 + signal.SIGTERM)


def build_child(args: dict[str, Any]) -> None:
    """Body of the build process (started by :func:`_compile` in a group of its own): compile one plugin.

    It stops the build (:func:`_stop_build`) on SIGTERM or SIGINT and when its parent dies, so
    no ninja or compiler outlives the build it belongs to.
    """
    signal.signal(signal.SIGTERM, _stop_build)
    signal.signal(signal.SIGINT, _stop_build)
    _die_with_parent()
    if os.getppid() != args["parent"]:  # the parent died before the request above took effect
        _stop_build()
    import torch.utils.cpp_extension as cpp_ext  # slow to import; only the build process needs it

    cpp_ext.load(name=args["name"], sources=args["sources"], extra_cflags=args["cflags"],
                 extra_cuda_cflags=args["cuda_cflags"], extra_ldflags=args["ldflags"],
                 build_directory=args["build_dir"], verbose=True, is_python_module=True)


def _stop_group(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """Stop a build process started with ``start_new_session`` and everything in its group.

    SIGTERM first (the build process has ninja stop its compilers), SIGKILL for what is left
    after ``grace_s`` seconds.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _compile(spec: PluginSpec, module_name: str, build_dir: Path) -> str:
    """Compile ``spec`` into ``build_dir`` in a child process group; its output, or ``RuntimeError``.

    The child and everything it started are stopped when this function is left by an exception.
    """
    args = {
        "path": sys.path, "parent": os.getpid(), "name": module_name, "build_dir": str(build_dir),
        "sources": [str(spec.source_dir / s) for s in spec.sources if not s.endswith((".h", ".cuh"))],
        "cflags": list(spec.cflags), "cuda_cflags": list(spec.cuda_cflags),
        "ldflags": ["-fopenmp"] if "-fopenmp" in spec.cflags else [],
    }
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)
    try:
        output, _ = proc.communicate()
    except BaseException:
        _stop_group(proc)
        raise
    if proc.returncode != 0:
        log.debug("build output of %s:\n%s", module_name, output)
        lines = [line.strip() for line in output.splitlines() if "error" in line.lower()]
        detail = lines[0] if lines else (output.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise RuntimeError(f"building {spec.name} failed: {detail}")
    return output


def _complete(folder: Path, module_name: str) -> bool:
    """True when ``folder`` holds a finished build: its completion record and the module's library."""
    return (folder / COMPLETE).is_file() and any(folder.glob(f"{module_name}*.so"))


def _remove_leftovers(root: Path, module_name: str) -> None:
    """Remove temporary build folders of ``module_name`` left by a builder that died (the lock is held)."""
    for stale in root.glob(f".{module_name}.*"):
        if stale.is_dir():
            log.info("removing the unfinished build %s", stale)
            shutil.rmtree(stale, ignore_errors=True)


def build_plugin(spec: PluginSpec) -> ModuleType:
    """Compile ``spec`` if no complete cached build exists, then import it; raises ``RuntimeError`` on failure."""
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device is available")
    digest = plugin_hash(spec)
    module_name = f"{spec.name}_{digest}"
    root = cache_root()
    final = root / module_name
    with _file_lock(root / f"{module_name}.lock"):
        _remove_leftovers(root, module_name)
        if final.exists() and not _complete(final, module_name):
            log.info("removing the incomplete build %s", final)
            shutil.rmtree(final)
        if not final.exists():
            tmp = Path(tempfile.mkdtemp(prefix=f".{module_name}.", dir=root))
            log.info("building %s (once; about a minute) in %s", module_name, final)
            t0 = time.perf_counter()
            try:
                output = _compile(spec, module_name, tmp)
                log.debug("build output of %s:\n%s", module_name, output)
                record = {"name": spec.name, "hash": digest, "torch": torch.__version__, "device": spec.device,
                          "cpu": cpu_identity().splitlines()[:2], "seconds": round(time.perf_counter() - t0, 1)}
                (tmp / COMPLETE).write_text(json.dumps(record, indent=2) + "\n")
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            log.info("built %s in %.1f s", module_name, time.perf_counter() - t0)
    candidates = sorted(final.glob(f"{module_name}*.so"))
    return _import_extension(module_name, candidates[0])


@functools.lru_cache(maxsize=None)
def get_plugin(device: str) -> ModuleType:
    """The compiled plugin for ``device`` ('cpu' or 'cuda'), built at most once per process."""
    return build_plugin(PLUGINS[device])


@functools.lru_cache(maxsize=None)
def plugin_status(device: str) -> tuple[bool, str]:
    """``(available, reason)`` for the plugin of ``device``; the first failure is logged as a warning once."""
    try:
        get_plugin(device)
        return True, f"compiled {device} kernels loaded from {cache_root()}"
    except Exception as exc:  # noqa: BLE001 - any build problem means: use the reference ops
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if device == "cpu" or torch.cuda.is_available():
            log.warning("compiled %s ops unavailable (%s); using the reference implementation", device, reason)
        return False, reason
