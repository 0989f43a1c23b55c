"""2-D convolution with optional up/downsampling, composed in the cheapest order."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from insetgan.torch_utils.ops.upfirdn2d import Padding, filter_size, parse_padding, upfirdn2d


def _conv2d(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int = 1,
    padding: int | list[int] = 0,
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
) -> torch.Tensor:
    """conv2d / conv_transpose2d; ``flip_weight=False`` turns correlation into convolution."""
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _padding(f: torch.Tensor | None, up: int, down: int, padding: Padding) -> list[int]:
    """``[px0, px1, py0, py1]``: the user's padding plus what centres the filter ``f`` when resampling."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    return [px0, px1, py0, py1]


def _upsampling_conv(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None, up: int, down: int, pad: list[int],
                     groups: int, flip_weight: bool, flip_filter: bool) -> torch.Tensor:
    """Upsampling (``up`` > 1): transposed strided convolution, then the filter (and any downsampling)."""
    out_channels, in_per_group, kh, kw = w.shape
    if groups == 1:
        w = w.transpose(0, 1)
    else:
        w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
        w = w.transpose(1, 2)
        w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    px0, px1, py0, py1 = pad
    px0 -= kw - 1
    px1 -= kw - up
    py0 -= kh - 1
    py1 -= kh - up
    pxt = max(min(-px0, -px1), 0)
    pyt = max(min(-py0, -py1), 0)
    x = _conv2d(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
    x = upfirdn2d(
        x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2, flip_filter=flip_filter
    )
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Convolve ``x`` with ``w`` ([out, in/groups, kh, kw]) and resample by ``up``/``down``.

    Matches upsampling (zero insertion + filter ``f``), padding, convolution and downsampling
    (filter ``f`` + decimation) applied in that order, but picks a cheaper equivalent
    composition (transposed or strided convolution, filtering the smaller side of a 1x1 conv).
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError("conv2d_resample expects 4-D input and weight")
    if up < 1 or down < 1:
        raise ValueError("up and down must be >= 1")
    kh, kw = w.shape[2:]
    pad = _padding(f, up, down, padding)
    px0, px1, py0, py1 = pad

    # 1x1 conv + downsampling: filter the input first, then convolve the smaller map.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv2d(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 conv + upsampling: convolve first, then upsample.
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv2d(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up**2, flip_filter=flip_filter)

    # Downsampling only: filter, then strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv2d(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    if up > 1:
        return _upsampling_conv(x, w, f, up, down, pad, groups, flip_weight, flip_filter)

    # No resampling and symmetric padding: a plain convolution.
    if up == 1 and down == 1 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv2d(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # General case.
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=pad, gain=up**2, flip_filter=flip_filter)
    x = _conv2d(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x
