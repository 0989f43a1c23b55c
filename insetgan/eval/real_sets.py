"""The real side of the quality metrics: a dataset's image names, its reference and floor sets, their
images, its face prior and the cache key of its real sets (protocols in :mod:`insetgan.eval.model_quality`).
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from insetgan.data.dataset import IMAGE_EXTS, dataset_meta
from insetgan.errors import InsetganError
from insetgan.images import decode_rgb
from insetgan.method.boxes import FACE_PRIOR


def _image_source(dataset_path: str | Path) -> tuple[Path, list[str]]:
    """The folder or zip holding a dataset's images and their sorted names (as ``load_dataset`` reads them)."""
    p = Path(dataset_path)
    if p.is_file() and p.suffix == ".zip":
        with zipfile.ZipFile(p) as zf:
            return p, sorted(n for n in zf.namelist() if n.lower().endswith(IMAGE_EXTS))
    if p.is_dir():
        names = sorted(f.name for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        zips = sorted(p.glob("*.zip"))
        if not names and zips:
            return _image_source(zips[0])
        return p, names
    raise InsetganError(f"dataset not found: {dataset_path} (a folder of images or a .zip)")


def real_split(dataset_path: str | Path, n: int = 300) -> tuple[list[str], list[str]]:
    """Names of the reference set and of the floor set: sorted names, ``RandomState(0).permutation``, n + n."""
    _, names = _image_source(dataset_path)
    if len(names) < 2 * n:
        raise InsetganError(f"dataset {dataset_path} has {len(names)} images; the real sets need {2 * n}")
    order = np.random.RandomState(0).permutation(len(names))
    return [names[i] for i in order[:n]], [names[i] for i in order[n:2 * n]]


def read_images(dataset_path: str | Path, names: Sequence[str]) -> list[np.ndarray]:
    """The named images of a dataset (folder or zip) as HWC uint8 RGB arrays."""
    src, _ = _image_source(dataset_path)
    if src.is_dir():
        blobs = [(src / name).read_bytes() for name in names]
    else:
        with zipfile.ZipFile(src) as zf:
            blobs = [zf.read(name) for name in names]
    return [decode_rgb(b, f"dataset image {name}") for name, b in zip(names, blobs)]


def dataset_face_prior(dataset_path: str | Path) -> tuple[float, float, float, float]:
    """The face prior (relative x, y, w, h) in a body dataset's ``dataset.json`` (default: the built-in one)."""
    priors = dataset_meta(dataset_path).get("priors")
    box = priors.get("face") if isinstance(priors, dict) else None
    try:
        return tuple(float(v) for v in box[:4]) if box else FACE_PRIOR
    except (TypeError, ValueError):  # a malformed prior: the built-in one
        return FACE_PRIOR


def dataset_key(dataset_path: str | Path, n: int) -> str:
    """Cache key of a dataset's real sets: a hash of its sorted image names and the set size."""
    _, names = _image_source(dataset_path)
    return hashlib.sha256(("\n".join(names) + f"\n#n={n}").encode()).hexdigest()[:16]
