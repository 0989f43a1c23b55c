"""Box providers (where an inset sits on a canvas) and box tracking during optimisation.

A provider is a callable ``image [1, C, H, W] in [-1, 1] -> Box | None`` (``None``: nothing
found). Providers: :class:`FixedBox` (relative box in an aligned canvas), :class:`ManualBox`
(absolute pixels) and :class:`DlibFaceBox` (dlib detector + 68 landmarks, FFHQ quad).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from insetgan.errors import InsetganError
from insetgan.inversion.align import LandmarkDetector, ffhq_quad
from insetgan.limits import check_ranges, ranged
from insetgan.method.regions import Box

log = logging.getLogger(__name__)

# Relative boxes (x, y, w, h as fractions of canvas width/height) in a StyleGAN-Human-style
# aligned 2:1 canvas; the face prior is only used when detection is off or fails at the start.
FACE_PRIOR = (0.39, 0.035, 0.22, 0.11)
SHOES_PRIOR = (0.25, 0.74, 0.5, 0.25)


class BoxProvider(Protocol):
    """Finds a box on a canvas image."""

    name: str

    def __call__(self, image: torch.Tensor) -> Box | None: ...


@dataclass(frozen=True)
class ManualBox:
    """A box given in canvas pixels (``--face-box x,y,w,h``)."""

    box: Box
    name: str = "manual"

    def __call__(self, image: torch.Tensor) -> Box | None:
        """Return the fixed box (checked against the image size)."""
        H, W = image.shape[-2:]
        if not self.box.inside(H, W):
            raise InsetganError(f"box {self.box.x:g},{self.box.y:g},{self.box.w:g},{self.box.h:g} "
                             f"is outside the {W}x{H} (WxH) canvas")
        return self.box


@dataclass(frozen=True)
class FixedBox:
    """A box relative to the canvas size: ``(x, y, w, h)`` as fractions of width and height.

    With ``square=True`` the box is made square (side = the width term, in pixels) around
    the same centre, which suits a square inset frame on a 2:1 canvas.
    """

    rel: tuple[float, float, float, float]
    square: bool = True
    name: str = "fixed"

    def __call__(self, image: torch.Tensor) -> Box | None:
        """The relative box in pixels of this image."""
        H, W = image.shape[-2:]
        x, y, w, h = self.rel
        box = Box(x * W, y * H, w * W, h * H)
        if self.square:
            side = min(box.w, box.h)
            cx, cy = box.center
            box = Box(cx - side / 2, cy - side / 2, side, side)
        return clamp_box(box, H, W)


def clamp_box(box: Box, height: int, width: int) -> Box:
    """Shift (and if needed shrink) an axis-aligned box so that it lies inside the canvas."""
    w, h = min(box.w, width), min(box.h, height)
    x = min(max(box.x, 0.0), width - w)
    y = min(max(box.y, 0.0), height - h)
    return Box(x, y, w, h, box.angle)


def ffhq_box(quad: np.ndarray, rotate: bool = False) -> Box:
    """The FFHQ crop quad [4, 2] (see :func:`insetgan.inversion.align.ffhq_quad`) as a square box (rotated with ``rotate``)."""
    c = quad.mean(0)
    side = float(np.hypot(*(quad[3] - quad[0])))
    dx, dy = quad[3] - quad[0]
    angle = math.degrees(math.atan2(dy, dx)) if rotate else 0.0
    return Box(float(c[0] - side / 2), float(c[1] - side / 2), side, side, angle)


class DlibFaceBox:
    """dlib frontal detector + 68 landmarks → FFHQ box; small canvases are upscaled first.

    ``min_size`` is the height (px) the canvas is upscaled to before detection (the faces of a
    256-px-high body are ~15 px, too small for dlib). Several faces → the largest.
    """

    name = "dlib"

    def __init__(self, min_size: int = 1024, rotate: bool = False, detector: LandmarkDetector | None = None) -> None:
        self._detector = detector or LandmarkDetector()
        self.min_size = min_size
        self.rotate = rotate

    def landmarks(self, image: torch.Tensor) -> np.ndarray | None:
        """68 landmarks [68, 2] of the largest face in canvas pixels, or ``None``."""
        from PIL import Image

        arr = ((image[0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        pil = Image.fromarray(arr.permute(1, 2, 0).numpy().squeeze(-1) if arr.shape[0] == 1
                              else arr.permute(1, 2, 0).numpy())
        scale = max(1.0, self.min_size / pil.height)
        if scale > 1:
            pil = pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.LANCZOS)
        faces = self._detector.faces(pil, upsample=0 if scale > 1 else 1)
        if not faces:
            return None
        return (faces[0].landmarks + 0.5) / scale - 0.5

    def __call__(self, image: torch.Tensor) -> Box | None:
        """The FFHQ face box of the largest face, or ``None`` when no face is found."""
        lm = self.landmarks(image)
        return None if lm is None else ffhq_box(ffhq_quad(lm), self.rotate)


@dataclass(frozen=True)
class TrackConfig:
    """Box re-estimation during optimisation: damping and sanity bounds relative to the previous box.

    A new detection moves the box by ``(1 - damping)`` of the way; it is rejected when its size
    changes by more than the factor ``max_scale`` or its centre moves by more than
    ``max_shift`` times the previous box size.
    """

    damping: float = ranged(0.5, 0.0, 1.0, hi_open=True)
    max_scale: float = ranged(1.3, 1.0, 100.0)
    max_shift: float = ranged(0.25, 0.0, 100.0)

    def __post_init__(self) -> None:
        check_ranges(self, "track.")


def track(prev: Box, detected: Box | None, cfg: TrackConfig) -> tuple[Box, str]:
    """Next box from the previous one and a new detection: ``(box, status)``.

    ``status`` is ``updated``, ``missed`` (no detection: the previous box is kept) or
    ``rejected`` (outside the sanity bounds: the previous box is kept).
    """
    if detected is None:
        return prev, "missed"
    size_prev, size_new = math.sqrt(prev.w * prev.h), math.sqrt(detected.w * detected.h)
    (px, py), (dx, dy) = prev.center, detected.center
    ratio = size_new / size_prev
    if not (1 / cfg.max_scale <= ratio <= cfg.max_scale) or math.hypot(dx - px, dy - py) > cfg.max_shift * size_prev:
        return prev, "rejected"
    k = 1 - cfg.damping
    cx, cy = px + k * (dx - px), py + k * (dy - py)
    w, h = prev.w + k * (detected.w - prev.w), prev.h + k * (detected.h - prev.h)
    angle = prev.angle + k * (detected.angle - prev.angle)
    return Box(cx - w / 2, cy - h / 2, w, h, angle), "updated"


def refine_box(box: Box, cost: Callable[[Box], float], height: int, width: int, radius: float = 0.1,
               scales: tuple[float, ...] = (0.9, 1.0, 1.1), steps: int = 2) -> tuple[Box, float]:
    """Local search around a prior box minimising ``cost`` (e.g. the coarse loss): shifts of ±``radius``·size and rescales.

    Used for shoe boxes: a fixed prior refined to where the canvas content best matches the inset.
    Returns the best box (kept inside the canvas) and its cost.
    """
    best, best_cost = box, cost(box)
    for _ in range(steps):
        cx, cy = best.center
        for s in scales:
            w, h = best.w * s, best.h * s
            for fx in (-radius, 0.0, radius):
                for fy in (-radius, 0.0, radius):
                    if s == 1.0 and fx == 0 and fy == 0:
                        continue
                    cand = clamp_box(Box(cx + fx * best.w - w / 2, cy + fy * best.h - h / 2, w, h), height, width)
                    c = cost(cand)
                    if c < best_cost:
                        best, best_cost = cand, c
        radius /= 2
    return best, best_cost
