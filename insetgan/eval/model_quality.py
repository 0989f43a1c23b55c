"""Quality numbers of generators and training snapshots: dlib face rates, Fréchet distances, HOG people.

Protocols (the CLI defaults of ``scripts/eval_run.py`` and ``scripts/eval_models.py``):

- **face rate**: share of 64 samples (ψ 0.7, const noise, seeds 0..63) in which dlib's detector
  (one pyramid upsampling) finds a face on a 4× bicubic upscale.
- **FDD** (Fréchet descriptor distance, faces): images upscaled bicubic to 256×256; dlib's
  frontal detector without upsampling; the largest face, or else the central box
  (40, 40)–(216, 216); dlib's 68 landmarks; dlib's 128-D ResNet descriptor. The Fréchet distance
  of Gaussians fitted to the descriptors of seeds 0..299 (ψ 1, const noise) and of 300 real
  faces. Real sets: sort the dataset's image names, ``np.random.RandomState(0).permutation``;
  the first 300 are the reference, the next 300 the *floor* set (reference vs floor = the value
  a perfect generator would get with 300 samples).
- **HOG FD** (shoes): OpenCV HOG features (window = the whole image, 16-px blocks of 8-px cells,
  9 bins) of 300 samples (ψ 1) and 300 real images, projected onto the first 64 principal
  components of the real set (fitted on the real features only), then the Fréchet distance. The
  projection keeps the 64×64 covariance well conditioned with 300 samples, where the raw
  feature (324-D at 32×32) would give a singular one.
- **person rate** (bodies): share of 64 samples (ψ 0.7) in which OpenCV's default HOG people
  detector finds at least one person on a 2× upscale (its window is 64×128); also the same
  samples upside down and the **upright gain** (upright minus upside down): HOG also fires on
  vertical textures, which score about as often both ways, where a person scores far more upright.
- **body HOG FD**: the shoes' HOG FD applied to 300 body samples (ψ 1) and 300 real crops.
- **face-region rate** (bodies): share of 64 samples whose face-prior region (with a margin)
  holds a face dlib finds, upscaled to about 256 px.
- **style spread**: :func:`insetgan.train.diagnose.style_spread` over 256 latents, summarised
  as ``w`` and the largest value of the 4×4, 8×8 and 16×16 conv layers (the collapse check).
"""
from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from insetgan.errors import InsetganError
from insetgan.eval.frechet import frechet_distance, pca_frechet
from insetgan.eval.real_sets import dataset_face_prior, dataset_key, read_images, real_split
from insetgan.inversion.align import LandmarkDetector
from insetgan.inversion.identity import FaceDescriptor
from insetgan.io import atomic_write_bytes, grid, png_bytes, to_uint8
from insetgan.method.boxes import FACE_PRIOR
from insetgan.models import region_priors
from insetgan.networks.checkpoints import load_checkpoint
from insetgan.sampling import z_from_seed
from insetgan.train.diagnose import style_spread

DESCRIPTOR_SIZE = 256  # images are upscaled to this square before dlib
CENTRAL_BOX = (40, 40, 216, 216)  # the fallback face box in the 256×256 image when no face is found
KINDS = ("face", "body", "shoes")


# --------------------------------------------------------------------------------------------
# Samples and images
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def samples(G: torch.nn.Module, n: int, psi: float, batch: int = 32) -> torch.Tensor:
    """Images [n, C, H, W] in [-1, 1] of seeds 0..n-1 (``z_from_seed``) at ψ ``psi``, const noise."""
    out = []
    for start in range(0, n, batch):
        z = torch.cat([z_from_seed(s, G.z_dim) for s in range(start, min(start + batch, n))])
        out.append(G(z, None, truncation_psi=psi, noise_mode="const"))
    return torch.cat(out)


def to_arrays(images: torch.Tensor) -> list[np.ndarray]:
    """HWC uint8 arrays of an image batch [N, C, H, W] in [-1, 1]."""
    return [to_uint8(img) for img in images]


def _pil(image: Image.Image | np.ndarray) -> Image.Image:
    return image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)).convert("RGB")


def _upscale(image: Image.Image, scale: int) -> Image.Image:
    return image.resize((image.width * scale, image.height * scale), Image.BICUBIC) if scale > 1 else image


def write_grid(imgs: torch.Tensor, path: Path, cols: int = 8) -> None:
    """The first ``2*cols`` images of a batch in [-1, 1] as a PNG grid (written atomically)."""
    atomic_write_bytes(path, png_bytes(grid(to_arrays(imgs[:2 * cols]), cols=cols)))


# --------------------------------------------------------------------------------------------
# dlib face descriptors (FDD)
# --------------------------------------------------------------------------------------------

def descriptor_model() -> FaceDescriptor:
    """dlib's detector (no upsampling), 68-point predictor and ResNet descriptor, loaded once."""
    return FaceDescriptor(LandmarkDetector(upsample=0), min_side=DESCRIPTOR_SIZE)


def face_descriptors(images: Iterable[Image.Image | np.ndarray], model: FaceDescriptor | None = None) -> np.ndarray:
    """dlib 128-D descriptors [N, 128] of face images by the FDD protocol (see the module docstring).

    Every image gets a descriptor: where the detector finds no face the central box is used.
    """
    model = model or descriptor_model()
    out = []
    for image in images:
        big = _pil(image).resize((DESCRIPTOR_SIZE, DESCRIPTOR_SIZE), Image.BICUBIC)
        faces = model.detector.faces(big, upsample=0)
        face = faces[0] if faces else model.detector.face_in_box(big, CENTRAL_BOX)
        out.append(model.descriptor(big, face))
    return np.stack(out) if out else np.zeros((0, 128))


# --------------------------------------------------------------------------------------------
# Real face sets (the dataset side: insetgan.eval.real_sets)
# --------------------------------------------------------------------------------------------

def real_face_sets(dataset_path: str | Path, cache_dir: str | Path | None = None, n: int = 300,
                   model: FaceDescriptor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors [n, 128] of the reference and of the floor set of a face dataset (see
    :func:`insetgan.eval.real_sets.real_split`).

    With ``cache_dir`` they are kept in ``real-faces-<key>.npz`` there (key:
    :func:`insetgan.eval.real_sets.dataset_key`) and read back instead of recomputed.
    """
    cache = Path(cache_dir) / f"real-faces-{dataset_key(dataset_path, n)}.npz" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        with np.load(cache) as f:
            return f["reference"], f["floor"]
    ref_names, floor_names = real_split(dataset_path, n)
    model = model or descriptor_model()
    ref = face_descriptors(read_images(dataset_path, ref_names), model)
    floor = face_descriptors(read_images(dataset_path, floor_names), model)
    if cache is not None:
        buf = io.BytesIO()
        np.savez(buf, reference=ref, floor=floor)
        atomic_write_bytes(cache, buf.getvalue())
    return ref, floor


def generated_face_fdd(G: torch.nn.Module, real_desc: np.ndarray, n: int = 300,
                       model: FaceDescriptor | None = None) -> float:
    """FDD of a face generator: descriptors of seeds 0..n-1 (ψ 1, const noise) against ``real_desc``."""
    return frechet_distance(face_descriptors(to_arrays(samples(G, n, 1.0)), model), real_desc)


# --------------------------------------------------------------------------------------------
# dlib detection rates (faces, face regions of bodies)
# --------------------------------------------------------------------------------------------

def face_rate(G: torch.nn.Module, n: int, psi: float, detector: LandmarkDetector,
              grid_path: Path | None = None) -> float:
    """Share of samples in which dlib finds a face on a 4× upscaled copy (and a sample grid)."""
    imgs = samples(G, n, psi)
    if grid_path is not None:
        write_grid(imgs, grid_path)
    return sum(bool(detector.faces(_upscale(_pil(a), 4))) for a in to_arrays(imgs)) / n


def face_region_rate(images: Iterable[Image.Image | np.ndarray], prior: tuple[float, float, float, float],
                     detector: LandmarkDetector) -> float:
    """Share of body images whose face-prior region (with a margin) holds a face dlib finds, upscaled to ~256 px."""
    images = [_pil(i) for i in images]
    if not images:
        raise InsetganError("face_region_rate needs at least one image")
    W, H = images[0].size
    x, y, w, h = prior[0] * W, prior[1] * H, prior[2] * W, prior[3] * H
    m = 0.5 * max(w, h)
    box = (max(0, int(x - m)), max(0, int(y - m)), min(W, int(x + w + m)), min(H, int(y + h + m)))
    found = 0
    for img in images:
        crop = img.crop(box)
        found += bool(detector.faces(_upscale(crop, max(1, round(256 / max(crop.size))))))
    return found / len(images)


def body_rate(G: torch.nn.Module, n: int, psi: float, prior: tuple[float, float, float, float],
              detector: LandmarkDetector, grid_path: Path | None = None) -> float:
    """Share of samples whose face-prior region (with a margin) holds a face dlib finds (and a sample grid)."""
    imgs = samples(G, n, psi)
    if grid_path is not None:
        write_grid(imgs, grid_path)
    return face_region_rate(to_arrays(imgs), prior, detector)


# --------------------------------------------------------------------------------------------
# OpenCV HOG: shoes features, people detector
# --------------------------------------------------------------------------------------------

def _cv2():
    try:
        import cv2
    except ImportError:
        raise InsetganError("HOG metrics need OpenCV: pip install 'opencv-python-headless<5'") from None
    if not hasattr(cv2, "HOGDescriptor"):  # OpenCV 5 moved HOG out of the main modules
        raise InsetganError(f"OpenCV {cv2.__version__} has no HOGDescriptor: pip install 'opencv-python-headless<5'")
    return cv2


def hog_features(images: Sequence[Image.Image | np.ndarray], cell: int = 8) -> np.ndarray:
    """OpenCV HOG features [N, D] with the whole image as the window (2×2-cell blocks, one-cell stride, 9 bins).

    Image sides must be multiples of ``cell`` and at least two cells.
    """
    cv2 = _cv2()
    arrays = [np.ascontiguousarray(np.asarray(_pil(i))) for i in images]
    if not arrays:
        return np.zeros((0, 0))
    h, w = arrays[0].shape[:2]
    if h % cell or w % cell or min(h, w) < 2 * cell:
        raise InsetganError(f"HOG needs image sides that are multiples of {cell} (at least {2 * cell}), got {w}x{h}")
    hog = cv2.HOGDescriptor((w, h), (2 * cell, 2 * cell), (cell, cell), (cell, cell), 9)
    return np.stack([hog.compute(a).ravel() for a in arrays]).astype(np.float64)


def _match_size(images: Sequence[np.ndarray], h: int, w: int) -> list[np.ndarray]:
    return [a if a.shape[:2] == (h, w) else np.asarray(Image.fromarray(a).resize((w, h), Image.BICUBIC))
            for a in images]


def hog_fd(G: torch.nn.Module, real_images: Sequence[np.ndarray], n: int = 300, components: int = 64) -> float:
    """HOG Fréchet distance of a generator: seeds 0..n-1 (ψ 1) against real images (resized to G's size)."""
    fake = to_arrays(samples(G, n, 1.0))
    h, w = fake[0].shape[:2]
    return pca_frechet(hog_features(fake), hog_features(_match_size(real_images, h, w)), components)


def person_rates(images: Sequence[Image.Image | np.ndarray], scale: int = 2) -> dict[str, float]:
    """HOG person rate upright, upside down, and the upright gain (their difference).

    HOG fires on vertical structure too (stripes, textures): a real person is found far more often
    upright than upside down (real body crops: about 0.48 vs 0.22), a texture about as often both
    ways, so the gain says more than the upright rate alone.
    """
    arrays = [np.asarray(_pil(i)) for i in images]
    up = person_rate(arrays, scale)
    down = person_rate([np.ascontiguousarray(a[::-1]) for a in arrays], scale)
    return {"person_rate": up, "person_rate_flipped": down, "person_gain": up - down}


def person_rate(images: Iterable[Image.Image | np.ndarray], scale: int = 2) -> float:
    """Share of images in which OpenCV's default HOG people detector finds a person (upscaled ``scale``×).

    Images still smaller than the detector's 64×128 window count as no detection (OpenCV aborts
    the process on them).
    """
    cv2 = _cv2()
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    (win_w, win_h), hits = hog.winSize, []
    for image in images:
        big = _upscale(_pil(image), scale)
        if big.width < win_w or big.height < win_h:
            hits.append(False)
            continue
        rects, _ = hog.detectMultiScale(np.ascontiguousarray(np.asarray(big)), winStride=(8, 8))
        hits.append(len(rects) > 0)
    if not hits:
        raise InsetganError("person_rate needs at least one image")
    return sum(hits) / len(hits)


# --------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------

def spread_summary(G: torch.nn.Module, n: int = 256) -> dict[str, float]:
    """Style spread of ``w`` and the largest of the 4×4, 8×8 and 16×16 conv layers (NaN where absent)."""
    spread = style_spread(G, n)
    out = {"spread_w": spread["w"]}
    for r in (4, 8, 16):
        out[f"spread_{r}x{r}"] = max((v for k, v in spread.items() if k.startswith(f"b{r}.conv")),
                                     default=float("nan"))
    return out


@dataclass
class Reference:
    """The real side of a kind's metrics: what snapshots are compared with, and the same numbers on real data.

    ``real``: reference face descriptors [n, 128] (face), real images (shoes) or None (body).
    ``floor``: the metrics of real data (face: reference vs floor set FDD; shoes: the HOG FD of the
    floor set; body: the person rates, upright gain and face-region rate of real crops, and the HOG
    Fréchet distance between two real sets).
    """

    kind: str
    real: Any
    floor: dict[str, float]


def prepare_reference(kind: str, dataset_path: str | Path, cache_dir: str | Path | None = None,
                      n: int = 300, samples_n: int = 64, model: FaceDescriptor | None = None,
                      detector: LandmarkDetector | None = None) -> Reference:
    """The :class:`Reference` of ``kind`` from its training dataset (face descriptors cached in ``cache_dir``)."""
    if kind == "face":
        ref, floor = real_face_sets(dataset_path, cache_dir, n, model)
        return Reference(kind, ref, {"fdd": frechet_distance(floor, ref)})
    if kind == "shoes":
        ref_names, floor_names = real_split(dataset_path, n)
        ref = read_images(dataset_path, ref_names)
        floor_fd = pca_frechet(hog_features(read_images(dataset_path, floor_names)), hog_features(ref))
        return Reference(kind, ref, {"hog_fd": floor_fd})
    if kind == "body":
        ref_names, floor_names = real_split(dataset_path, n)
        ref, floor = read_images(dataset_path, ref_names), read_images(dataset_path, floor_names)
        crops = floor[:samples_n]
        prior = dataset_face_prior(dataset_path)
        numbers = person_rates(crops) | {"face_region_rate": face_region_rate(crops, prior, detector or LandmarkDetector()),
                                         "hog_fd": pca_frechet(hog_features(floor), hog_features(ref))}
        return Reference(kind, ref, numbers)
    raise InsetganError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")


def evaluate_snapshot(network_path: str | Path, kind: str, reference: Reference | None = None, *,
                      samples_n: int = 64, fd_samples: int = 300, psi: float = 0.7, spread_n: int = 256,
                      detector: LandmarkDetector | None = None, model: FaceDescriptor | None = None) -> dict:
    """Quality numbers of one network file of ``kind`` (face, body or shoes).

    face: ``face_rate`` (``samples_n`` samples at ψ ``psi``) and, with a reference, ``fdd``
    (``fd_samples`` seeds at ψ 1); body: ``person_rate`` and ``face_region_rate`` (the network's
    face prior from its metadata, else the default); shoes: ``hog_fd`` with a reference. All
    kinds: the style spread summary, ``kimg`` (from the training metadata, else the file name) and
    ``seconds``. Load errors propagate (``CheckpointError``).
    """
    if kind not in KINDS:
        raise InsetganError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    t0 = time.perf_counter()
    ckpt = load_checkpoint(network_path)
    G, meta = ckpt.generator, dict(ckpt.metadata)
    row: dict[str, Any] = {"kimg": _kimg(Path(network_path), meta), "network": Path(network_path).name}
    if kind == "face":
        row["face_rate"] = face_rate(G, samples_n, psi, detector or LandmarkDetector())
        if reference is not None:
            row["fdd"] = generated_face_fdd(G, reference.real, fd_samples, model)
    elif kind == "body":
        imgs = to_arrays(samples(G, samples_n, psi))
        row.update(person_rates(imgs))
        prior = region_priors(meta).get("face", FACE_PRIOR)
        row["face_region_rate"] = face_region_rate(imgs, prior, detector or LandmarkDetector())
        if reference is not None and reference.real is not None:
            row["hog_fd"] = hog_fd(G, reference.real, fd_samples)
    elif reference is not None:
        row["hog_fd"] = hog_fd(G, reference.real, fd_samples)
    row.update(spread_summary(G, spread_n))
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def _kimg(path: Path, meta: dict[str, str]) -> int | float:
    """A snapshot's kimg: the number in ``network-KKKKKK.safetensors``, else its training metadata."""
    m = re.fullmatch(r"network-(\d+)", path.stem)
    if m:
        return int(m.group(1))
    try:
        return float(json.loads(meta["training"])["kimg"])
    except (KeyError, ValueError, TypeError):
        return float("nan")
