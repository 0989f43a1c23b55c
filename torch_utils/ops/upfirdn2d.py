"""Upsample, FIR-filter and downsample 2-D feature maps (the StyleGAN2 ``upfirdn2d`` op).

Conventions follow the published StyleGAN2-ADA op: a filter is a 1-D tensor ``[taps]``
(separable, applied along both axes) or a 2-D tensor ``[fh, fw]``; padding is given as an
int, ``[px, py]`` or ``[px0, px1, py0, py1]`` (negative values crop); scaling factors as an
int or ``[sx, sy]``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from insetgan.torch_utils.ops import dispatch

Scaling = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int]]


def parse_scaling(scaling: Scaling) -> tuple[int, int]:
    """Return ``(sx, sy)`` from an int or a pair; factors must be >= 1."""
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    sx, sy = (int(s) for s in scaling)
    if sx < 1 or sy < 1:
        raise ValueError(f"scaling factors must be >= 1, got {scaling}")
    return sx, sy


def parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """Return ``(px0, px1, py0, py1)`` from an int, ``[px, py]`` or four values."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return padding[0], padding[1], padding[2], padding[3]
    raise ValueError(f"padding must have 1, 2 or 4 values, got {padding}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """Return ``(fw, fh)`` of a 1-D or 2-D filter (``(1, 1)`` for None)."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1-D or 2-D, got shape {list(f.shape)}")
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(
    f: Sequence[float] | torch.Tensor | float | None,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1.0,
    separable: bool | None = None,
) -> torch.Tensor:
    """Build a float32 FIR filter tensor for :func:`upfirdn2d`.

    A 1-D list becomes its outer product (a 2-D filter) unless ``separable`` is true, or it has
    at least 8 taps and ``separable`` is None. ``normalize`` makes the taps sum to 1; ``gain``
    scales the overall response.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 0-, 1- or 2-D, got shape {list(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


@dataclass(frozen=True)
class UpFirDnParams:
    """Normalised arguments of one upfirdn2d call."""

    upx: int
    upy: int
    downx: int
    downy: int
    px0: int
    px1: int
    py0: int
    py1: int
    flip_filter: bool
    gain: float


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    impl: str = "auto",
) -> torch.Tensor:
    """Pad, upsample (zero insertion), FIR-filter and downsample a ``[N, C, H, W]`` tensor.

    ``impl``: 'auto' (compiled kernel when available), 'ref', 'cpp' or 'cuda'; see
    :mod:`insetgan.torch_utils.ops.dispatch`. Differentiable to any order with every implementation.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects a 4-D tensor, got shape {list(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    out_h = (x.shape[2] * upy + py0 + py1 - fh) // downy + 1
    out_w = (x.shape[3] * upx + px0 + px1 - fw) // downx + 1
    if x.shape[2] * upy + py0 + py1 < fh or x.shape[3] * upx + px0 + px1 < fw or out_h < 1 or out_w < 1:
        raise ValueError(f"upfirdn2d: input {list(x.shape)} with this padding and filter gives an empty output")
    params = UpFirDnParams(upx, upy, downx, downy, px0, px1, py0, py1, bool(flip_filter), float(gain))
    kind = dispatch.resolve(impl, x, "upfirdn2d")
    if kind == "ref":
        return _upfirdn2d_ref(x, f, params)
    return _UpFirDn2dCompiled.apply(x, f, params, kind)


def _kernel_taps(f: torch.Tensor, params: UpFirDnParams, kind: str):
    """(fy, fx, f2d) taps for the kernels: flip and gain applied; rank-1 2-D filters made separable."""
    f = f.to(torch.float64) * (params.gain ** (f.ndim / 2))
    if not params.flip_filter:
        f = f.flip(list(range(f.ndim)))
    empty = f.new_zeros([0])
    if f.ndim == 1:
        return f, f, empty
    if kind == "cpp":
        i, j = divmod(int(f.abs().argmax()), f.shape[1])
        if f[i, j] != 0:
            fy, fx = f[:, j], f[i, :] / f[i, j]
            if torch.allclose(torch.outer(fy, fx), f, rtol=1e-7, atol=1e-12 * float(f.abs().max())):
                return fy, fx, empty
    return empty, empty, f


def _run_kernel(x: torch.Tensor, f: torch.Tensor, p: UpFirDnParams, kind: str) -> torch.Tensor:
    fy, fx, f2d = _kernel_taps(f, p, kind)
    return dispatch.plugin(kind).upfirdn2d(
        x, fy, fx, f2d, p.upx, p.upy, p.downx, p.downy, p.px0, p.px1, p.py0, p.py1, dispatch.poison()
    )


class _UpFirDn2dCompiled(torch.autograd.Function):
    """upfirdn2d through a compiled kernel; its gradient is another upfirdn2d (any order)."""

    @staticmethod
    def forward(ctx, x, f, params, kind):  # noqa: D102
        ctx.save_for_backward(f)
        ctx.params, ctx.kind, ctx.in_shape = params, kind, x.shape
        return _run_kernel(x, f, params, kind)

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        (f,) = ctx.saved_tensors
        p = ctx.params
        ih, iw = ctx.in_shape[2:]
        oh, ow = dy.shape[2:]
        fw, fh = filter_size(f)
        grad_params = replace(
            p,
            upx=p.downx, upy=p.downy, downx=p.upx, downy=p.upy,
            px0=fw - p.px0 - 1, px1=iw * p.upx - ow * p.downx + p.px0 - p.upx + 1,
            py0=fh - p.py0 - 1, py1=ih * p.upy - oh * p.downy + p.py0 - p.upy + 1,
            flip_filter=not p.flip_filter,
        )
        dx = _UpFirDn2dCompiled.apply(dy, f, grad_params, ctx.kind) if ctx.needs_input_grad[0] else None
        return dx, None, None, None


def _upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor, p: UpFirDnParams) -> torch.Tensor:
    """Plain-PyTorch reference of :func:`upfirdn2d`."""
    upx, upy, downx, downy = p.upx, p.upy, p.downx, p.downy
    px0, px1, py0, py1 = p.px0, p.px1, p.py0, p.py1
    flip_filter, gain = p.flip_filter, p.gain
    n, c, h, w = x.shape

    # Upsample by inserting zeros after each sample.
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    # Pad (positive) or crop (negative).
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    # Convolve (a true convolution unless flip_filter, hence the flip for conv2d's correlation).
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)

    # Downsample by keeping every down-th sample.
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    impl: str = "auto",
) -> torch.Tensor:
    """Filter a tensor with ``f``, keeping its size (plus ``padding``)."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    impl: str = "auto",
) -> torch.Tensor:
    """Upsample by ``up`` with the anti-imaging filter ``f`` (output is ``up`` times larger)."""
    upx, upy = parse_scaling(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor,
    down: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    impl: str = "auto",
) -> torch.Tensor:
    """Downsample by ``down`` after the anti-aliasing filter ``f``."""
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
