"""Compositing an inset (already resampled onto the canvas grid) into the canvas."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from insetgan.errors import InsetganError

BLENDS = ("hard", "feather", "laplacian")


def hard(canvas: torch.Tensor, pasted: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard paste: the inset wherever ``mask`` > 0.5, the canvas elsewhere."""
    m = (mask > 0.5).to(canvas)
    return canvas * (1 - m) + pasted * m


def feather(canvas: torch.Tensor, pasted: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Alpha blend with a soft ``mask`` (e.g. :func:`insetgan.method.regions.box_mask` with ``feather`` > 0)."""
    return canvas * (1 - mask) + pasted * mask


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype, device=x.device) / 16
    c = x.shape[1]
    x = F.pad(x, [2, 2, 2, 2], mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)


def _down(x: torch.Tensor) -> torch.Tensor:
    return _blur(x)[:, :, ::2, ::2]


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return _blur(F.interpolate(x, size=size, mode="bilinear", align_corners=False))


def laplacian(canvas: torch.Tensor, pasted: torch.Tensor, mask: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Laplacian-pyramid blend: each frequency band is mixed with a mask blurred to its scale."""
    levels = max(1, min(levels, int(torch.log2(torch.tensor(float(min(canvas.shape[-2:])))).item()) - 2))
    ga, gb, gm = [canvas], [pasted], [mask.to(canvas)]
    for _ in range(levels - 1):
        ga.append(_down(ga[-1]))
        gb.append(_down(gb[-1]))
        gm.append(_down(gm[-1]))
    out = ga[-1] * (1 - gm[-1]) + gb[-1] * gm[-1]
    for i in range(levels - 2, -1, -1):
        size = tuple(ga[i].shape[-2:])
        la = ga[i] - _up(ga[i + 1], size)
        lb = gb[i] - _up(gb[i + 1], size)
        out = _up(out, size) + la * (1 - gm[i]) + lb * gm[i]
    return out


def blend(canvas: torch.Tensor, pasted: torch.Tensor, mask: torch.Tensor, method: str = "feather") -> torch.Tensor:
    """Composite with the named method (``hard``, ``feather`` or ``laplacian``)."""
    if method not in BLENDS:
        raise InsetganError(f"unknown blend {method!r}; choose from {', '.join(BLENDS)}")
    if canvas.shape != pasted.shape:
        raise InsetganError(f"pasted inset {list(pasted.shape)} does not match the canvas {list(canvas.shape)}")
    return {"hard": hard, "feather": feather, "laplacian": laplacian}[method](canvas, pasted, mask)
