"""First-use self-check of the compiled kernels against the reference ops.

The first time ``impl='auto'`` would run a compiled kernel of a device kind in a process, each
op (``upfirdn2d``, ``bias_act``, ``filtered_lrelu``) runs a few small random cases through the
kernel and through the plain-PyTorch reference, in every dtype the dispatch sends to that kernel
(:data:`dispatch.KERNEL_DTYPES`), forward and gradients. An op whose kernel disagrees or raises
is logged once as a warning and runs its reference for the rest of the process; explicit
``impl='cpp'`` / ``'cuda'`` still reach the kernel (tests and benchmarks ask for it by name).
``insetgan doctor`` and every job report show the outcome (:func:`dispatch.device_ops`).

The outcome is kept by :func:`kernel_check`'s ``functools`` cache, keyed by the device kind:
the check is a pure function of the plugin loaded in this process (itself cached by
:func:`insetgan.torch_utils.custom_ops.get_plugin`), it is wanted at the deepest point of
every op call where no owner object could be handed down, and ``kernel_check.cache_clear()``
starts over (tests). A crash that kills the process (a segfault) cannot be caught here.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

log = logging.getLogger(__name__)

SEED = 20240229
# Largest accepted error, relative to the reference's largest magnitude (at least 1), per dtype.
TOLERANCE = {torch.float16: 2e-2, torch.bfloat16: 5e-2, torch.float32: 1e-4, torch.float64: 1e-9}

Case = Callable[[str], Sequence[torch.Tensor]]  # impl -> (output, gradients...)


@dataclass(frozen=True)
class OpCheck:
    """One op's verdict: whether its kernel agrees with the reference, and the evidence."""

    op: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class KernelCheck:
    """The verdicts of every op on one device kind's plugin (``'cpu'`` or ``'cuda'``)."""

    device: str
    checks: tuple[OpCheck, ...]

    def ok(self, op: str) -> bool:
        """True unless ``op`` was checked and failed."""
        return all(c.ok for c in self.checks if c.op == op)

    def to_dict(self) -> dict[str, str]:
        """``op -> 'passed (...)' | 'failed (...)'`` for reports."""
        return {c.op: f"{'passed' if c.ok else 'failed'} ({c.detail})" for c in self.checks}


def _random(shape: Sequence[int], gen: torch.Generator) -> torch.Tensor:
    return torch.randn(list(shape), generator=gen, dtype=torch.float64)


def away_from(v: torch.Tensor, points: Sequence[float], margin: float) -> torch.Tensor:
    """``v`` with every value closer than ``margin`` to one of ``points`` moved out to that distance.

    Kinks of an activation (0, the clamp bounds) are where a kernel and the reference may
    legitimately pick different one-sided derivatives; samples are kept away from them.
    """
    for p in points:
        d = v - p
        v = torch.where(d.abs() < margin, p + torch.where(d < 0, -margin, margin), v)
    return v


def _grads(y: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``y`` and the gradients of ``inputs`` for an upstream gradient drawn from a fixed seed for ``y``'s shape."""
    dy = _random(y.shape, torch.Generator().manual_seed(SEED + 1)).to(device=y.device, dtype=y.dtype)
    return [y, *torch.autograd.grad(y, list(inputs), dy)]


def op_cases(device: str, dtype: torch.dtype) -> dict[str, list[Case]]:
    """The small cases of each op: functions of ``impl`` returning the output and the input gradients.

    Inputs are drawn from a fixed seed on the CPU (the global random state is untouched) and
    rounded to ``dtype``; the reference of a float16 case runs in float32 on the same values.
    """
    # The ops import dispatch, which imports this module: they are imported when the cases are built.
    from insetgan.torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d

    gen = torch.Generator().manual_seed(SEED)
    ref_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    f_up = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    f_sep = upfirdn2d.setup_filter(torch.rand(12, generator=gen).tolist(), separable=True, device=device)
    b_act = _random([5], gen)
    gain, clamp = bias_act.ACTIVATIONS["lrelu"].def_gain, 1.5
    pre = away_from(_random([2, 5, 6, 7], gen), (0.0, clamp / gain, -clamp / (0.2 * gain)), 0.05)
    x_act = pre - b_act.view(1, -1, 1, 1)  # pre-activations x + b clear of the kinks
    x_ufd, x_flr, b_flr = _random([2, 3, 9, 8], gen), _random([2, 3, 11, 10], gen), _random([3], gen)

    def leaf(t: torch.Tensor, impl: str) -> torch.Tensor:
        """``t`` rounded to the case's dtype, on the device, in the dtype the implementation runs."""
        rounded = t.to(device=device, dtype=dtype)
        return rounded.to(ref_dtype if impl == "ref" else dtype).requires_grad_(True)

    def up(impl: str) -> list[torch.Tensor]:
        x = leaf(x_ufd, impl)
        return _grads(upfirdn2d.upsample2d(x, f_up, impl=impl), [x])

    def down(impl: str) -> list[torch.Tensor]:
        x = leaf(x_ufd.contiguous(memory_format=torch.channels_last), impl)
        return _grads(upfirdn2d.downsample2d(x, f_up, impl=impl), [x])

    def act(impl: str) -> list[torch.Tensor]:
        x, b = leaf(x_act, impl), leaf(b_act, impl)
        return _grads(bias_act.bias_act(x, b, act="lrelu", clamp=clamp, impl=impl), [x, b])

    def flr(impl: str) -> list[torch.Tensor]:
        x, b = leaf(x_flr, impl), leaf(b_flr, impl)
        y = filtered_lrelu.filtered_lrelu(x, f_sep, f_sep, b, up=2, down=2, padding=[11, 10, 11, 10], clamp=2.0,
                                          impl=impl)
        return _grads(y, [x, b])

    return {"upfirdn2d": [up, down], "bias_act": [act], "filtered_lrelu": [flr]}


def compare(outs: Sequence[torch.Tensor], refs: Sequence[torch.Tensor], dtype: torch.dtype) -> tuple[bool, float]:
    """``(within tolerance, worst relative error)`` of a case's kernel results against its reference."""
    worst = 0.0
    for out, ref in zip(outs, refs, strict=True):
        if out.shape != ref.shape:
            return False, float("inf")
        diff = (out.detach().double() - ref.detach().double()).abs().max().item()
        scale = max(1.0, ref.detach().double().abs().max().item())
        worst = max(worst, diff / scale if diff == diff else float("inf"))  # NaN counts as a failure
    return worst <= TOLERANCE[dtype], worst


def check_op(op: str, device: str, dtypes: Sequence[torch.dtype], kind: str) -> OpCheck:
    """Run ``op``'s cases through kernel ``kind`` and the reference in each dtype; the verdict."""
    worst: dict[str, float] = {}
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        try:
            for case in op_cases(device, dtype)[op]:
                ok, err = compare(case(kind), case("ref"), dtype)
                worst[name] = max(worst.get(name, 0.0), err)
                if not ok:
                    return OpCheck(op, False, f"{name}: error {err:.3g} > {TOLERANCE[dtype]:g}")
        except Exception as exc:  # noqa: BLE001 - a kernel that raises fails its check
            message = str(exc).splitlines()[0] if str(exc) else ""
            return OpCheck(op, False, f"{name}: {type(exc).__name__}: {message}")
    return OpCheck(op, True, ", ".join(f"{k} error {v:.2g}" for k, v in worst.items()))


@functools.lru_cache(maxsize=None)
def kernel_check(device: str) -> KernelCheck:
    """Check every op of the compiled plugin for ``device`` ('cpu' or 'cuda') once per process.

    Each failing op is logged as one warning.
    """
    from insetgan.torch_utils.ops import dispatch  # dispatch imports this module (a cycle at import time)

    kind = "cuda" if device == "cuda" else "cpp"
    dtypes = dispatch.KERNEL_DTYPES[kind]
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device, enabled=False):
        checks = tuple(check_op(op, device, dtypes, kind) for op, kinds in dispatch.OP_KERNELS.items()
                       if kind in kinds)
    for c in checks:
        if not c.ok:
            log.warning("the compiled %s kernel of %s failed its self-check (%s); using the reference "
                        "implementation of %s in this process", device, c.op, c.detail, c.op)
    return KernelCheck(device, checks)
