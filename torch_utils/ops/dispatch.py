"""Choose between the reference ops and the compiled kernels.

``impl='auto'`` uses the compiled kernel for the tensor's device when it builds (a warning is
logged once otherwise), the dtype is supported and the op passed its first-use self-check
against the reference (:mod:`insetgan.torch_utils.ops.selfcheck`; a failure is logged once and
the op runs its reference for the rest of the process); ``'cpp'`` / ``'cuda'`` insist on it and
raise when it cannot be had; ``'ref'`` is the plain-PyTorch reference. An op without a compiled
kernel of its own (``OP_KERNELS`` lists the ops that have one) would resolve ``'auto'`` to the reference and
refuse ``'cpp'`` / ``'cuda'``. The environment
variable ``INSETGAN_OPS=ref`` forces the reference everywhere. ``INSETGAN_OPS_POISON=1`` makes
the kernels fill their outputs with NaN before computing (tests use it to catch unwritten
elements).
"""
from __future__ import annotations

import os
from typing import Any

import torch

from insetgan.torch_utils import custom_ops
from insetgan.torch_utils.cpu_alloc import tune_cpu_allocator
from insetgan.torch_utils.ops import selfcheck

IMPLS = ("auto", "ref", "cpp", "cuda")
# The compiled kinds each op has; an op missing here has kernels of every kind. A kernel added
# later only needs its kind listed here and its call in the op's module.
OP_KERNELS: dict[str, tuple[str, ...]] = {
    "upfirdn2d": ("cpp", "cuda"),
    "bias_act": ("cpp", "cuda"),
    "filtered_lrelu": ("cpp", "cuda"),
}
KERNEL_DTYPES = {
    "cpp": (torch.float32, torch.float64),
    "cuda": (torch.float16, torch.float32, torch.float64),
}


def forced_reference() -> bool:
    """True when ``INSETGAN_OPS=ref`` is set."""
    return os.environ.get("INSETGAN_OPS", "").strip().lower() == "ref"


def poison() -> bool:
    """True when kernels should poison their outputs first (``INSETGAN_OPS_POISON=1``)."""
    return os.environ.get("INSETGAN_OPS_POISON", "") == "1"


def resolve(impl: str, x: torch.Tensor, op: str | None = None) -> str:
    """Return 'ref', 'cpp' or 'cuda' for running an op on ``x`` with the requested ``impl``.

    ``op`` names the op (a key of ``OP_KERNELS``) so that an op without a kernel of the device's
    kind runs its reference under 'auto' and refuses an explicit 'cpp' / 'cuda'.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if impl == "ref" or forced_reference():
        return "ref"
    kind = "cuda" if x.device.type == "cuda" else "cpp"
    has_kernel = kind in OP_KERNELS.get(op, ("cpp", "cuda")) if op is not None else True
    if impl == "auto":
        if not has_kernel or x.device.type not in ("cpu", "cuda") or x.dtype not in KERNEL_DTYPES[kind]:
            return "ref"
        device = "cuda" if kind == "cuda" else "cpu"
        available, _ = custom_ops.plugin_status(device)
        return kind if available and (op is None or selfcheck.kernel_check(device).ok(op)) else "ref"
    if impl != kind:
        raise ValueError(f"impl={impl!r} cannot run on a {x.device.type} tensor")
    if not has_kernel:
        raise ValueError(f"impl={impl!r}: {op} has no compiled {kind} kernel yet (use 'auto' or 'ref')")
    if x.dtype not in KERNEL_DTYPES[kind]:
        raise ValueError(f"impl={impl!r} does not support {x.dtype}")
    custom_ops.get_plugin("cuda" if kind == "cuda" else "cpu")  # raises RuntimeError when it cannot build
    return kind


def plugin(kind: str):
    """The loaded plugin module for kind 'cpp' or 'cuda'."""
    return custom_ops.get_plugin("cuda" if kind == "cuda" else "cpu")


def device_ops(device: str | torch.device) -> dict[str, Any]:
    """What ``impl='auto'`` runs on ``device`` ('cpu', 'cuda' or a torch device) and why (builds the plugin if needed).

    ``active``: the compiled kind or 'ref'; ``reason``; ``ops``: op -> implementation; with a
    loaded plugin also ``self_check``: op -> the verdict of its first-use check and ``sources``:
    op -> its kernel's source files (in ``torch_utils/ops/csrc``).
    """
    dev = "cuda" if torch.device(device).type == "cuda" else "cpu"
    kind = "cuda" if dev == "cuda" else "cpp"
    if forced_reference():
        return {"active": "ref", "reason": "INSETGAN_OPS=ref forces the reference ops",
                "ops": dict.fromkeys(OP_KERNELS, "ref")}
    ok, reason = custom_ops.plugin_status(dev)
    info: dict[str, Any] = {"active": kind if ok else "ref", "reason": reason}
    check = selfcheck.kernel_check(dev) if ok else None
    info["ops"] = {op: kind if ok and kind in kinds and check.ok(op) else "ref" for op, kinds in OP_KERNELS.items()}
    if check is not None:
        info["self_check"] = check.to_dict()
        info["sources"] = {op: list(custom_ops.OP_SOURCES[dev].get(op, ())) for op in OP_KERNELS}
    return info


def ops_report() -> dict[str, Any]:
    """Which op implementations are active on this machine and why (builds the kernels if needed)."""
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "INSETGAN_OPS": os.environ.get("INSETGAN_OPS", ""),
        "cache": str(custom_ops.cache_root()),
        "allocator_tuned": tune_cpu_allocator(),
        "devices": {dev: device_ops(dev) for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])},
    }
    report["reference_only_ops"] = sorted(op for op, kinds in OP_KERNELS.items() if not kinds)
    if not torch.cuda.is_available():
        report["devices"]["cuda"] = {"active": "none", "reason": "no CUDA device (torch.cuda.is_available() is False)"}
    return report
