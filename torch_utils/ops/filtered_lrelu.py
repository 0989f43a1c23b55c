"""Filtered leaky ReLU (the StyleGAN3 op): bias, upsample, leaky ReLU, clamp, downsample.

The alias-free nonlinearity of Karras et al. 2021: the activation is applied at a temporarily
higher sampling rate, between an anti-imaging upsampling filter ``fu`` and an anti-aliasing
downsampling filter ``fd``. Filters are 1-D (separable, applied along both axes) or 2-D (e.g.
the radially symmetric filters of StyleGAN3-R), as for :func:`upfirdn2d.upfirdn2d`.

Two implementations, chosen by :mod:`insetgan.torch_utils.ops.dispatch` like the other ops:

- the reference, a composition of our ``bias_act`` and ``upfirdn2d`` (under ``impl='auto'`` those
  use their own kernels);
- a fused compiled kernel (C++ on CPU: float32/float64; CUDA: float16/float32/float64) that runs
  bias, up-FIR, leaky ReLU × gain, clamp and down-FIR in one pass per image plane. On CPU the
  upsampled map is never held whole: intermediate rows are made one at a time and only as many
  as the down filter is tall are kept. It saves 2 bits per upsampled value (positive, negative,
  clamped) for the backward pass, which runs the transposed passes through the same kernel.

Gradients of the compiled path: ``x`` and ``b`` (not the filters, which are fixed buffers in
StyleGAN3). The op is piecewise linear in ``x``, so every derivative order is a product with the
saved mask: the second-order product (``gradgradcheck``, R1-style penalties) runs through the
kernel as well, and derivatives of the mask itself are zero, as in the reference's autograd.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from insetgan.torch_utils.errors import OpArgumentError
from insetgan.torch_utils.ops import bias_act, dispatch, upfirdn2d

OP_NAME = "filtered_lrelu"
MAX_KERNEL_TAPS = 64  # per axis and filter; longer filters run the reference ('auto') or raise ('cpp'/'cuda')


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
        raise OpArgumentError(f"filtered_lrelu: {name} must be an integer >= 1, got {value!r}")
    return value


def _number(name: str, value: object, minimum: float, strict: bool) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OpArgumentError(f"filtered_lrelu: {name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise OpArgumentError(f"filtered_lrelu: {name} must be a finite number {bound}, got {value!r}")
    return number


def _check_filter(name: str, f: object) -> None:
    if f is None:
        return
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2) or f.numel() == 0:
        shape = list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise OpArgumentError(f"filtered_lrelu: {name} must be None or a 1-D or 2-D tensor, got {shape}")
    if not f.dtype.is_floating_point:
        raise OpArgumentError(f"filtered_lrelu: {name} must be a floating-point tensor, got {f.dtype}")


def check_args(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None,
               up: int, down: int, padding: upfirdn2d.Padding, gain: float, slope: float, clamp: float | None,
               flip_filter: bool) -> FilteredLReluParams:
    """Validate the arguments of :func:`filtered_lrelu`; raise ``OpArgumentError`` on bad ones."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise OpArgumentError(f"filtered_lrelu: x must be a floating-point [N, C, H, W] tensor, got {shape}")
    _check_filter("fu", fu)
    _check_filter("fd", fd)
    if b is not None and (not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[1]):
        shape = list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise OpArgumentError(f"filtered_lrelu: b must be a [{x.shape[1]}] tensor (one per channel), got {shape}")
    try:
        pad = upfirdn2d.parse_padding(padding)
    except (TypeError, ValueError) as exc:
        raise OpArgumentError(f"filtered_lrelu: bad padding {padding!r} ({exc})") from None
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
        raise OpArgumentError(
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
    ``impl``: 'auto' (the compiled kernel when it builds and supports the dtype, else the
    reference), 'ref', 'cpp' or 'cuda' (see :mod:`insetgan.torch_utils.ops.dispatch`); every
    implementation is differentiable to any order in ``x`` and ``b``. Bad arguments raise
    :class:`insetgan.torch_utils.errors.OpArgumentError`.
    """
    p = check_args(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)
    try:
        kind = dispatch.resolve(impl, x, OP_NAME)
    except ValueError as exc:
        raise OpArgumentError(f"filtered_lrelu: {exc}") from None
    inner = "ref" if impl == "ref" else "auto"
    if kind != "ref" and _longest_filter(fu, fd) > MAX_KERNEL_TAPS:
        if impl != "auto":
            raise OpArgumentError(f"filtered_lrelu: impl={impl!r} supports at most {MAX_KERNEL_TAPS} taps per axis, "
                                f"got {_longest_filter(fu, fd)}")
        kind = inner = "ref"  # the upfirdn2d CPU kernel has the same limit
    if kind == "ref":
        # Under impl='ref' the whole op is plain PyTorch; under 'auto' the inner ops pick their kernels.
        return _filtered_lrelu_ref(x, fu, fd, b, p, inner=inner)
    geometry = _Geometry.of(x, fu, fd, p)
    passes = _kernel_passes(fu, fd, p, geometry, kind)
    return _FilteredLReluCompiled.apply(x, None if b is None else b.to(x.dtype), passes, p, kind)


def _longest_filter(fu: torch.Tensor | None, fd: torch.Tensor | None) -> int:
    return max(max(upfirdn2d.filter_size(fu)), max(upfirdn2d.filter_size(fd)))


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


# Compiled path --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Geometry:
    """Sizes along the op: input, upsampled (before the down filter) and output, each ``(H, W)``."""

    in_hw: tuple[int, int]
    mid_hw: tuple[int, int]
    out_hw: tuple[int, int]
    fu_hw: tuple[int, int]
    fd_hw: tuple[int, int]

    @staticmethod
    def of(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, p: FilteredLReluParams) -> "_Geometry":
        """The geometry of ``filtered_lrelu(x, fu, fd, ...)`` with the validated parameters ``p``."""
        fu_w, fu_h = upfirdn2d.filter_size(fu)
        fd_w, fd_h = upfirdn2d.filter_size(fd)
        px0, px1, py0, py1 = p.padding
        h, w = int(x.shape[2]), int(x.shape[3])
        mid = (h * p.up + py0 + py1 - fu_h + 1, w * p.up + px0 + px1 - fu_w + 1)
        return _Geometry((h, w), mid, output_size((h, w), fu, fd, p), (fu_h, fu_w), (fd_h, fd_w))


@dataclass(frozen=True)
class _Pass:
    """One upfirdn pass inside the fused kernel: correlation taps (flip and gain applied) and geometry.

    ``fy``/``fx`` are separable taps (``f2d`` empty) or ``f2d`` is a full 2-D filter (``fy``/``fx``
    empty). ``scale`` is the pass's up factor (first pass) or down factor (second pass);
    ``pad_x0``/``pad_y0`` the padding before it (negative: crop).
    """

    fy: torch.Tensor
    fx: torch.Tensor
    f2d: torch.Tensor
    scale: int
    pad_x0: int
    pad_y0: int

    @staticmethod
    def make(f: torch.Tensor | None, flip_filter: bool, gain: float, scale: int, pad_x0: int, pad_y0: int,
             kind: str) -> "_Pass":
        """Taps of ``f`` as upfirdn2d applies it (a convolution unless ``flip_filter``), scaled by ``gain``."""
        if f is None:
            f = torch.ones([1], dtype=torch.float64)
        params = upfirdn2d.UpFirDnParams(1, 1, 1, 1, 0, 0, 0, 0, flip_filter, gain)
        fy, fx, f2d = upfirdn2d._kernel_taps(f.detach(), params, kind)
        return _Pass(fy, fx, f2d, scale, pad_x0, pad_y0)

    def transposed(self, scale: int, pad_x0: int, pad_y0: int) -> "_Pass":
        """The pass with flipped taps (a transposed FIR) and the given geometry."""
        f2d = self.f2d.flip([0, 1]) if self.f2d.numel() else self.f2d
        return _Pass(self.fy.flip([0]), self.fx.flip([0]), f2d, scale, pad_x0, pad_y0)


@dataclass(frozen=True)
class _Passes:
    """The kernel passes of the op: forward (up-FIR, down-FIR) and transposed (for dx)."""

    geometry: _Geometry
    up: _Pass
    down: _Pass
    down_t: _Pass
    up_t: _Pass


def _kernel_passes(fu: torch.Tensor | None, fd: torch.Tensor | None, p: FilteredLReluParams, g: _Geometry,
                   kind: str) -> _Passes:
    """The forward passes and their transposes.

    Along one axis the up pass is ``u[j] = sum_t gu[t] * x_up[j + t - p0]`` and the down pass
    ``y[o] = sum_t gd[t] * a[o * down + t]``; their transposes are ``da[j] = sum_t gd[t] *
    dy[(j - t) / down]`` (upsampling by ``down``, flipped taps, padding ``fd - 1``) and ``dx[i] =
    sum_t gu[t] * du[i * up + p0 - t]`` (downsampling by ``up``, flipped taps, padding
    ``fu - 1 - p0``).
    """
    px0, _, py0, _ = p.padding
    (fu_h, fu_w), (fd_h, fd_w) = g.fu_hw, g.fd_hw
    up = _Pass.make(fu, p.flip_filter, p.up**2, p.up, px0, py0, kind)
    down = _Pass.make(fd, p.flip_filter, 1.0, p.down, 0, 0, kind)
    return _Passes(
        geometry=g,
        up=up,
        down=down,
        down_t=down.transposed(p.down, fd_w - 1, fd_h - 1),
        up_t=up.transposed(p.up, fu_w - 1 - px0, fu_h - 1 - py0),
    )


def _run_kernel(kind: str, x: torch.Tensor, b: torch.Tensor | None, mask: torch.Tensor | None, first: _Pass,
                second: _Pass, mid_hw: tuple[int, int], out_hw: tuple[int, int],
                p: FilteredLReluParams) -> tuple[torch.Tensor, torch.Tensor]:
    """``second(step(first(x + b)))``; the step is the activation (``mask`` None, a new mask is
    returned) or the product with the factors of ``mask`` (returned unchanged)."""
    empty = x.new_zeros([0])
    y, mask_out = dispatch.plugin(kind).filtered_lrelu(
        x, empty if b is None else b, empty.to(torch.uint8) if mask is None else mask,
        first.fy, first.fx, first.f2d, first.scale, first.pad_x0, first.pad_y0,
        second.fy, second.fx, second.f2d, second.scale, second.pad_x0, second.pad_y0,
        mid_hw[0], mid_hw[1], out_hw[0], out_hw[1], p.gain, p.slope, -1.0 if p.clamp is None else p.clamp,
        mask is None, dispatch.poison(),
    )
    return y, mask_out


class _FilteredLReluCompiled(torch.autograd.Function):
    """The op through the fused kernel; saves the 2-bit mask, backward through :class:`_FilteredLReluGrad`."""

    @staticmethod
    def forward(ctx, x, b, passes, params, kind):  # noqa: D102
        g = passes.geometry
        y, mask = _run_kernel(kind, x, b, None, passes.up, passes.down, g.mid_hw, g.out_hw, params)
        ctx.save_for_backward(mask)
        ctx.passes, ctx.params, ctx.kind = passes, params, kind
        return y

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        (mask,) = ctx.saved_tensors
        dx = _FilteredLReluGrad.apply(dy, mask, ctx.passes, ctx.params, ctx.kind)
        db = dx.sum([0, 2, 3]) if ctx.needs_input_grad[1] else None
        return (dx if ctx.needs_input_grad[0] else None), db, None, None, None


class _FilteredLReluGrad(torch.autograd.Function):
    """``dx = up_t(mask * down_t(dy))``: linear in ``dy``; its gradient is :class:`_FilteredLReluLinear`."""

    @staticmethod
    def forward(ctx, dy, mask, passes, params, kind):  # noqa: D102
        g = passes.geometry
        dx, _ = _run_kernel(kind, dy, None, mask, passes.down_t, passes.up_t, g.mid_hw, g.in_hw, params)
        ctx.save_for_backward(mask)
        ctx.passes, ctx.params, ctx.kind = passes, params, kind
        return dx

    @staticmethod
    def backward(ctx, ddx):  # noqa: D102
        (mask,) = ctx.saved_tensors
        return _FilteredLReluLinear.apply(ddx, mask, ctx.passes, ctx.params, ctx.kind), None, None, None, None


class _FilteredLReluLinear(torch.autograd.Function):
    """``down(mask * up(dx))``, the op linearised at the saved mask; its gradient is :class:`_FilteredLReluGrad`."""

    @staticmethod
    def forward(ctx, dx, mask, passes, params, kind):  # noqa: D102
        g = passes.geometry
        dy, _ = _run_kernel(kind, dx, None, mask, passes.up, passes.down, g.mid_hw, g.out_hw, params)
        ctx.save_for_backward(mask)
        ctx.passes, ctx.params, ctx.kind = passes, params, kind
        return dy

    @staticmethod
    def backward(ctx, ddy):  # noqa: D102
        (mask,) = ctx.saved_tensors
        return _FilteredLReluGrad.apply(ddy, mask, ctx.passes, ctx.params, ctx.kind), None, None, None, None
