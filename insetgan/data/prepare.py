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

import logging
import math
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
from insetgan.inversion.align import LandmarkDetector, ffhq_quad, align_ffhq
from insetgan.images import MAX_PIXELS, ImageTooLargeError, open_rgb, read_label_map
from insetgan.method.boxes import clamp_box, ffhq_box
from insetgan.inversion.photos import reflect_crop
from insetgan.method.regions import Box
from insetgan.errors import InsetganError
from insetgan.limits import Range, check_ranges, ranged
from insetgan.progress import Progress

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FOOTWEAR_NAMES = ("boots", "clogs", "flats", "heels", "loafers", "pumps", "sandals", "shoes", "sneakers", "wedges")
HEAD_NAMES = ("hair", "skin", "hat", "glasses", "sunglasses")
# ccp indices, used when no label_names.txt is found next to the label maps.
DEFAULT_LABELS = {"boots": 7, "clogs": 12, "flats": 16, "heels": 21, "loafers": 28, "pumps": 32, "sandals": 36,
                  "shoes": 39, "sneakers": 43, "wedges": 58, "hair": 19, "skin": 41, "hat": 20, "glasses": 17,
                  "sunglasses": 47}
HEAD_SIDE, HEAD_CENTRE, HEAD_BAND = 0.143, 0.081, 0.1  # label-map face box, in units of the person height
DETECT_RETRY_PX = 1024  # detector images up to this side are searched again with 2x detector upsampling
XYWH = tuple[float, float, float, float]


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


# ---------------------------------------------------------------------------- sources and labels

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


@dataclass(frozen=True)
class LabelSet:
    """Label indices of interest, from ``label_names.txt`` (index → name, one per line) next to the label maps."""

    footwear: tuple[int, ...]
    head: tuple[int, ...]
    source: str

    @classmethod
    def load(cls, labels_dir: str | Path) -> "LabelSet":
        """Read ``label_names.txt`` from ``labels_dir`` or its parent; the ccp indices when there is none."""
        for cand in (Path(labels_dir) / "label_names.txt", Path(labels_dir).parent / "label_names.txt"):
            if cand.is_file():
                names = {n.strip().lower(): i for i, n in enumerate(cand.read_text().splitlines()) if n.strip()}
                missing = [n for n in FOOTWEAR_NAMES if n not in names]
                if len(missing) == len(FOOTWEAR_NAMES):
                    raise InsetganError(f"{cand} names no footwear label ({', '.join(FOOTWEAR_NAMES)})")
                return cls(tuple(names[n] for n in FOOTWEAR_NAMES if n in names),
                           tuple(names[n] for n in HEAD_NAMES if n in names), str(cand.resolve()))
        log.warning("no label_names.txt found for %s; using the ccp label indices", labels_dir)
        return cls(tuple(DEFAULT_LABELS[n] for n in FOOTWEAR_NAMES), tuple(DEFAULT_LABELS[n] for n in HEAD_NAMES),
                   "ccp defaults")


def load_label_map(labels_dir: str | Path | None, stem: str, size: tuple[int, int]) -> np.ndarray | None:
    """The label map ``labels_dir/stem.png`` as [H, W] indices, or ``None`` when absent, unreadable or mis-sized.

    A label map over the pixel limit is an error (:class:`~insetgan.images.ImageTooLargeError`), not a skip.
    """
    if labels_dir is None:
        return None
    path = Path(labels_dir) / f"{stem}.png"
    if not path.is_file():
        return None
    try:
        arr = read_label_map(path)
    except ImageTooLargeError:
        raise
    except InsetganError as exc:
        log.warning("ignoring the label map: %s", exc)
        return None
    if arr.ndim != 2 or arr.shape[::-1] != tuple(size):
        log.warning("ignoring label map %s: %s does not match the photo's %dx%d", path, arr.shape, *size)
        return None
    return arr


# ---------------------------------------------------------------------------- connected components

@dataclass(frozen=True)
class Component:
    """A connected pixel region: bounding box ``[x0, x1) × [y0, y1)`` and pixel count."""

    x0: int
    y0: int
    x1: int
    y1: int
    pixels: int

    @property
    def xywh(self) -> XYWH:
        """Bounding box as ``(x, y, w, h)``."""
        return float(self.x0), float(self.y0), float(self.x1 - self.x0), float(self.y1 - self.y0)


def connected_components(mask: np.ndarray) -> list[Component]:
    """8-connected components of a 2-D boolean mask (row runs joined by union-find), in scan order."""
    m = np.asarray(mask, dtype=bool)
    runs: list[tuple[int, int, int]] = []  # (row, start, stop)
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev: list[int] = []
    prev_row = -2
    for y in np.flatnonzero(m.any(axis=1)):
        d = np.diff(np.concatenate(([0], m[y].astype(np.int8), [0])))
        cur = []
        for s, e in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
            i = len(runs)
            runs.append((int(y), int(s), int(e)))
            parent.append(i)
            cur.append(i)
            for j in prev if prev_row == y - 1 else ():
                if runs[j][1] <= e and runs[j][2] >= s:  # touching, diagonals included
                    a, b = find(i), find(j)
                    parent[max(a, b)] = min(a, b)
        prev, prev_row = cur, int(y)
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(find(i), []).append(run)
    return [Component(min(r[1] for r in g), g[0][0], max(r[2] for r in g), g[-1][0] + 1,
                      sum(r[2] - r[1] for r in g)) for _, g in sorted(groups.items())]


def shoe_components(labels: np.ndarray, footwear: Iterable[int], min_px: int = 6) -> list[tuple[str, Component]]:
    """The shoes of a label map as ``[("left", c), ("right", c)]`` (image left first), or ``[]``.

    The two largest footwear components whose bounding box has a side >= ``min_px``; a single
    component (feet together, as in about a third of the ccp label maps) is split at its
    narrowest column within the middle half of its width.
    """
    mask = np.isin(labels, list(footwear))
    comps = [c for c in connected_components(mask) if max(c.x1 - c.x0, c.y1 - c.y0) >= min_px]
    comps = sorted(comps, key=lambda c: (-c.pixels, c.y0, c.x0))[:2]
    if len(comps) == 1 and comps[0].x1 - comps[0].x0 >= 2:
        c = comps[0]
        sub = mask[c.y0:c.y1, c.x0:c.x1]
        w = c.x1 - c.x0
        lo = max(1, w // 4)
        cut = lo + int(np.argmin(sub.sum(0)[lo:max(lo + 1, w - w // 4)]))
        comps = []
        for part, dx in ((sub[:, :cut], 0), (sub[:, cut:], cut)):
            ys, xs = np.nonzero(part)
            comps.append(Component(c.x0 + dx + int(xs.min()), c.y0 + int(ys.min()), c.x0 + dx + int(xs.max()) + 1,
                                   c.y0 + int(ys.max()) + 1, int(part.sum())))
    return list(zip(("left", "right"), sorted(comps, key=lambda c: c.x0 + c.x1)))


# ---------------------------------------------------------------------------- faces and windows

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
    """A face square estimated from the head labels at the top of the person (see the module notes), or ``None``."""
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


def _clip(box: XYWH, height: int, width: int) -> XYWH | None:
    x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
    x1, y1 = min(box[0] + box[2], float(width)), min(box[1] + box[3], float(height))
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _r(box: Sequence[float]) -> list[float]:
    return [round(float(v), 2) for v in box]


def median_box(boxes: Sequence[Sequence[float]], height: int, width: int) -> list[float] | None:
    """Per-coordinate median of canvas boxes as a relative ``(x, y, w, h)`` (fractions of width/height)."""
    if not boxes:
        return None
    med = np.median(np.asarray(boxes, dtype=np.float64), axis=0)
    return [round(float(v), 4) for v in med / [width, height, width, height]]


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
