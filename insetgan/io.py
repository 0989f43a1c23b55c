"""File output helpers: atomic writes, image conversion, grids and argument parsing."""
from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from insetgan import __version__
from insetgan.errors import InsetganError
from insetgan.limits import MAX_SEED as MAX_SEED
from insetgan.limits import short_repr

# The atomic writers live with the lowest layer (networks/ writes checkpoints too); re-exported here.
from insetgan.networks.files import atomic_write_bytes as atomic_write_bytes
from insetgan.networks.files import plain_file_mode as plain_file_mode


def encode(writer: Callable[[io.BytesIO], Any]) -> bytes:
    """Run ``writer`` on an in-memory buffer and return the bytes it wrote."""
    buf = io.BytesIO()
    writer(buf)
    return buf.getvalue()


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """Convert a [C, H, W] image in [-1, 1] to HWC uint8 (``img*127.5 + 128`` clamped, truncated)."""
    arr = (img.detach().to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return arr.permute(1, 2, 0).cpu().numpy()


def pil_image(arr: np.ndarray) -> Image.Image:
    """A PIL image from an HWC uint8 array with 1, 3 or 4 channels."""
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], "L")
    if arr.shape[2] in (3, 4):
        return Image.fromarray(arr, "RGB" if arr.shape[2] == 3 else "RGBA")
    raise InsetganError(f"cannot save an image with {arr.shape[2]} channels")


def png_bytes(arr: np.ndarray) -> bytes:
    """PNG encoding of an HWC uint8 array."""
    return encode(lambda buf: pil_image(arr).save(buf, format="PNG"))


def grid(images: Sequence[np.ndarray], cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile equally sized HWC uint8 images into one grid (near-square by default)."""
    if not images:
        raise InsetganError("no images for the grid")
    n = len(images)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w, c = images[0].shape
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        out[r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = im
    return out


def json_bytes(obj: Any) -> bytes:
    """Indented JSON encoding with a trailing newline."""
    return (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode()


def npy_bytes(arr: np.ndarray) -> bytes:
    """``.npy`` encoding of an array."""
    return encode(lambda buf: np.save(buf, arr, allow_pickle=False))


_RANGE = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
MAX_SEEDS = 100_000  # the most values one range text may list


def parse_range(text: str, what: str = "seed", max_count: int = MAX_SEEDS) -> list[int]:
    """Parse ``'0-3,7'`` into ``[0, 1, 2, 3, 7]`` (values in 0..MAX_SEED, ascending ranges, at most ``max_count``)."""
    values: list[int] = []
    for part in str(text).split(","):
        m = _RANGE.match(part.strip())
        if not m:
            raise InsetganError(f"invalid {what} range {short_repr(str(text))}: expected e.g. 0-3,7")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise InsetganError(f"invalid {what} range {part.strip()!r}: end before start")
        if hi > MAX_SEED:
            raise InsetganError(f"{what} {hi} is out of range (0..{MAX_SEED})")
        if len(values) + hi - lo + 1 > max_count:
            raise InsetganError(f"{what} range {short_repr(str(text))} lists more than {max_count} values")
        values.extend(range(lo, hi + 1))
    return values


def versions() -> dict[str, str]:
    """Versions recorded in every report."""
    return {"insetgan": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
