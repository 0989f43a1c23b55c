"""Where an inset sits on the canvas: boxes and exact, differentiable crop/paste transforms.

Coordinates are canvas pixels with the continuous convention of ``grid_sample``
(``align_corners=False``): pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)`` and its centre is
``(j + 0.5, i + 0.5)``. A :class:`Box` is the square (or rectangle) in the canvas onto which the
whole inset frame maps, optionally rotated about its centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from insetgan.errors import InsetganError


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``(x, y, w, h)`` in canvas pixels, rotated by ``angle`` degrees about its centre."""

    x: float
    y: float
    w: float
    h: float
    angle: float = 0.0

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.x, self.y, self.w, self.h, self.angle)):
            raise InsetganError(f"box values must be finite, got {self}")
        if self.w <= 0 or self.h <= 0:
            raise InsetganError(f"box width and height must be positive, got {self.w}x{self.h}")
        if abs(self.angle) > 360:
            raise InsetganError(f"box angle must be in [-360, 360] degrees, got {self.angle:g}")

    @property
    def center(self) -> tuple[float, float]:
        """Centre ``(cx, cy)`` in canvas pixels."""
        return self.x + self.w / 2, self.y + self.h / 2

    @classmethod
    def parse(cls, text: str) -> "Box":
        """Parse ``'x,y,w,h'`` (optionally ``',angle'``)."""
        try:
            values = [float(v) for v in str(text).split(",")]
        except ValueError:
            raise InsetganError(f"invalid box {text!r}: expected x,y,w,h") from None
        if len(values) not in (4, 5):
            raise InsetganError(f"invalid box {text!r}: expected x,y,w,h")
        return cls(*values)

    def inside(self, height: int, width: int) -> bool:
        """True when the (unrotated) box lies entirely inside a ``height x width`` canvas."""
        return self.x >= 0 and self.y >= 0 and self.x + self.w <= width and self.y + self.h <= height

    def scaled(self, sx: float, sy: float | None = None) -> "Box":
        """The same box in a canvas resized by ``sx`` (and ``sy``)."""
        sy = sx if sy is None else sy
        return Box(self.x * sx, self.y * sy, self.w * sx, self.h * sy, self.angle)


def _theta(box: Box, canvas_hw: tuple[int, int]) -> torch.Tensor:
    """Affine map from inset normalised coordinates to canvas normalised coordinates, [2, 3]."""
    H, W = canvas_hw
    cx, cy = box.center
    a = math.radians(box.angle)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor(
        [[c * box.w / W, -s * box.h / W, 2 * cx / W - 1], [s * box.w / H, c * box.h / H, 2 * cy / H - 1]],
        dtype=torch.float64,
    )


def _inverse(theta: torch.Tensor) -> torch.Tensor:
    full = torch.cat([theta, torch.tensor([[0.0, 0.0, 1.0]], dtype=theta.dtype)])
    return torch.linalg.inv(full)[:2]


def crop(canvas: torch.Tensor, box: Box, size: tuple[int, int]) -> torch.Tensor:
    """Resample the canvas region under ``box`` to an inset frame of ``size = (h, w)`` (differentiable).

    When the box is much larger than the output, the canvas is first area-averaged so the
    bilinear sampling does not alias.
    """
    if canvas.ndim != 4:
        raise InsetganError(f"canvas must be [N, C, H, W], got {list(canvas.shape)}")
    h, w = size
    factor = int(min(box.w / w, box.h / h))
    src, sbox = canvas, box
    if factor >= 2:
        src = F.avg_pool2d(canvas, factor, ceil_mode=True)
        sbox = box.scaled(1 / factor)
    theta = _theta(sbox, src.shape[-2:]).to(canvas)
    grid = F.affine_grid(theta.expand(canvas.shape[0], 2, 3), [canvas.shape[0], canvas.shape[1], h, w],
                         align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)


def paste(canvas: torch.Tensor, inset: torch.Tensor, box: Box, alpha: torch.Tensor | None = None
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``inset`` into the canvas frame under ``box``; returns ``(pasted, coverage)``.

    ``pasted`` is the inset on the canvas grid (zeros outside the box) and ``coverage`` [N,1,H,W]
    how much of each canvas pixel the inset covers, times ``alpha`` (an optional [N,1,h,w]
    inset-frame mask). Composite with :mod:`insetgan.method.blend`. Differentiable in both inputs.
    """
    if inset.ndim != 4 or canvas.ndim != 4:
        raise InsetganError("canvas and inset must be [N, C, H, W]")
    if inset.shape[1] != canvas.shape[1]:
        raise InsetganError(f"inset has {inset.shape[1]} channels but the canvas has {canvas.shape[1]}")
    if inset.device != canvas.device:
        raise InsetganError(f"inset is on {inset.device} but the canvas is on {canvas.device}")
    n = canvas.shape[0]
    H, W = canvas.shape[-2:]
    # Bring the inset close to the box's size first (antialiased), then sample exactly.
    th, tw = max(1, round(box.h)), max(1, round(box.w))
    if th < inset.shape[-2] or tw < inset.shape[-1]:
        inset = F.interpolate(inset, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
        if alpha is not None:
            alpha = F.interpolate(alpha, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
    ones = torch.ones_like(inset[:, :1]) if alpha is None else alpha.to(inset)
    theta = _inverse(_theta(box, (H, W))).to(canvas)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, 1, H, W], align_corners=False)
    sampled = F.grid_sample(torch.cat([inset * ones, ones], 1), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    pasted, coverage = sampled[:, :-1], sampled[:, -1:]
    # Undo the bilinear falloff of the zero padding at the box edge: divide colour by coverage.
    pasted = pasted / coverage.clamp_min(1e-6) * (coverage > 1e-6)
    return pasted, coverage.clamp(0, 1)


def box_mask(height: int, width: int, box: Box, feather: float = 0.0, device: str | torch.device = "cpu"
             ) -> torch.Tensor:
    """[1, 1, H, W] mask of ``box`` on the canvas: 1 inside, 0 outside, a linear ramp of ``feather`` px inside the edge."""
    ys = torch.arange(height, dtype=torch.float32, device=device) + 0.5
    xs = torch.arange(width, dtype=torch.float32, device=device) + 0.5
    cx, cy = box.center
    a = math.radians(box.angle)
    dx, dy = xs[None, :] - cx, ys[:, None] - cy
    u = math.cos(a) * dx + math.sin(a) * dy  # box-frame coordinates
    v = -math.sin(a) * dx + math.cos(a) * dy
    dist = torch.minimum(box.w / 2 - u.abs(), box.h / 2 - v.abs())  # > 0 inside, in px from the edge
    if feather > 0:
        mask = (dist / feather).clamp(0, 1)
    else:
        mask = (dist > 0).float()
    return mask[None, None]
