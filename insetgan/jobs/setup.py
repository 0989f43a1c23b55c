"""What a job sets up before it optimises: its networks, the user's face, and the start boxes."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from insetgan.errors import InsetganError
from insetgan.inversion.align import LandmarkDetector
from insetgan.inversion.embedding import EmbedConfig, Embedded, embed_face
from insetgan.inversion.identity import load_mobilefacenet
from insetgan.inversion.perceptual import PerceptualChoice
from insetgan.jobs.progress import ProgressFactory
from insetgan.method import losses as L
from insetgan.method.boxes import SHOES_PRIOR, BoxProvider, DlibFaceBox, FixedBox, ManualBox, clamp_box, refine_box
from insetgan.method.config import OptimConfig
from insetgan.method.optimize import crop_boxes
from insetgan.method.regions import Box
from insetgan.models import load_network

log = logging.getLogger("insetgan")

DETECTORS = ("auto", "dlib", "fixed")


def load_generator_for(spec: str, dev: torch.device, option: str, role: str | None) -> tuple[Any, dict[str, Any]]:
    """A network for a job (a checkpoint or the built-in model of ``role``) and its report entry."""
    ckpt, info = load_network(spec, dev, option, role)
    if ckpt.generator.c_dim:
        raise InsetganError(f"{option}: conditional networks are not supported for composition")
    return ckpt, info


@dataclass(frozen=True)
class UserFace:
    """The user's own face in a job: an identity loss for the face inset and the aligned photo for the metric."""

    identity: Callable[[torch.Tensor], torch.Tensor] | None
    photo: Image.Image
    weight: float = 1.0


def embed_user_face(photo: str, G: Any, perceptual: PerceptualChoice, cfg: EmbedConfig, cache_dir: Path | None,
                    dev: torch.device, what: str, progress: ProgressFactory, generator_path: str | None = None,
                    detector: LandmarkDetector | None = None) -> tuple[Embedded, UserFace]:
    """Align + invert the user's selfie (reusing ``cache_dir``; from the encoder found beside ``generator_path``
    or among the built-in models; with the job's loaded dlib ``detector`` when given): the embedding and the
    user's face for the job."""
    net = load_mobilefacenet(device=dev) if cfg.identity_weight > 0 else None
    bar = progress(f"invert {what}", perceptual.notice)
    try:
        emb, metric_img, identity = embed_face(photo, G, cfg, perceptual.fn, cache_dir, dev, bar, identity_net=net,
                                               generator_path=generator_path, detector=detector)
    finally:
        bar.close()
    log.info("selfie inverted from %s (PSNR %.2f → %.2f dB, %s)", emb.info["start"]["init"],
             emb.info["metrics"]["start"]["psnr"][0], emb.info["metrics"]["inverted"]["psnr"][0],
             "cached" if emb.info.get("cache", {}).get("hit") else f"{emb.info['seconds']:.1f} s")
    return emb, UserFace(identity, metric_img, cfg.identity_weight)


def check_encoder_used(encoder: str | None, embeddings: list[dict[str, Any] | None]) -> None:
    """Refuse an ``--encoder`` file that none of the job's photo inversions started from (``embeddings``: their
    report entries): it was trained for none of the networks the job inverts into."""
    if encoder is None:
        return
    if not any(e is not None and e["start"].get("encoder") == str(Path(encoder)) for e in embeddings):
        raise InsetganError(f"--encoder {encoder}: no photo of this job is inverted into the network it was "
                            "trained for")


def face_provider(detector: str, landmarks: LandmarkDetector | None = None) -> BoxProvider | None:
    """The dlib provider for ``dlib`` (on the job's loaded ``landmarks`` models when given); ``auto`` gives dlib
    when it is installed, else ``None``."""
    if detector == "fixed":
        return None
    try:
        return DlibFaceBox(detector=landmarks)
    except ValueError:
        if detector == "dlib":
            raise
        log.info("dlib is not installed: using the fixed face prior (pip install 'insetgan[face]' for detection)")
        return None


def initial_boxes(canvas: torch.Tensor, manual: Box | None, provider: BoxProvider | None,
                  prior: tuple[float, float, float, float], what: str) -> tuple[list[Box], list[str]]:
    """One start box per candidate: manual, else detected, else the fixed prior (reported in the notes)."""
    H, W = canvas.shape[-2:]
    if manual is not None:
        try:
            box = ManualBox(manual)(canvas)
        except ValueError as exc:
            raise InsetganError(f"--{what}-{exc}") from None
        return [box] * canvas.shape[0], [f"{what} box given manually"]
    boxes, notes = [], []
    fixed = FixedBox(prior)
    for i in range(canvas.shape[0]):
        box = None
        if provider is not None:
            try:
                box = provider(canvas[i:i + 1])
            except Exception as exc:  # noqa: BLE001 - detection failure falls back to the prior
                notes.append(f"candidate {i}: {what} detection failed ({type(exc).__name__}: {exc})")
            if box is not None and not box.inside(H, W):
                box = clamp_box(box, H, W) if box.w <= W and box.h <= H else None
            if box is None:
                notes.append(f"candidate {i}: no {what} detected; using the fixed prior box")
        boxes.append(box if box is not None else fixed(canvas[i:i + 1]))
    if provider is None:
        notes.append(f"{what} box from the fixed prior {prior} (relative x, y, w, h)")
    return boxes, notes


def shoe_boxes(canvas: torch.Tensor, shoes: torch.Tensor, cfg: OptimConfig, manual: Box | None,
               prior_box: tuple[float, float, float, float] = SHOES_PRIOR) -> tuple[list[Box], list[str]]:
    """Shoe boxes: the fixed prior refined per candidate by a local search minimising the coarse L1."""
    if manual is not None:
        return initial_boxes(canvas, manual, None, prior_box, "shoes")
    H, W = canvas.shape[-2:]
    boxes = []
    for i in range(canvas.shape[0]):
        prior = FixedBox(prior_box)(canvas[i:i + 1])

        def cost(b: Box, i: int = i) -> float:
            with torch.no_grad():
                c = crop_boxes(canvas[i:i + 1], [b], tuple(shoes.shape[-2:]))
                return float(L.coarse_loss(c, shoes[i:i + 1], None, cfg.coarse_size)["coarse_l1"])

        boxes.append(refine_box(prior, cost, H, W)[0])
    return boxes, ["shoes box: fixed prior refined by local search on the coarse loss"]
