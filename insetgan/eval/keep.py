"""Did the job keep what the user gave? Body drift, outfit distance and the face's detection score.

Every compose / sample-bodies / refine-face report carries these numbers per candidate, before
(the start canvas with the start insets hard-pasted; for refine-face the input image) and after
(the result):

- **body drift**: L1 and the perceptual term between the start canvas and the image, outside
  the inset boxes dilated by the blend margin: how much of the body the optimisation changed;
- **outfit distance** (``--outfit``): the same two terms between the image and the outfit
  photo's person crop, inside the person mask (the whole crop when no mask was given) and
  outside the dilated inset boxes, whose content is meant to change;
- **face**: dlib's detection score of the face under its box (higher is a clearer face; dlib
  reports a face above 0) and, with a reference face, the dlib descriptor distance to it.

:func:`face_verdict` turns the face numbers into warnings: a result whose face dlib detects
with a lower score than the start (by more than ``SCORE_TOLERANCE``), or whose identity
distance to the reference is at least ``DLIB_SAME_PERSON``, is flagged, and ``--keep-best``
then returns the start face.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from PIL import Image

from insetgan.inversion.identity import DLIB_SAME_PERSON, FaceDescriptor, face_crops
from insetgan.method import losses as L
from insetgan.method.regions import Box, box_mask

SCORE_FLOOR = -0.5  # dlib scores are reported down to this value (its detection threshold is 0)
SCORE_TOLERANCE = 0.02  # a score this much below the start is resampling noise, not a worse face


def blend_margin(box: Box, feather: float) -> int:
    """Pixels around a box that the blend and the seam may change: the feather ramp, at least 2 px."""
    return max(2, math.ceil(feather * min(box.w, box.h)))


def dilated(box: Box, margin: float) -> Box:
    """``box`` grown by ``margin`` pixels on every side."""
    return Box(box.x - margin, box.y - margin, box.w + 2 * margin, box.h + 2 * margin, box.angle)


def body_mask(height: int, width: int, boxes: Sequence[Box], feather: float, device: torch.device) -> torch.Tensor:
    """[1, 1, H, W]: 1 outside every box of one candidate dilated by its blend margin."""
    m = torch.ones(1, 1, height, width, device=device)
    for b in boxes:
        m = m * (1 - (box_mask(height, width, dilated(b, blend_margin(b, feather)), device=device) > 0).float())
    return m


def masked_distance(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor, perceptual: L.Perceptual | None
                    ) -> list[dict[str, float]]:
    """Per candidate ``{"l1", "perceptual"}`` of ``img`` [B, C, H, W] vs ``ref`` where ``mask`` [B|1, 1, H, W] is 1."""
    with torch.no_grad():
        parts = L.region_loss(img, ref.expand_as(img), mask.expand(img.shape[0], -1, -1, -1), perceptual, "d")
    rows = []
    for i in range(img.shape[0]):
        row = {"l1": round(float(parts["d_l1"][i]), 6)}
        if "d_perceptual" in parts:
            row["perceptual"] = round(float(parts["d_perceptual"][i]), 6)
        rows.append(row)
    return rows


def body_drift(start: torch.Tensor, images: torch.Tensor, boxes: Sequence[Sequence[Box]], feather: float,
               perceptual: L.Perceptual | None) -> list[dict[str, float]]:
    """Body drift per candidate: ``images`` vs the ``start`` canvas outside the dilated boxes (``boxes[i]``)."""
    H, W = images.shape[-2:]
    mask = torch.cat([body_mask(H, W, b, feather, images.device) for b in boxes])
    return masked_distance(images, start, mask, perceptual)


def detection_scores(crops: Sequence[Image.Image], detector: Any) -> list[float | None]:
    """dlib's best frontal-face score in each crop (``None``: nothing even at ``SCORE_FLOOR``)."""
    out: list[float | None] = []
    for crop in crops:
        s = detector.score(crop, SCORE_FLOOR)
        out.append(None if s is None else round(s, 4))
    return out


@dataclass(frozen=True)
class FaceVerdict:
    """Whether a candidate's face got worse, and why (empty ``reasons``: it did not)."""

    reasons: tuple[str, ...]

    @property
    def worse(self) -> bool:
        """True when any check failed."""
        return bool(self.reasons)


def face_verdict(score_before: float | None, score_after: float | None, identity_after: float | None,
                 has_reference: bool) -> FaceVerdict:
    """Flag a face that dlib detects less well than at the start, or that is no longer the reference person.

    A missing score counts as the lowest possible, and a drop of up to ``SCORE_TOLERANCE``
    (what re-rendering the same face moves it) is not a drop; with a reference, a face whose
    identity cannot be measured (no face found) is flagged too.
    """
    reasons = []
    before = -math.inf if score_before is None else score_before
    after = -math.inf if score_after is None else score_after
    if after < before - SCORE_TOLERANCE:
        reasons.append(f"dlib detects the face less well than at the start (score {_fmt(score_after)} < "
                       f"{_fmt(score_before)})")
    if has_reference and (identity_after is None or identity_after >= DLIB_SAME_PERSON):
        what = "cannot be measured (no face found)" if identity_after is None else f"is {identity_after:.3f}"
        reasons.append(f"the identity distance to the reference {what}, not below {DLIB_SAME_PERSON}")
    return FaceVerdict(tuple(reasons))


def _fmt(v: float | None) -> str:
    return "none" if v is None else f"{v:.3f}"



@dataclass(frozen=True)
class Given:
    """What the user gave a job, to measure the result against.

    ``outfit`` [1, 3, H, W] is the outfit photo's person crop at canvas size and
    ``outfit_mask`` [1, 1, H, W] its person mask in [0, 1] (``None``: the whole crop);
    ``face_photo`` is the user's aligned selfie (the identity reference); ``original``
    [1, 3, H, W] is refine-face's input image, whose face is the reference when no selfie is given.
    """

    outfit: torch.Tensor | None = None
    outfit_mask: torch.Tensor | None = None
    face_photo: Image.Image | None = None
    original: torch.Tensor | None = None

    @property
    def reference(self) -> str | None:
        """Which face the identity distance is measured against: ``selfie``, ``original face`` or none."""
        if self.face_photo is not None:
            return "selfie"
        return "original face" if self.original is not None else None


@dataclass(frozen=True)
class Judges:
    """The dlib models the face measures use (``None`` when dlib is not installed)."""

    detector: Any
    descriptor: Any

    @staticmethod
    def load() -> "Judges | None":
        """dlib's detector and descriptor, or ``None`` when dlib or its models are missing."""
        try:
            desc = FaceDescriptor()
        except ValueError:
            return None
        return Judges(desc.detector, desc)


def measure(canvas_start: torch.Tensor, image: torch.Tensor, boxes: dict[str, Sequence[Box]], given: Given,
            feather: float, perceptual: L.Perceptual | None, judges: Judges | None) -> list[dict[str, Any]]:
    """The keep measures of ``image`` [B, C, H, W] per candidate (keys ``body_drift_*``, ``outfit_*``, ``face:*``)."""
    batch, (H, W) = image.shape[0], image.shape[-2:]
    per_candidate = [[bs[i] for bs in boxes.values()] for i in range(batch)]
    outside = torch.cat([body_mask(H, W, b, feather, image.device) for b in per_candidate])
    rows: list[dict[str, Any]] = [{} for _ in range(batch)]
    for row, d in zip(rows, masked_distance(image, canvas_start, outside, perceptual)):
        row.update({f"body_drift_{k}": v for k, v in d.items()})
    if given.outfit is not None:  # the person region, outside the insets (whose content is meant to change)
        person = given.outfit_mask.to(image) if given.outfit_mask is not None else torch.ones_like(image[:1, :1])
        for row, d in zip(rows, masked_distance(image, given.outfit.to(image), person * outside, perceptual)):
            row.update({f"outfit_{k}": v for k, v in d.items()})
    if judges is not None and "face" in boxes:
        crops = face_crops(image, list(boxes["face"]))
        for row, s in zip(rows, detection_scores(crops, judges.detector)):
            row["face:score"] = s
        refs: list[Image.Image] | None = None
        if given.face_photo is not None:
            refs = [given.face_photo] * batch
        elif given.original is not None:
            original = given.original.to(image).expand(batch, -1, -1, -1)
            refs = face_crops(original, list(boxes["face"]))
        if refs is not None:
            for row, ref, crop in zip(rows, refs, crops):
                dist = judges.descriptor.distance(ref, crop)
                row["face:identity"] = None if dist is None else round(dist, 4)
    return rows
