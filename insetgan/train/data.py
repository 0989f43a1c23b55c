"""The training set in memory (:class:`ImageSet`) and its loader."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from insetgan.data.dataset import read_dataset


@dataclass
class ImageSet:
    """A prepared dataset in memory: uint8 images [N, C, H, W] and its ``dataset.json`` (or {})."""

    images: torch.Tensor
    meta: dict[str, Any]

    @property
    def square(self) -> bool:
        """True for square images, False for 2:1 portrait canvases."""
        return self.images.shape[-1] == self.images.shape[-2]


def load_dataset(path: str | Path) -> ImageSet:
    """Load a folder of PNG/JPEG images (or a .zip of them) with its optional ``dataset.json``.

    Read by :func:`insetgan.data.dataset.read_dataset`: headers checked before decoding, one-line errors.
    """
    images, meta = read_dataset(path)
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), meta)
