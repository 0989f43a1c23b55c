"""The face window of a body canvas: the square that a second, local discriminator sees.

At 256×128 the face is about 34 px wide, a few percent of the canvas, and the whole-image
discriminator gives it little of its attention: the body model learned silhouettes long before
faces (MODEL_CARD.md). ``insetgan train --face-d W`` adds a second discriminator that
sees only a fixed square around the dataset's face prior, on real and generated images alike,
and adds its non-saturating loss, weighted ``W``, to the generator's. Local discriminators for
small, important parts are a standard remedy (e.g. the face discriminators of human-image GANs);
the window is fixed, not tracked, so that both sides are cropped the same way. MODEL_CARD.md
has its runs on the built-in 256×128 body.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from insetgan.errors import InsetganError


@dataclass(frozen=True)
class FaceWindow:
    """A square window ``[y0, y0 + side) × [x0, x0 + side)`` of the canvas, in pixels."""

    x0: int
    y0: int
    side: int

    def crop(self, img: torch.Tensor) -> torch.Tensor:
        """The window of images [N, C, H, W] (a view, so gradients flow back to the canvas)."""
        return img[:, :, self.y0:self.y0 + self.side, self.x0:self.x0 + self.side]


def face_window(prior: Sequence[float], height: int, width: int, margin: float = 1.5) -> FaceWindow:
    """The power-of-two square (>= 8 px, <= the canvas width) centred on a face prior.

    ``prior`` is the dataset's relative (x, y, w, h) face box; the side is the smallest power of
    two that holds ``margin`` times the box's longer side (head, hair and neck), and the window
    is moved inside the canvas where it would cross an edge.
    """
    if len(prior) != 4 or not all(isinstance(v, (int, float)) for v in prior):
        raise InsetganError(f"a face prior is (x, y, w, h) in relative units, got {list(prior)!r}")
    x, y, w, h = (float(v) for v in prior)
    if not (w > 0 and h > 0 and 0 <= x + w / 2 <= 1 and 0 <= y + h / 2 <= 1):
        raise InsetganError(f"the face prior {list(prior)} does not lie on the canvas")
    limit = min(height, width)
    if limit < 8:
        raise InsetganError(f"a {width}x{height} canvas is too small for a face window (8 px at least)")
    side = 8
    while side < margin * max(w * width, h * height) and side * 2 <= limit:
        side *= 2
    cx, cy = (x + w / 2) * width, (y + h / 2) * height
    x0 = min(max(int(round(cx - side / 2)), 0), width - side)
    y0 = min(max(int(round(cy - side / 2)), 0), height - side)
    return FaceWindow(x0, y0, side)


def dataset_face_window(meta: dict[str, Any], height: int, width: int) -> FaceWindow:
    """The face window of a prepared body dataset (its ``dataset.json`` face prior)."""
    priors = meta.get("priors")
    prior = priors.get("face") if isinstance(priors, dict) else None
    if prior is None:
        raise InsetganError("--face-d needs a body dataset with a face prior in its dataset.json "
                            "(insetgan prepare bodies)")
    return face_window(prior, height, width)


def window_gamma(gamma: float, window: FaceWindow, height: int) -> float:
    """The face discriminator's R1 weight: the canvas's, scaled by (side / height)² like StyleGAN2-ADA's rule."""
    return gamma * (window.side / height) ** 2
