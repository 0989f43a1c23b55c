"""Filtered leaky ReLU (the StyleGAN3 op): bias, upsample, leaky ReLU, clamp, downsample.

The alias-free nonlinearity of Karras et al. 2021: the activation is applied at a temporarily
higher sampling rate, between an anti-imaging upsampling filter ``fu`` and an anti-aliasing
downsampling filter ``fd``. Filters are 1-D (separable, applied along both axes) or 2-D (e.g.
the radially symmetric filters of StyleGAN3-R), as for :func:`upfirdn2d.upfirdn2d`.

Only the plain-PyTorch reference exists, a composition of our ``bias_act`` and ``upfirdn2d``
(which themselves use their compiled kernels under ``impl='auto'``). The op goes through
:mod:`insetgan.torch_utils.ops.dispatch` like the others (``OP_KERNELS['filtered_lrelu']``), so a
fused kernel can be added later without changing callers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from insetgan.errors import InsetganError
from insetgan.torch_utils.ops import bias_act, dispatch, upfirdn2d

OP_NAME = "filtered_lrelu"


@dataclass(frozen=True)
class FilteredLReluParams:
    """Normalised, validated arguments of one filtered_lrelu call."""

    up: int
    down: int
    padding: tuple[int, int, int, int]  # (px0, px1, py0, py1)
    gain: float
    slope: float
    clamp: float | None
    flip_filter: bool


def output_size(in_hw: tuple[int, int], fu: torch.Tensor | None, fd: torch.Tensor | None,
                p: FilteredLReluParams) -> tuple[int, int]:
    """``(H, W)`` of the output for an input of ``in_hw`` (may be < 1 for impossible settings)."""
    fu_w, fu_h = upfirdn2d.filter_size(fu)
    fd_w, fd_h = upfirdn2d.filter_size(fd)
    px0, px1, py0, py1 = p.padding
    out_h = (in_hw[0] * p.up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + (p.down - 1)) // p.down
    out_w = (in_hw[1] * p.up + px0 + px1 - (fu_w - 1) - (fd_w - 1) + (p.down - 1)) // p.down
    return out_h, out_w


def _factor(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InsetganError(f"filtered_lrelu: {name} must be an integer >= 1, got {value!r}")
    return value


def _number(name: str, value: object, minimum: float, strict: bool) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InsetganError(f"filtered_lrelu: {name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise InsetganError(f"filtered_lrelu: {name} must be a finite number {bound}, got {value!r}")
    return number


def _check_filter(name: str, f: object) -> None:
    if f is None:
        return
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2) or f.numel() == 0:
        shape = list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise InsetganError(f"filtered_lrelu: {name} must be None or a 1-D or 2-D tensor, got {shape}")
    if not f.dtype.is_floating_point:
        raise InsetganError(f"filtered_lrelu: {name} must be a floating-point tensor, got {f.dtype}")


def check_args(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None,
               up: int, down: int, padding: upfirdn2d.Padding, gain: float, slope: float, clamp: float | None,
               flip_filter: bool) -> FilteredLReluParams:
    """Validate the arguments of :func:`filtered_lrelu`; raise ``InsetganError`` on bad ones."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InsetganError(f"filtered_lrelu: x must be a floating-point [N, C, H, W] tensor, got {shape}")
    _check_filter("fu", fu)
    _check_filter("fd", fd)
    if b is not None and (not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[1]):
        shape = list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise InsetganError(f"filtered_lrelu: b must be a [{x.shape[1]}] tensor (one per channel), got {shape}")
    try:
        pad = upfirdn2d.parse_padding(padding)
    except (TypeError, ValueError) as exc:
        raise InsetganError(f"filtered_lrelu: bad padding {padding!r} ({exc})") from None
    params = FilteredLReluParams(
        up=_factor("up", up),
        down=_factor("down", down),
        padding=pad,
        gain=_number("gain", gain, 0.0, strict=True),
        slope=_number("slope", slope, 0.0, strict=False),
        clamp=None if clamp is None else _number("clamp", clamp, 0.0, strict=False),
        flip_filter=bool(flip_filter),
    )
    out_h, out_w = output_size((x.shape[2], x.shape[3]), fu, fd, params)
    if out_h < 1 or out_w < 1:
        raise InsetganError(
            f"filtered_lrelu: input {list(x.shape)} with padding {list(pad)}, up={up}, down={down} and these "
            "filters gives an empty output"
        )
    return params


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: upfirdn2d.Padding = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
    impl: str = "auto",
) -> torch.Tensor:
    """Bias, upsample, leaky ReLU, clamp and downsample ``x`` [N, C, H, W].

    In order: add ``b`` (one value per channel); upsample by ``up`` with the filter ``fu``
    (gain ``up**2``, so the signal level is kept) and ``padding`` (int, ``[px, py]`` or
    ``[px0, px1, py0, py1]``; negative values crop); ``leaky_relu(x, slope) * gain``; clamp to
    ``[-clamp, clamp]`` unless ``clamp`` is None; downsample by ``down`` after the filter ``fd``.
    ``fu``/``fd`` of None are the identity. The output is
    ``[N, C, (H*up + py0 + py1 - fu_h - fd_h + 1 + down) // down, (the same in x)]``.
    ``impl``: 'auto' or 'ref' (no compiled kernel exists yet; 'cpp'/'cuda' raise). Bad
    arguments raise :class:`insetgan.errors.InsetganError`.
    """
    p = check_args(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)
    try:
        kind = dispatch.resolve(impl, x, OP_NAME)
    except ValueError as exc:
        raise InsetganError(f"filtered_lrelu: {exc}") from None
    if kind == "ref":
        # Under impl='ref' the whole op is plain PyTorch; under 'auto' the inner ops pick their kernels.
        return _filtered_lrelu_ref(x, fu, fd, b, p, inner="ref" if impl == "ref" else "auto")
    raise AssertionError(f"no {kind} kernel is registered for {OP_NAME}")  # OP_KERNELS lists none


def _filtered_lrelu_ref(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None,
                        p: FilteredLReluParams, inner: str = "auto") -> torch.Tensor:
    """Reference: the op as a composition of ``bias_act`` and ``upfirdn2d``."""
    if b is not None:
        x = bias_act.bias_act(x, b.to(x.dtype), impl=inner)
    if fu is not None:
        fu = fu.to(x.dtype)
    if fd is not None:
        fd = fd.to(x.dtype)
    x = upfirdn2d.upfirdn2d(x, fu, up=p.up, padding=p.padding, gain=p.up**2, flip_filter=p.flip_filter, impl=inner)
    x = bias_act.bias_act(x, act="lrelu", alpha=p.slope, gain=p.gain, clamp=p.clamp, impl=inner)
    return upfirdn2d.upfirdn2d(x, fd, down=p.down, flip_filter=p.flip_filter, impl=inner)
