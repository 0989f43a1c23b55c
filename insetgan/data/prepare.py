"""Training sets from photos: person-centred full-body crops, FFHQ-aligned faces and shoe crops.

Three preparations, each writing numbered PNGs (``00000.png``, … in sorted source order) to a
folder or to ``OUT/images.zip``, plus ``OUT/dataset.json`` (settings, counts, skip reasons,
per-image records):

* :func:`prepare_bodies`: crops at the canvas aspect centred on the person (label map bounding
  box, else the detected face, else the photo centre), mirror-padded where the window leaves the
  photo. Each record holds the face box and the shoe boxes in canvas pixels; their medians are
  written as relative ``(x, y, w, h)`` region priors (comparable to
  :data:`insetgan.method.boxes.FACE_PRIOR` / :data:`insetgan.method.boxes.SHOES_PRIOR`).
* :func:`prepare_faces`: FFHQ-aligned faces (dlib on an upscaled copy, landmarks mapped back).
* :func:`prepare_shoes`: square crops around each shoe of the footwear labels.

Face boxes, crop windows and their coordinates: :mod:`insetgan.data.windows`; label maps and shoe
components: :mod:`insetgan.data.labels`.
"""
from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from insetgan import io as iio
from insetgan.data.labels import XYWH, LabelSet, load_label_map, shoe_components
from insetgan.data.windows import (face_box_from_labels, face_box_from_landmarks, find_landmarks, median_box,
                                   person_window, to_canvas)
from insetgan.errors import InsetganError
from insetgan.images import ImageTooLargeError, open_rgb
from insetgan.inversion.align import LandmarkDetector, align_ffhq, ffhq_quad
from insetgan.inversion.photos import reflect_crop
from insetgan.limits import Range, check_ranges, ranged
from insetgan.method.boxes import clamp_box
from insetgan.method.regions import Box
from insetgan.progress import Progress

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MAX_SIDE = 4096  # the largest training image side (prepare writes it, train reads it)
LIMIT = Range(1, 10**9, integer=True, optional=True)


def check_side(value: object, what: str) -> None:
    """A one-line error unless ``value`` is a power of two in [8, MAX_SIDE] (the sides train accepts)."""
    Range(8, MAX_SIDE, integer=True).check(value, what)
    if value & (value - 1):  # type: ignore[operator]
        raise InsetganError(f"{what} must be a power of two (8, 16, ..., {MAX_SIDE}), got {value}")


@dataclass(frozen=True)
class BodiesConfig:
    """Full-body crops: canvas size, detector upscaling, margin around the person, source limit.

    The canvas is what ``train`` accepts: a power-of-two height, width = height or height/2.
    """

    height: int = 256
    width: int = 128
    upscale: float = ranged(4.0, 1.0, 16.0)
    margin: float = ranged(1.05, 1.0, 4.0)
    limit: int | None = None

    def __post_init__(self) -> None:
        check_side(self.height, "--height")
        check_side(self.width, "--width")
        if self.width not in (self.height, self.height // 2):
            raise InsetganError(f"--width must be --height or half of it (what train accepts), got "
                                f"{self.height}x{self.width}")
        check_ranges(self)
        LIMIT.check(self.limit, "--limit")


@dataclass(frozen=True)
class FacesConfig:
    """FFHQ-aligned faces: output size, smallest FFHQ quad side (source px), detector image short side."""

    size: int = 64
    min_face: float = ranged(24.0, 0.0, 100_000.0)
    min_side: int = ranged(512, 64, MAX_SIDE, integer=True)
    limit: int | None = None

    def __post_init__(self) -> None:
        check_side(self.size, "--size")
        check_ranges(self, "--", dashes=True)
        LIMIT.check(self.limit, "--limit")


@dataclass(frozen=True)
class ShoesConfig:
    """Shoe crops: output size, padding (fraction of the side on each edge), smallest component side (px)."""

    size: int = 32
    pad: float = ranged(0.25, 0.0, 4.0)
    min_px: int = ranged(6, 1, 100_000, integer=True)
    limit: int | None = None

    def __post_init__(self) -> None:
        check_side(self.size, "--size")
        check_ranges(self, "--", dashes=True)
        LIMIT.check(self.limit, "--limit")


# ---------------------------------------------------------------------------- sources and record helpers

def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files of ``folder`` sorted by name (the first ``limit``); one-line errors for a missing or empty folder."""
    path = Path(folder)
    if not path.is_dir():
        raise InsetganError(f"source folder not found: {folder}")
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
                    and p.is_file()), key=lambda p: p.name)
    if not files:
        raise InsetganError(f"no images ({', '.join(IMAGE_EXTS)}) in {folder}")
    return files[:limit or None]


def _clip(box: XYWH, height: int, width: int) -> XYWH | None:
    x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
    x1, y1 = min(box[0] + box[2], float(width)), min(box[1] + box[3], float(height))
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _r(box: Sequence[float]) -> list[float]:
    return [round(float(v), 2) for v in box]


# ---------------------------------------------------------------------------- output

class DatasetWriter:
    """Numbered PNGs (``00000.png``, …) in ``out`` or in ``out/images.zip``, then ``out/dataset.json``.

    Every file is written atomically; numbered PNGs (and ``images.zip``) left by an earlier run that
    are not part of this one are removed by :meth:`finish`, so re-running overwrites cleanly.
    """

    ARCHIVE = "images.zip"

    def __init__(self, out: str | Path, zip_output: bool = False, sources: Iterable[str | Path] = ()) -> None:
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise InsetganError(f"--out {out} exists and is not a directory")
        if any(self.out.resolve() == Path(s).resolve() for s in sources):
            raise InsetganError(f"--out {out} is a source folder: choose another output folder")
        self.out.mkdir(parents=True, exist_ok=True)
        self.count, self._zip, self._tmp = 0, None, None
        if zip_output:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.ARCHIVE}.", suffix=".tmp", dir=self.out)
            os.fchmod(fd, iio.plain_file_mode())
            os.close(fd)
            self._tmp = Path(tmp)
            self._zip = zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_STORED)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._zip is not None:  # finish() was not reached
            self._zip.close()
            self._tmp.unlink(missing_ok=True)

    def add(self, image: np.ndarray) -> str:
        """Store one HWC uint8 image; returns its file name."""
        name = f"{self.count:05d}.png"
        data = iio.png_bytes(image)
        if self._zip is not None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed time: byte-identical archives
            info.external_attr = 0o644 << 16
            self._zip.writestr(info, data)
        else:
            iio.atomic_write_bytes(self.out / name, data)
        self.count += 1
        return name

    def finish(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Close the archive, remove stale outputs, write ``dataset.json``; returns ``meta`` with the output layout."""
        meta = {**meta, "output": self.ARCHIVE if self._zip is not None else "png folder"}
        keep = set() if self._zip is not None else {f"{i:05d}.png" for i in range(self.count)}
        for p in self.out.iterdir():
            if p.suffix == ".png" and p.stem.isdigit() and len(p.stem) >= 5 and p.name not in keep:
                p.unlink()
        if self._zip is not None:
            self._zip.close()
            self._zip = None
            os.replace(self._tmp, self.out / self.ARCHIVE)
        else:
            (self.out / self.ARCHIVE).unlink(missing_ok=True)
        iio.atomic_write_bytes(self.out / "dataset.json", iio.json_bytes(meta))
        return meta


def _open(path: Path, skipped: Counter, skips: list[dict[str, str]]) -> Image.Image | None:
    """The photo, or None (recorded as ``unreadable``) when it cannot be decoded; over the pixel limit: an error."""
    try:
        return open_rgb(path)
    except ImageTooLargeError:
        raise
    except InsetganError as exc:
        log.warning("skipping %s: %s", path.name, exc)
        skipped["unreadable"] += 1
        skips.append({"source": path.name, "reason": "unreadable"})
        return None


def _skip(name: str, reason: str, skipped: Counter, skips: list[dict[str, str]]) -> None:
    skipped[reason] += 1
    skips.append({"source": name, "reason": reason})


def _detector(required: bool) -> LandmarkDetector | None:
    try:
        return LandmarkDetector()
    except ValueError as exc:
        if required:
            raise
        log.warning("face detection is off: %s", exc)
        return None


def _counts(n: int, written: int, skipped: Counter, **extra: Any) -> dict[str, Any]:
    return {"sources": n, "written": written, "skipped": dict(sorted(skipped.items())), **extra}


# ---------------------------------------------------------------------------- the three preparations

def body_sample(photo: Image.Image, labels: np.ndarray | None, lset: LabelSet | None,
                detector: LandmarkDetector | None, cfg: BodiesConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """One body crop (HWC uint8) and its record: window, what it is centred on, face and shoe boxes (canvas px)."""
    H, W = cfg.height, cfg.width
    lm = find_landmarks(photo, detector, cfg.upscale) if detector is not None else None
    face_x = None if lm is None else float(ffhq_quad(lm)[:, 0].mean()) + 0.5
    window, how = person_window(photo.size, H, W, labels, face_x, cfg.margin)
    crop = reflect_crop(photo, window).resize((W, H), Image.LANCZOS)
    face, face_from = (face_box_from_landmarks(lm), "dlib") if lm is not None else (None, "none")
    if face is None and labels is not None and lset is not None:
        face = face_box_from_labels(labels, lset.head)
        face_from = "none" if face is None else "labels"
    if face is not None:
        face = clamp_box(Box(*to_canvas((face.x, face.y, face.w, face.h), window, H, W)), H, W)
    shoes = []
    for side, comp in shoe_components(labels, lset.footwear) if labels is not None and lset is not None else ():
        box = _clip(to_canvas(comp.xywh, window, H, W), H, W)
        if box is not None:
            shoes.append({"side": side, "box": _r(box)})
    union = None
    if shoes:
        b = np.array([s["box"] for s in shoes])
        x0, y0 = b[:, 0].min(), b[:, 1].min()
        union = _r((x0, y0, (b[:, 0] + b[:, 2]).max() - x0, (b[:, 1] + b[:, 3]).max() - y0))
    return np.asarray(crop), {"window": list(window), "centred_on": how, "face_from": face_from,
                              "face": None if face is None else _r((face.x, face.y, face.w, face.h)),
                              "shoes": shoes, "shoes_union": union}


def prepare_bodies(src: str | Path, out: str | Path, cfg: BodiesConfig = BodiesConfig(),
                   labels: str | Path | None = None, zip_output: bool = False, progress: Progress | None = None,
                   detector: LandmarkDetector | None = None) -> dict[str, Any]:
    """Person-centred full-body crops with face and shoe boxes and the median region priors; returns dataset.json.

    Without ``labels`` (or a label map for a photo) crops centre on the face, else the photo centre,
    and records have no shoe boxes. dlib missing: a warning, and no face detection.
    """
    files = list_images(src, cfg.limit)
    if labels is not None and not Path(labels).is_dir():
        raise InsetganError(f"labels folder not found: {labels}")
    lset = LabelSet.load(labels) if labels is not None else None
    detector = detector or _detector(required=False)
    H, W = cfg.height, cfg.width
    records: list[dict[str, Any]] = []
    skipped, skips = Counter(), []
    with DatasetWriter(out, zip_output, [src, *([labels] if labels else [])]) as writer:
        for i, path in enumerate(files):
            photo = _open(path, skipped, skips)
            if photo is not None:
                crop, rec = body_sample(photo, load_label_map(labels, path.stem, photo.size), lset, detector, cfg)
                records.append({"file": writer.add(crop), "source": path.name, **rec})
            if progress:
                progress(i + 1, len(files), {"written": float(writer.count)})
        faces = [r["face"] for r in records if r["face"]]
        unions = [r["shoes_union"] for r in records if r["shoes_union"]]
        tally = {k: dict(sorted(Counter(r[k] for r in records).items())) for k in ("centred_on", "face_from")}
        meta = {"kind": "bodies", "height": H, "width": W, "source": str(Path(src).resolve()),
                "labels": None if labels is None else str(Path(labels).resolve()),
                "label_names": None if lset is None else lset.source, "config": asdict(cfg),
                "counts": _counts(len(files), writer.count, skipped, **tally),
                "priors": {"face": median_box(faces, H, W), "shoes": median_box(unions, H, W),
                           "from": {"face": len(faces), "shoes": len(unions)}, "format": "relative x, y, w, h"},
                "skipped": skips, "records": records}
        return writer.finish(meta)


def prepare_faces(srcs: Sequence[str | Path], out: str | Path, cfg: FacesConfig = FacesConfig(),
                  zip_output: bool = False, progress: Progress | None = None,
                  detector: LandmarkDetector | None = None) -> dict[str, Any]:
    """FFHQ-aligned ``cfg.size``² faces of the photos in ``srcs`` (folder order, then by name); returns dataset.json.

    Photos whose shorter side is under ``cfg.min_side`` are upscaled for detection only; the crop
    is taken from the original photo. Skip reasons: ``unreadable``, ``no_face``, ``too_small``
    (FFHQ quad side under ``cfg.min_face`` source pixels).
    """
    if not srcs:
        raise InsetganError("give at least one source folder")
    lists = [list_images(s) for s in srcs]
    files = [(k, p) for k, lst in enumerate(lists) for p in lst][:cfg.limit or None]
    detector = detector or _detector(required=True)
    records, skipped, skips = [], Counter(), []
    with DatasetWriter(out, zip_output, srcs) as writer:
        for i, (k, path) in enumerate(files):
            photo = _open(path, skipped, skips)
            lm = None
            if photo is not None:
                lm = find_landmarks(photo, detector, max(1.0, cfg.min_side / min(photo.size)))
                if lm is None:
                    _skip(path.name, "no_face", skipped, skips)
            if lm is not None:
                quad = ffhq_quad(lm)
                side = float(np.hypot(*(quad[3] - quad[0])))
                if side < cfg.min_face:
                    _skip(path.name, "too_small", skipped, skips)
                else:
                    img = align_ffhq(photo, lm, cfg.size)
                    records.append({"file": writer.add(np.asarray(img)), "source": path.name, "src": k,
                                    "quad": [_r(p) for p in quad + 0.5], "face_px": round(side, 2)})
            if progress:
                progress(i + 1, len(files), {"written": float(writer.count)})
        meta = {"kind": "faces", "size": cfg.size, "sources": [str(Path(s).resolve()) for s in srcs],
                "config": asdict(cfg), "counts": _counts(len(files), writer.count, skipped),
                "skipped": skips, "records": records}
        return writer.finish(meta)


def prepare_shoes(src: str | Path, labels: str | Path, out: str | Path, cfg: ShoesConfig = ShoesConfig(),
                  zip_output: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Square ``cfg.size``² crops around each shoe (footwear label components, left then right); returns dataset.json.

    The square's side is the component's longer side times ``1 + 2·pad`` (a margin of ``pad``·side
    on every edge), centred on the component; outside the photo it is mirror-padded. Skip reasons:
    ``unreadable``, ``no_labels`` (no usable label map), ``no_shoes``.
    """
    files = list_images(src, cfg.limit)
    if not Path(labels).is_dir():
        raise InsetganError(f"labels folder not found: {labels}")
    lset = LabelSet.load(labels)
    records, skipped, skips = [], Counter(), []
    with DatasetWriter(out, zip_output, [src, labels]) as writer:
        for i, path in enumerate(files):
            photo = _open(path, skipped, skips)
            lab = None if photo is None else load_label_map(labels, path.stem, photo.size)
            if photo is not None and lab is None:
                _skip(path.name, "no_labels", skipped, skips)
            shoes = [] if lab is None else shoe_components(lab, lset.footwear, cfg.min_px)
            if lab is not None and not shoes:
                _skip(path.name, "no_shoes", skipped, skips)
            for side, c in shoes:
                s = max(1, int(round(max(c.x1 - c.x0, c.y1 - c.y0) * (1 + 2 * cfg.pad))))
                x0, y0 = int(round((c.x0 + c.x1 - s) / 2)), int(round((c.y0 + c.y1 - s) / 2))
                crop = reflect_crop(photo, (x0, y0, x0 + s, y0 + s)).resize((cfg.size, cfg.size), Image.LANCZOS)
                records.append({"file": writer.add(np.asarray(crop)), "source": path.name, "side": side,
                                "box": _r(c.xywh), "crop": [x0, y0, x0 + s, y0 + s]})
            if progress:
                progress(i + 1, len(files), {"written": float(writer.count)})
        meta = {"kind": "shoes", "size": cfg.size, "source": str(Path(src).resolve()),
                "labels": str(Path(labels).resolve()), "label_names": lset.source, "config": asdict(cfg),
                "counts": _counts(len(files), writer.count, skipped), "skipped": skips, "records": records}
        return writer.finish(meta)
