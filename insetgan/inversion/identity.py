"""Face identity: a differentiable MobileFaceNet identity loss and an independent dlib identity metric.

The loss (as in pSp/e4e identity losses) warps an image by the 5-point similarity transform onto the ArcFace 112×112
reference (``warp_five``, the differentiable twin of ``align.align_five``), embeds the crop with
MobileFaceNet (foamliu/MobileFaceNet weights, Apache-2.0, shipped in ``assets/weights``) and
returns 1 − cosine to a target embedding. The metric (``FaceDescriptor``) uses dlib's ResNet face
descriptor instead, so a result optimised against MobileFaceNet is judged by a different network.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from insetgan import io as iio
from insetgan.errors import InsetganError
from insetgan.inversion.align import ARCFACE_112, Face, LandmarkDetector, face_models_dir, five_points, similarity
from insetgan.resources import ASSETS

log = logging.getLogger(__name__)

DLIB_SAME_PERSON = 0.6  # dlib descriptor distance below which two faces are probably the same person
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
# Inverted-residual settings: expansion t, output channels c, repeats n, stride of the first repeat.
_SETTINGS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


def default_weights() -> Path:
    """Path of the packaged MobileFaceNet state dict."""
    return ASSETS / "weights" / "mobilefacenet.pt"


# --------------------------------------------------------------------------------------------
# MobileFaceNet
# --------------------------------------------------------------------------------------------

def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Convolution (no bias, 'same' padding) + BatchNorm + ReLU6."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        mid = cin * t
        self.conv = nn.Sequential(_conv_bn(cin, mid, 1), _conv_bn(mid, mid, 3, stride, groups=mid),
                                  nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class _DepthwiseSeparable(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(ch, ch, 3, 1, 1, groups=ch, bias=False)
        self.pointwise = nn.Conv2d(ch, ch, 1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(ch), nn.BatchNorm2d(ch)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.depthwise(x)))
        return F.relu(self.bn2(self.pointwise(x)))


class _GlobalDepthwise(nn.Module):
    def __init__(self, ch: int, k: int = 7) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(ch, ch, k, groups=ch, bias=False)
        self.bn = nn.BatchNorm2d(ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.depthwise(x))


class MobileFaceNet(nn.Module):
    """MobileFaceNet (Chen et al., 2018): 112×112 normalised RGB → 128-D embedding (not normalised).

    State-dict layout of foamliu/MobileFaceNet: ``conv1``, ``dw_conv``, ``features.0..14``,
    ``conv2``, ``gdconv``, ``conv3``, ``bn``.
    """

    def __init__(self, embedding_size: int = 128) -> None:
        super().__init__()
        self.conv1 = _conv_bn(3, 64, 3, stride=2)
        self.dw_conv = _DepthwiseSeparable(64)
        blocks, cin = [], 64
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                blocks.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*blocks)
        self.conv2 = _conv_bn(cin, 512, 1)
        self.gdconv = _GlobalDepthwise(512, 7)
        self.conv3 = nn.Conv2d(512, embedding_size, 1)
        self.bn = nn.BatchNorm1d(embedding_size)

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings [B, 128] of ImageNet-normalised 112×112 crops [B, 3, 112, 112]."""
        x = self.features(self.dw_conv(self.conv1(x)))
        x = self.conv3(self.gdconv(self.conv2(x)))
        return self.bn(x.flatten(1))


def load_mobilefacenet(path: str | Path | None = None, device: str | torch.device = "cpu") -> MobileFaceNet:
    """MobileFaceNet with its weights (default: the packaged copy), in eval mode and frozen.

    Raises ``ValueError`` (one line) for a missing, unreadable or mismatching file.
    """
    path = Path(path) if path is not None else default_weights()
    if not path.is_file():
        raise InsetganError(f"MobileFaceNet weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means a bad file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InsetganError(f"cannot read MobileFaceNet weights {path}: {first}") from None
    net = MobileFaceNet()
    if not isinstance(state, dict):
        raise InsetganError(f"MobileFaceNet weights {path}: expected a state dict, got {type(state).__name__}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError:
        raise InsetganError(f"MobileFaceNet weights {path}: keys or shapes do not match the architecture") from None
    return net.eval().requires_grad_(False).to(device)


# --------------------------------------------------------------------------------------------
# Differentiable 5-point alignment and the identity loss
# --------------------------------------------------------------------------------------------

def points_for_size(points: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Pixel-index points [..., 2] (x, y) of an image of ``from_size`` (H, W) rescaled to ``to_size`` (H, W).

    Pixel centres sit at integers: ``p' = (p + 0.5) · s − 0.5`` per axis.
    """
    (fh, fw), (th, tw) = from_size, to_size
    return (np.asarray(points, np.float64) + 0.5) * np.array([tw / fw, th / fh]) - 0.5


def _points_array(points: Tensor | np.ndarray, batch: int) -> np.ndarray:
    pts = points.detach().cpu().double().numpy() if isinstance(points, Tensor) else np.asarray(points, np.float64)
    if pts.shape == (5, 2):
        pts = np.broadcast_to(pts, (batch, 5, 2))
    if pts.shape != (batch, 5, 2):
        raise InsetganError(f"expected points of shape [5, 2] or [{batch}, 5, 2], got {list(pts.shape)}")
    return pts


def warp_five(img: Tensor, points: Tensor | np.ndarray, size: int = 112, antialias: bool = True) -> Tensor:
    """Differentiable 5-point similarity alignment: [B, 3, H, W] → [B, 3, size, size] (same value range).

    Reproduces ``align.align_five`` (ArcFace reference scaled to ``size``, pixel centres at
    integers) with bilinear ``grid_sample`` (``align_corners=False``, border padding). With
    ``antialias``, images more than 2× larger than the crop are first average-pooled by an integer
    factor (points rescaled exactly), so a 1024-px face does not alias; ``align_five`` does not
    prefilter, so the two then differ by that blur.
    """
    if img.ndim != 4:
        raise InsetganError(f"expected an image batch [B, C, H, W], got shape {list(img.shape)}")
    pts = _points_array(points, img.shape[0])
    dst = ARCFACE_112 * (size / 112.0) + 0.5
    mats = [similarity(p + 0.5, dst) for p in pts]  # input continuous coords → output
    if antialias:
        shrink = min(1.0 / np.sqrt(abs(np.linalg.det(m[:, :2]))) for m in mats)
        k = int(shrink)
        if k >= 2:
            img = F.avg_pool2d(img, k)
            pts = (pts + 0.5) / k - 0.5
            mats = [similarity(p + 0.5, dst) for p in pts]
    h, w = img.shape[-2:]
    to_norm = np.array([[2.0 / w, 0.0, -1.0], [0.0, 2.0 / h, -1.0], [0.0, 0.0, 1.0]])
    from_norm = np.array([[size / 2, 0.0, size / 2], [0.0, size / 2, size / 2], [0.0, 0.0, 1.0]])
    theta = np.stack([(to_norm @ np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]])) @ from_norm)[:2] for m in mats])
    grid = F.affine_grid(torch.as_tensor(theta, dtype=img.dtype, device=img.device),
                         [img.shape[0], img.shape[1], size, size], align_corners=False)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


def embed(net: nn.Module, crops112: Tensor) -> Tensor:
    """L2-normalised MobileFaceNet embeddings [B, 128] of aligned crops [B, 3, 112, 112] in [-1, 1]."""
    if crops112.shape[-3:] != (3, 112, 112):
        raise InsetganError(f"expected aligned crops [B, 3, 112, 112], got shape {list(crops112.shape)}")
    mean = torch.tensor(_MEAN, dtype=crops112.dtype, device=crops112.device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, dtype=crops112.dtype, device=crops112.device).view(1, 3, 1, 1)
    return F.normalize(net(((crops112 + 1) / 2 - mean) / std), dim=1)


@dataclass(frozen=True, eq=False)
class IdentityTarget:
    """A target identity: its embedding [1 or B, 128] and where the 5 points lie [5, 2] in the
    images the loss will be applied to (pixel-index coordinates at their resolution)."""

    embedding: Tensor
    points: Tensor


def identity_target(net: nn.Module, image: Tensor, points: Tensor | np.ndarray) -> IdentityTarget:
    """The identity of ``image`` [1, 3, H, W] in [-1, 1] whose 5 points are ``points`` [5, 2]."""
    with torch.no_grad():
        emb = embed(net, warp_five(image, points))
    pts = torch.tensor(_points_array(points, 1)[0], dtype=torch.float32)
    return IdentityTarget(embedding=emb.detach(), points=pts)


def identity_loss(net: nn.Module, img: Tensor, target: IdentityTarget) -> Tensor:
    """Per-image identity loss [B] = 1 − cosine(embedding of ``img`` at the target's points, target)."""
    emb = embed(net, warp_five(img, target.points))
    return 1.0 - (emb * target.embedding.to(device=emb.device, dtype=emb.dtype)).sum(dim=1)


# --------------------------------------------------------------------------------------------
# Detection and the dlib descriptor metric
# --------------------------------------------------------------------------------------------

def _upscaled(image: Image.Image, min_side: int) -> Image.Image:
    """The RGB image, bicubically enlarged so that its shorter side is at least ``min_side``."""
    image = image.convert("RGB")
    w, h = image.size
    if min(w, h) >= min_side:
        return image
    s = min_side / min(w, h)
    return image.resize((max(round(w * s), 1), max(round(h * s), 1)), Image.BICUBIC)


def detect_five(image: Image.Image, min_side: int = 256,
                detector: LandmarkDetector | None = None) -> np.ndarray | None:
    """Eye centres, nose tip, mouth corners [5, 2] of the largest face (pixel-index coordinates), or None.

    Small images are upscaled (bicubic) to ``min_side`` for dlib and the points mapped back.
    Pass a ``detector`` to reuse loaded dlib models.
    """
    big = _upscaled(image, min_side)
    faces = (detector or LandmarkDetector()).faces(big)
    if not faces:
        return None
    if len(faces) > 1:
        log.warning("%d faces found; using the largest", len(faces))
    pts = five_points(faces[0].landmarks)
    return points_for_size(pts, (big.height, big.width), (image.height, image.width))


class FaceDescriptor:
    """dlib's 128-D ResNet face descriptor (independent of MobileFaceNet): distance < 0.6 ≈ same person."""

    def __init__(self, detector: LandmarkDetector | None = None, min_side: int = 256) -> None:
        self._detector = detector or LandmarkDetector()  # ValueError when dlib or its models are missing
        import dlib

        model = face_models_dir() / "dlib_face_recognition_resnet_model_v1.dat"
        if not model.is_file():
            raise InsetganError(f"dlib face recognition model not found at {model}")
        self._model = dlib.face_recognition_model_v1(str(model))
        self.min_side = min_side

    def describe(self, image: Image.Image) -> np.ndarray | None:
        """Descriptor [128] of the largest face in an image, or None when no face is found."""
        big = _upscaled(image, self.min_side)
        faces = self._detector.faces(big)
        return self.descriptor(big, faces[0]) if faces else None

    @property
    def detector(self) -> LandmarkDetector:
        """The dlib face detector and landmark predictor this descriptor uses."""
        return self._detector

    def descriptor(self, image: Image.Image, face: Face) -> np.ndarray:
        """Descriptor [128] of a given face (box and 68 landmarks) in ``image``, used as it is."""
        import dlib

        shape = dlib.full_object_detection(dlib.rectangle(*(int(v) for v in face.rect)),
                                           [dlib.point(int(x), int(y)) for x, y in face.landmarks])
        arr = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        return np.asarray(self._model.compute_face_descriptor(arr, shape), dtype=np.float64)

    def distance(self, a: Image.Image, b: Image.Image) -> float | None:
        """Euclidean descriptor distance of the largest faces of two images; None when either has none."""
        da, db = self.describe(a), self.describe(b)
        if da is None or db is None:
            return None
        return float(np.linalg.norm(da - db))


def dlib_distances(references: list[Image.Image], faces: list[Image.Image], desc: Any = None
                   ) -> list[float | None]:
    """dlib face-descriptor distance of each face to its reference (``None`` where dlib finds no face).

    Pass a loaded :class:`insetgan.inversion.identity.FaceDescriptor` as ``desc`` to reuse its dlib models.
    """
    desc = desc or FaceDescriptor()
    out = []
    for ref, face in zip(references, faces):
        d = desc.distance(ref, face)
        out.append(None if d is None else round(float(d), 4))
    return out


def face_crops(images: torch.Tensor, boxes: list, size: int = 256) -> list[Image.Image]:
    """The face under each box with a quarter-side margin, upscaled smoothly to ``size`` px.

    dlib's detector wants some context around a face, and a blocky upscale of a small face
    defeats its HOG features.
    """
    out = []
    for i in range(images.shape[0]):
        b, m = boxes[i], 0.25 * max(boxes[i].w, boxes[i].h)
        crop = Image.fromarray(iio.to_uint8(images[i])).crop(
            (round(b.x - m), round(b.y - m), round(b.x + b.w + m), round(b.y + b.h + m)))
        out.append(crop.resize((size, size), Image.BICUBIC))
    return out


def identity_report(photo: Image.Image, before: torch.Tensor, after: torch.Tensor, boxes_before: list,
                    boxes_after: list, desc: FaceDescriptor | None = None) -> dict[str, Any]:
    """dlib face-descriptor distances between the user's aligned photo and each face crop, before and after."""
    n, desc = before.shape[0], desc or FaceDescriptor()
    return {"metric": "dlib-face-descriptor (euclidean)", "same_person_below": DLIB_SAME_PERSON,
            "before": dlib_distances([photo] * n, face_crops(before, boxes_before), desc),
            "after": dlib_distances([photo] * n, face_crops(after, boxes_after), desc)}
