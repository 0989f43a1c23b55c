"""Where the crops go: face landmarks and face boxes (dlib, else the head labels), the person-centred
crop window of a body photo, and boxes mapped into (and summarised over) the canvas.

Boxes use continuous pixel coordinates (pixel ``i`` covers ``[i, i+1)``), like
:mod:`insetgan.method.regions`. Face boxes are :func:`insetgan.method.boxes.ffhq_box` squares (side = FFHQ quad
side, centre = quad centre), shifted inside the canvas with :func:`insetgan.method.boxes.clamp_box`.
When dlib finds no face in a labelled photo, the face box comes from the label map: the head
labels (hair, skin, hat, glasses, sunglasses) give the top of the head and, in the band of
``0.1·person height`` below it, the horizontal centre (median column); side ``0.143·h`` and
centre ``top + 0.081·h`` are the medians of the dlib box relative to the person height ``h``
measured on 110 labelled ccp photos (median centre error ≈ 6 % of the side).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from insetgan.data.labels import XYWH
from insetgan.images import MAX_PIXELS
from insetgan.inversion.align import LandmarkDetector, ffhq_quad
from insetgan.method.boxes import ffhq_box
from insetgan.method.regions import Box

HEAD_SIDE, HEAD_CENTRE, HEAD_BAND = 0.143, 0.081, 0.1  # label-map face box, in units of the person height
DETECT_RETRY_PX = 1024  # detector images up to this side are searched again with 2x detector upsampling


def find_landmarks(photo: Image.Image, detector: LandmarkDetector, scale: float) -> np.ndarray | None:
    """68 landmarks [68, 2] (pixel-index coordinates of ``photo``) of the largest face, or ``None``.

    dlib runs on a copy upscaled by ``scale`` (small faces); a copy of at most 1024 px is searched
    again with 2x detector upsampling when nothing is found.
    """
    big = photo
    scale = min(scale, math.sqrt(MAX_PIXELS / (photo.width * photo.height)))  # the copy stays under the limit
    if scale > 1:
        big = photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))), Image.LANCZOS)
    faces = detector.faces(big, upsample=0)
    if not faces and max(big.size) <= DETECT_RETRY_PX:
        faces = detector.faces(big, upsample=1)
    if not faces:
        return None
    k = np.array([photo.width / big.width, photo.height / big.height])
    return (faces[0].landmarks + 0.5) * k - 0.5


def face_box_from_landmarks(landmarks: np.ndarray) -> Box:
    """The FFHQ face square (continuous coordinates) of 68 pixel-index landmarks."""
    return ffhq_box(ffhq_quad(landmarks) + 0.5)


def face_box_from_labels(labels: np.ndarray, head: Iterable[int]) -> Box | None:
    """A face square estimated from the head labels at the top of the person (see the module docstring), or ``None``."""
    ys = np.flatnonzero((labels > 0).any(axis=1))
    hmask = np.isin(labels, list(head))
    hy, hx = np.nonzero(hmask)
    if ys.size == 0 or hy.size == 0:
        return None
    height = float(ys[-1] + 1 - ys[0])
    top = int(hy.min())
    if top > ys[0] + 0.25 * height:  # no head labels near the top of the person
        return None
    cx = float(np.median(hx[hy < top + max(1.0, HEAD_BAND * height)])) + 0.5
    side, cy = HEAD_SIDE * height, top + HEAD_CENTRE * height
    return Box(cx - side / 2, cy - side / 2, side, side)


def person_window(size: tuple[int, int], height: int, width: int, labels: np.ndarray | None = None,
                  face_x: float | None = None, margin: float = 1.05) -> tuple[tuple[int, int, int, int], str]:
    """The crop window ``(x0, y0, x1, y1)`` at the ``height``:``width`` aspect and what it is centred on.

    ``labels`` (non-zero = person): centred on the person's bounding box, window height
    ``max(h·margin, w·margin·height/width)``; else ``face_x``: horizontally on the face, full
    photo height; else the photo centre. The window may extend outside the photo.
    """
    W, H = size
    if labels is not None and (labels > 0).any():
        ys, xs = np.nonzero(labels > 0)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        cx, cy, win_h = (x0 + x1) / 2, (y0 + y1) / 2, max((y1 - y0) * margin, (x1 - x0) * margin * height / width)
        how = "labels"
    else:
        cx, cy, win_h = (face_x if face_x is not None else W / 2), H / 2, float(H)
        how = "face" if face_x is not None else "photo"
    win_w = win_h * width / height
    left, top = int(round(cx - win_w / 2)), int(round(cy - win_h / 2))
    return (left, top, left + max(1, int(round(win_w))), top + max(1, int(round(win_h)))), how


def to_canvas(box: XYWH, window: tuple[int, int, int, int], height: int, width: int) -> XYWH:
    """A photo box ``(x, y, w, h)`` in the canvas pixels of a crop window resized to ``width``×``height``."""
    x0, y0, x1, y1 = window
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    return (box[0] - x0) * sx, (box[1] - y0) * sy, box[2] * sx, box[3] * sy


def median_box(boxes: Sequence[Sequence[float]], height: int, width: int) -> list[float] | None:
    """Per-coordinate median of canvas boxes as a relative ``(x, y, w, h)`` (fractions of width/height)."""
    if not boxes:
        return None
    med = np.median(np.asarray(boxes, dtype=np.float64), axis=0)
    return [round(float(v), 4) for v in med / [width, height, width, height]]
