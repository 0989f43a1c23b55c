"""User photos as generator targets: load, FFHQ-align a selfie, crop a person at the canvas aspect.

One-line errors (:class:`insetgan.errors.InsetganError`) for photos that are missing, too
small, or hold no usable face.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from insetgan.errors import InsetganError
from insetgan.images import open_rgb
from insetgan.inversion.align import LandmarkDetector, align_ffhq, ffhq_quad
from insetgan.networks.generator import Generator

MIN_FACE_PX = 64  # smallest FFHQ quad side (source pixels) we align; smaller faces are mostly blur
SMALL_PHOTO_PX = 1024  # photos up to this side are searched again with 2x detector upsampling
MIN_PHOTO_PX = 16


def load_photo(path: str) -> Image.Image:
    """An RGB photo (EXIF applied) that is large enough to use; one-line errors otherwise."""
    img = open_rgb(path)
    if min(img.size) < MIN_PHOTO_PX:
        raise InsetganError(f"image {path} is too small ({img.width}x{img.height})")
    return img


def align_face(photo: Image.Image, size: int, what: str = "the photo",
               detector: LandmarkDetector | None = None) -> tuple[Image.Image, np.ndarray]:
    """FFHQ-align the largest face of ``photo`` to ``size``² → (aligned image, its 68 landmarks in the photo)."""
    detector = detector or LandmarkDetector()
    try:
        face = detector.largest(photo, what)
    except ValueError:
        if max(photo.size) > SMALL_PHOTO_PX:
            raise
        face = detector.largest(photo, what, upsample=2)  # small photo: look for small faces too
    quad = ffhq_quad(face.landmarks)
    side = float(np.hypot(*(quad[3] - quad[0])))
    if side < MIN_FACE_PX:
        raise InsetganError(f"the face in {what} is too small to align ({side:.0f} px; need at least "
                         f"{MIN_FACE_PX} px): use a larger or closer photo")
    return align_ffhq(photo, face.landmarks, size), face.landmarks


def person_crop(photo: Image.Image, height: int, width: int, mask: Image.Image | None = None,
                detector: LandmarkDetector | None = None) -> tuple[Image.Image, Image.Image | None]:
    """A person-centred crop of ``photo`` at the ``height``:``width`` aspect, resized to that size.

    Centred on the mask's bounding box (non-zero = person) when a mask is given, else on the
    largest detected face horizontally (full photo height), else on the photo centre. Parts of
    the window outside the photo are filled by reflection. Returns (crop, cropped mask or None).
    """
    W, H = photo.size
    if mask is not None:
        if mask.size != photo.size:
            raise InsetganError(f"the mask is {mask.width}x{mask.height} but the photo is {W}x{H}")
        m = np.asarray(mask.convert("L")) > 0
        if not m.any():
            raise InsetganError("the mask is empty (no person pixels)")
        ys, xs = np.nonzero(m)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        need_h = max((y1 - y0) * 1.05, (x1 - x0) * 1.05 * height / width)
    else:
        faces = []
        if detector is not None:
            faces = detector.faces(photo)
        cx = (faces[0].rect[0] + faces[0].rect[2]) / 2 if faces else W / 2
        cy, need_h = H / 2, float(H)
    win_h = need_h
    win_w = win_h * width / height
    left, top = int(round(cx - win_w / 2)), int(round(cy - win_h / 2))
    box = (left, top, left + int(round(win_w)), top + int(round(win_h)))
    crop = reflect_crop(photo, box).resize((width, height), Image.LANCZOS)
    mcrop = None
    if mask is not None:
        mcrop = reflect_crop(mask.convert("L"), box, fill_zero=True).resize((width, height), Image.BILINEAR)
    return crop, mcrop


def _reflect_index(start: int, stop: int, size: int) -> np.ndarray:
    """Indices ``start..stop-1`` folded into ``0..size-1`` by mirror reflection (any distance outside)."""
    idx = np.arange(start, stop) % (2 * size)
    return np.where(idx >= size, 2 * size - 1 - idx, idx)


def reflect_crop(img: Image.Image, box: tuple[int, int, int, int], fill_zero: bool = False) -> Image.Image:
    """Crop ``box`` (x0, y0, x1, y1; may extend outside) with mirror padding, or zeros (for masks)."""
    arr = np.asarray(img)
    H, W = arr.shape[:2]
    x0, y0, x1, y1 = box
    out = arr[_reflect_index(y0, y1, H)][:, _reflect_index(x0, x1, W)]
    if fill_zero:
        ys, xs = np.arange(y0, y1), np.arange(x0, x1)
        inside = ((ys >= 0) & (ys < H))[:, None] & ((xs >= 0) & (xs < W))[None, :]
        out = np.where(inside.reshape(inside.shape + (1,) * (arr.ndim - 2)), out, 0).astype(arr.dtype)
    return Image.fromarray(np.ascontiguousarray(out))


def to_tensor(img: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """A PIL RGB image as [1, 3, H, W] in [-1, 1] (or a mode-L mask as [1, 1, H, W] in [0, 1])."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        return torch.from_numpy(arr / 255.0)[None, None].to(device)
    return ((torch.from_numpy(arr).permute(2, 0, 1)[None] - 127.5) / 127.5).to(device)


def photo_info(path: str, image: Image.Image) -> dict[str, Any]:
    """Report entry for an input photo: path, hash, size."""
    return {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "size": [image.height, image.width]}


def load_targets(paths: list[str], G: Generator, align: bool, device: torch.device
                 ) -> tuple[torch.Tensor, list[Image.Image], list[dict[str, Any]]]:
    """Photos as generator targets [B, 3, H, W]: FFHQ-aligned faces (``align``) or crops at the network's aspect.

    Also returns the faces aligned at 256 px (for identity losses and the dlib metric; empty
    without ``align``) and the report entries of the photos.
    """
    _, H, W = G.img_shape
    detector = None
    if align:
        if H != W:
            raise InsetganError(f"--align needs a square face network (this one is {H}x{W}); use --no-align")
        detector = LandmarkDetector()
    targets, metric_imgs, infos = [], [], []
    for path in paths:
        photo = load_photo(path)
        if align:
            aligned, lm = align_face(photo, H, path, detector)
            metric_imgs.append(align_ffhq(photo, lm, 256))
        else:
            aligned, _ = person_crop(photo, H, W)
        targets.append(to_tensor(aligned, device))
        infos.append(photo_info(path, photo))
    return torch.cat(targets), metric_imgs, infos
