"""Build and load the C++/CUDA op plugins lazily, on first use (never at import).

Each plugin is compiled with ``torch.utils.cpp_extension.load`` (ninja) into a cache folder
named by a hash of its sources, the build flags, the torch version and the device kind, so a
changed source or a different torch gets a fresh build and an unchanged one is reused. The
build runs in a private temporary folder that is renamed into place when complete, under a
file lock, so two processes building at once neither collide nor see half a build. Build
output goes to ``logging`` (logger ``torch_utils.custom_ops``).

The cache root is ``$INSETGAN_CACHE/ops``, else ``$XDG_CACHE_HOME/insetgan/ops``, else
``~/.cache/insetgan/ops``.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.machinery
import importlib.util
import io
import logging
import os
import platform
import shutil
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

log = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "ops" / "csrc"
CPU_FLAGS = ("-O3", "-fopenmp", "-march=native")


@dataclass(frozen=True)
class PluginSpec:
    """What to compile: a name, source files (relative to ``csrc``) and compiler flags."""

    name: str
    sources: tuple[str, ...]
    cflags: tuple[str, ...] = CPU_FLAGS
    cuda_cflags: tuple[str, ...] = ()
    device: str = "cpu"
    source_dir: Path = CSRC


PLUGINS = {
    "cpu": PluginSpec("insetgan_ops_cpu", ("ops_cpu.cpp",)),
    "cuda": PluginSpec(
        "insetgan_ops_cuda",
        ("ops_cuda.cpp", "ops_cuda_kernels.cu", "filtered_lrelu_cuda.cu", "ops_cuda.h", "ops_cuda_common.cuh"),
        cflags=CPU_FLAGS,
        cuda_cflags=("-O3",),
        device="cuda",
    ),
}


def cache_root() -> Path:
    """The folder that holds built plugins."""
    if os.environ.get("INSETGAN_CACHE"):
        return Path(os.environ["INSETGAN_CACHE"]) / "ops"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "insetgan" / "ops"


def _cpu_signature() -> str:
    """The CPU model and feature flags (the CPU build uses -march=native)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))][:2]
    return platform.machine() + "|" + "|".join(keep)


def plugin_hash(spec: PluginSpec) -> str:
    """Hash of the sources, flags, torch version and device kind that identifies a build."""
    h = hashlib.sha256()
    for src in spec.sources:
        h.update(src.encode())
        h.update((spec.source_dir / src).read_bytes())
    extra = [spec.name, *spec.cflags, *spec.cuda_cflags, torch.__version__, spec.device,
             sysconfig.get_config_var("EXT_SUFFIX") or ""]
    if spec.device == "cpu":
        extra += [_cpu_signature()]
    if spec.device == "cuda":
        extra += [str(torch.version.cuda)]
        if torch.cuda.is_available():
            extra += [torch.cuda.get_device_name(0), str(torch.cuda.get_device_capability(0))]
    h.update("\0".join(extra).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _file_lock(path: Path):
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


def build_plugin(spec: PluginSpec) -> ModuleType:
    """Compile ``spec`` if no cached build exists, then import it; raises ``RuntimeError`` on failure."""
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device is available")
    import torch.utils.cpp_extension as cpp_ext  # imported lazily: it is slow and only needed here

    digest = plugin_hash(spec)
    module_name = f"{spec.name}_{digest}"
    root = cache_root()
    final = root / module_name
    so_path = final / f"{module_name}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"
    if not so_path.exists():
        so_path = final / f"{module_name}.so"
    with _file_lock(root / f"{module_name}.lock"):
        if not final.exists():
            tmp = Path(tempfile.mkdtemp(prefix=f".{module_name}.", dir=root))
            log.info("building %s (once; about a minute) in %s", module_name, final)
            t0 = time.perf_counter()
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    cpp_ext.load(
                        name=module_name,
                        sources=[str(spec.source_dir / s) for s in spec.sources if not s.endswith((".h", ".cuh"))],
                        extra_cflags=list(spec.cflags),
                        extra_cuda_cflags=list(spec.cuda_cflags),
                        extra_ldflags=["-fopenmp"] if "-fopenmp" in spec.cflags else [],
                        build_directory=str(tmp),
                        verbose=False,
                        is_python_module=True,
                    )
            except Exception as exc:
                log.debug("build output of %s:\n%s", module_name, out.getvalue())
                shutil.rmtree(tmp, ignore_errors=True)
                lines = [line for line in str(exc).splitlines() if "error" in line.lower()]
                detail = lines[0].strip() if lines else str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
                raise RuntimeError(f"building {spec.name} failed: {detail}") from exc
            log.debug("build output of %s:\n%s", module_name, out.getvalue())
            os.replace(tmp, final)
            log.info("built %s in %.1f s", module_name, time.perf_counter() - t0)
    candidates = sorted(final.glob(f"{module_name}*.so"))
    if not candidates:
        raise RuntimeError(f"cached build {final} has no {module_name}*.so; delete the folder to rebuild")
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
