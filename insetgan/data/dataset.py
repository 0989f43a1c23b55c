"""Reading a prepared training set (a folder of images or a .zip, with its ``dataset.json``).

Every image header is checked (pixel limit, one common size, a side train accepts) before any
image is decoded, archive members are size-checked before they are read, and every failure is
a one-line :class:`InsetganError`: a damaged archive, an undecodable image, a decompression
bomb, a malformed ``dataset.json``.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from insetgan.configfile import as_mapping, decode_text, parse_json, read_mapping
from insetgan.data.prepare import MAX_SIDE
from insetgan.errors import InsetganError, error_line
from insetgan.images import decode_rgb, image_size

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
MAX_IMAGE_BYTES = 256 << 20  # one encoded image (a 4096² PNG of noise is 50 MB)
MAX_META_BYTES = 256 << 20  # dataset.json holds one record per image
ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError)

Blobs = list[tuple[str, bytes]]


def _zip_meta(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    """An open archive's ``dataset.json`` (size-checked before it is read), or ``{}``."""
    if "dataset.json" not in zf.namelist():
        return {}
    info = zf.getinfo("dataset.json")
    if info.file_size > MAX_META_BYTES:
        raise InsetganError(f"{path}: dataset.json is larger than {MAX_META_BYTES >> 20} MiB")
    what = f"{path}: dataset.json"
    return as_mapping(parse_json(decode_text(zf.read(info), what), what), what)


def dataset_meta(path: str | Path) -> dict[str, Any]:
    """Only the ``dataset.json`` of a dataset folder or .zip, found and bounded as :func:`dataset_contents` does."""
    p = Path(path)
    if p.is_file() and p.suffix == ".zip":
        try:
            with zipfile.ZipFile(p) as zf:
                meta = _zip_meta(zf, p)
        except InsetganError:
            raise
        except ARCHIVE_ERRORS as exc:
            raise InsetganError(f"cannot read dataset archive {p}: {error_line(exc)}") from None
        if not meta and (p.parent / "dataset.json").is_file():
            meta = read_mapping(p.parent / "dataset.json", "dataset file", MAX_META_BYTES)
        return meta
    if not p.is_dir():
        raise InsetganError(f"dataset not found: {path} (a folder of images or a .zip)")
    has_images = any(f.suffix.lower() in IMAGE_EXTS and f.is_file() for f in p.iterdir())
    zips = sorted(p.glob("*.zip"))
    if not has_images and zips:
        return dataset_meta(zips[0])
    return read_mapping(p / "dataset.json", "dataset file", MAX_META_BYTES) if (p / "dataset.json").is_file() else {}


def _zip_contents(path: Path) -> tuple[Blobs, dict[str, Any]]:
    """The images (name, bytes) of an archive in name order and its ``dataset.json`` (or ``{}``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = sorted((i for i in zf.infolist() if i.filename.lower().endswith(IMAGE_EXTS)),
                           key=lambda i: i.filename)
            for info in infos:
                if info.file_size > MAX_IMAGE_BYTES:
                    raise InsetganError(f"{path}: {info.filename} is larger than {MAX_IMAGE_BYTES >> 20} MiB")
            blobs = [(i.filename, zf.read(i)) for i in infos]
            meta = _zip_meta(zf, path)
    except InsetganError:
        raise
    except ARCHIVE_ERRORS as exc:
        raise InsetganError(f"cannot read dataset archive {path}: {error_line(exc)}") from None
    return blobs, meta


def _folder_contents(path: Path) -> tuple[Blobs, dict[str, Any]]:
    """The images (name, bytes) of a folder in name order and its ``dataset.json`` (or ``{}``)."""
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file())
    for f in files:
        if f.stat().st_size > MAX_IMAGE_BYTES:
            raise InsetganError(f"{f} is larger than {MAX_IMAGE_BYTES >> 20} MiB")
    meta_path = path / "dataset.json"
    meta = read_mapping(meta_path, "dataset file", MAX_META_BYTES) if meta_path.is_file() else {}
    return [(f.name, f.read_bytes()) for f in files], meta


def dataset_contents(path: str | Path) -> tuple[Blobs, dict[str, Any]]:
    """The encoded images (name, bytes) of a dataset folder or .zip, in name order, and its ``dataset.json``.

    A folder without images but with .zip archives is read from its first archive; an archive
    without ``dataset.json`` takes the one beside it.
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".zip":
        blobs, meta = _zip_contents(p)
        if not meta and (p.parent / "dataset.json").is_file():
            meta = read_mapping(p.parent / "dataset.json", "dataset file", MAX_META_BYTES)
    elif p.is_dir():
        blobs, meta = _folder_contents(p)
        zips = sorted(p.glob("*.zip"))
        if not blobs and zips:
            return dataset_contents(zips[0])
    else:
        raise InsetganError(f"dataset not found: {path} (a folder of images or a .zip)")
    if not blobs:
        raise InsetganError(f"no images in {path}")
    return blobs, meta


def check_dataset_size(height: int, width: int, path: str | Path) -> None:
    """A one-line error unless the images are what train accepts: power-of-two height, width = height or height/2."""
    if not 8 <= height <= MAX_SIDE or height & (height - 1) or width not in (height, height // 2):
        raise InsetganError(f"dataset images in {path} are {height}x{width}: need a power-of-two height in "
                            f"[8, {MAX_SIDE}] and width = height or height/2")


def read_dataset(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """All images of a dataset as uint8 [N, H, W, 3] and its ``dataset.json`` (or ``{}``).

    The sizes come from the headers first (nothing is decoded until every image is known to fit).
    """
    blobs, meta = dataset_contents(path)
    sizes = {name: image_size(data, f"dataset image {name}") for name, data in blobs}
    distinct = sorted(set(sizes.values()))
    if len(distinct) != 1:
        raise InsetganError(f"dataset images differ in size: {[f'{h}x{w}' for w, h in distinct[:3]]}")
    W, H = distinct[0]
    check_dataset_size(H, W, path)
    images = np.empty((len(blobs), H, W, 3), dtype=np.uint8)
    for i, (name, data) in enumerate(blobs):
        arr = decode_rgb(data, f"dataset image {name}")
        if arr.shape != images.shape[1:]:
            raise InsetganError(f"dataset image {name} is {arr.shape[0]}x{arr.shape[1]} after its EXIF "
                                f"orientation; the others are {H}x{W}")
        images[i] = arr
    return images, meta
