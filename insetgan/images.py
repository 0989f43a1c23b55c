"""The one image reader: every photo, mask, label map and dataset image goes through :func:`opened`.

The size is checked from the header before any pixel is decoded, so a decompression bomb costs
nothing and ends in a one-line :class:`ImageTooLargeError`; any decoder failure on damaged data
is a one-line :class:`InsetganError`. :func:`to_rgb` converts every PIL mode to 8-bit RGB with
the right scaling: 16-bit data (modes ``I;16*`` and ``I``) by 1/257, float data (mode ``F``)
taken as [0, 1], transparency composited on white.
"""
from __future__ import annotations

import contextlib
import io
import struct
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from insetgan.errors import InsetganError, error_line

MAX_PIXELS = 64_000_000  # refuse larger images before decoding them (a 20000×20000 RGB image needs 1.2 GB)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PNG/PGM 16-bit grey; "I" holds the same range
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "P")
LABEL_MODES = ("L", "P", "I", "I;16")  # label maps read as indices without conversion
# What Pillow's decoders raise on damaged data (its own fuzzers accept the same set).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
                 ZeroDivisionError, OverflowError, MemoryError)


class ImageTooLargeError(InsetganError):
    """An image whose header declares more pixels than the limit (a decompression bomb or an unscaled scan)."""


def _too_large(what: str, w: int, h: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"{what} is too large ({w}x{h} = {w * h / 1e6:.0f} MP; the limit is "
                              f"{max_pixels / 1e6:.0f} MP): downscale it first")


@contextlib.contextmanager
def opened(source: str | Path | bytes, what: str, max_pixels: int = MAX_PIXELS) -> Iterator[Image.Image]:
    """An image (a file path or encoded bytes) opened lazily after its header size was checked.

    Decoding inside the ``with`` block is covered too: damaged pixel data raises a one-line
    :class:`InsetganError` naming ``what``.
    """
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise InsetganError(f"{what} not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is stricter
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise _too_large(what, w, h, max_pixels)
                if w == 0 or h == 0:
                    raise InsetganError(f"{what} is empty ({w}x{h})")
                yield im
    except InsetganError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"{what} is too large (the limit is {max_pixels / 1e6:.0f} MP): "
                                 "downscale it first") from None
    except DECODE_ERRORS as exc:
        raise InsetganError(f"cannot read {what}: {error_line(exc)}") from None


def sixteen_bit_to_8(arr: np.ndarray) -> np.ndarray:
    """16-bit values (clipped to 0..65535) as uint8, rounded: ``round(v / 257)`` so 65535 → 255."""
    v = np.clip(np.asarray(arr, dtype=np.int64), 0, 65535)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` (any PIL mode) as 8-bit RGB: 16-bit grey scaled by 1/257, float grey as [0, 1], alpha over white."""
    if im.mode in SIXTEEN_BIT_MODES:
        return Image.fromarray(sixteen_bit_to_8(np.asarray(im)), "L").convert("RGB")
    if im.mode == "F":
        grey = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        return Image.fromarray(np.round(np.clip(grey, 0.0, 1.0) * 255).astype(np.uint8), "L").convert("RGB")
    if im.mode in ALPHA_MODES:
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im.convert("RGB")


def open_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An image file as 8-bit RGB with its EXIF orientation applied (see :func:`to_rgb` for the modes).

    The size is checked from the header before any pixel is decoded: images over ``max_pixels``
    are refused with a one-line :class:`ImageTooLargeError` instead of exhausting memory.
    """
    if not Path(path).is_file():
        raise InsetganError(f"image not found: {path}")
    with opened(path, f"image {path}", max_pixels) as im:
        return to_rgb(ImageOps.exif_transpose(im))


def decode_rgb(data: bytes, what: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes as an HWC uint8 RGB array (EXIF orientation applied)."""
    with opened(data, what, max_pixels) as im:
        return np.asarray(to_rgb(ImageOps.exif_transpose(im)))


def image_size(source: str | Path | bytes, what: str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` from the header alone (nothing is decoded)."""
    with opened(source, what, max_pixels) as im:
        return im.size


def read_label_map(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A label map as [H, W] indices (modes L, P, I, I;16 as stored; other modes converted to L)."""
    with opened(path, f"label map {path}", max_pixels) as im:
        return np.asarray(im if im.mode in LABEL_MODES else im.convert("L"))
