"""The user's photos as generator latents: align a selfie or crop an outfit photo, invert, cache.

``embed_face`` FFHQ-aligns a selfie to the face generator's resolution, projects it (W+ by
default, from the encoder trained for the generator when there is one, then a short refinement;
optionally with pivotal tuning) with the perceptual, pixel and identity losses, and
returns a face generator that renders the user's face from the returned latent (its noise maps
set to the optimised ones, its weights tuned with PTI). ``embed_outfit`` does the same for a
full-body photo and the canvas generator: a person-centred crop at the canvas aspect, the
background masked out of the loss when a mask is given. Results are cached in a folder by a
hash of the photo, the network weights and the settings, so a second run starts at once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from insetgan import io as iio
from insetgan.errors import InsetganError
from insetgan.images import open_rgb
from insetgan.inversion.align import LandmarkDetector, align_ffhq
from insetgan.inversion.encoder import StartConfig, choose_start, encode
from insetgan.inversion.identity import detect_five, identity_loss, identity_target, points_for_size
from insetgan.inversion.invert import (InvertConfig, PTIConfig, invert, quality, refine_config, start_latent,
                                       synthesize, with_noise)
from insetgan.inversion.photos import align_face, load_photo, person_crop, photo_info, to_tensor
from insetgan.latents import read_npz_arrays
from insetgan.method import losses as L
from insetgan.networks import native
from insetgan.networks.encoder_files import network_sha256
from insetgan.networks.generator import Generator
from insetgan.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedConfig:
    """How a photo is embedded: the start, the projector from ``w_avg`` (``invert``) or from an encoder's
    start (``refine``), optional pivotal tuning, the identity weight."""

    invert: InvertConfig = InvertConfig()
    pti: PTIConfig | None = None
    identity_weight: float = 0.1
    start: StartConfig = StartConfig()
    refine: InvertConfig = refine_config()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"invert": self.invert.to_dict(), "pti": self.pti.to_dict() if self.pti else None,
                "identity_weight": self.identity_weight, "start": self.start.to_dict(),
                "refine": self.refine.to_dict()}


@dataclass
class Embedded:
    """A photo embedded in a generator: render ``G.synthesis(ws)`` (constant noise) to get ``recon``."""

    G: Generator
    ws: torch.Tensor
    target: torch.Tensor
    recon: torch.Tensor
    mask: torch.Tensor | None
    info: dict[str, Any] = field(default_factory=dict)
    cache_files: dict[str, bytes] = field(default_factory=dict)


def _cache_names(kind: str, key: str) -> tuple[str, str]:
    return f"{kind}-{key[:20]}.npz", f"{kind}-{key[:20]}.safetensors"


def embed(G: Generator, target: torch.Tensor, cfg: EmbedConfig, perceptual: L.Perceptual | None,
          key_parts: dict[str, Any], mask: torch.Tensor | None = None,
          identity: Callable[[torch.Tensor], torch.Tensor] | None = None, cache_dir: Path | None = None,
          progress: Progress | None = None, generator_path: str | Path | None = None) -> Embedded:
    """Invert ``target`` [1, 3, H, W] into ``G``: the generator that renders it and its W+ latent.

    ``key_parts`` identify the photo in the cache key; its ``kind`` (``face``, ``outfit``) names
    the cache files.

    The projector starts from ``cfg.start`` (the encoder found for ``G``, looked up beside
    ``generator_path`` and among the built-in models, or ``w_avg``) and runs ``cfg.refine`` or
    ``cfg.invert`` accordingly. A result already in ``cache_dir`` is reused. A new one is
    returned in ``cache_files`` (file name → bytes) for the caller to write with its other
    outputs, so a job that fails later leaves nothing behind.
    """
    start = choose_start(cfg.start, G, generator_path, target.device)
    init_ws = encode(start.encoder, G, target) if start.encoder is not None else None
    used = start.describe()
    key = hashlib.sha256(json.dumps({**key_parts, "net": network_sha256(G), "cfg": cfg.to_dict(),
                                     "start": used.get("encoder_sha256")}, sort_keys=True).encode()).hexdigest()
    info: dict[str, Any] = {"cache_key": key[:20], "config": cfg.to_dict(), "start": used}
    kind = str(key_parts["kind"])
    npz_name, net_name = _cache_names(kind, key)
    t0 = time.perf_counter()
    cached = cache_dir is not None and (cache_dir / npz_name).is_file() and \
        (cfg.pti is None or (cache_dir / net_name).is_file())
    files: dict[str, bytes] = {}
    entry = _read_cache(cache_dir, npz_name, net_name, G, cfg.pti is not None) if cached else None
    cached = entry is not None
    if entry is not None:
        ws, noise, tuned = entry
        ws, noise = ws.to(target.device), [n.to(target.device) for n in noise]
        tuned = tuned.to(target.device) if tuned is not None else None
    else:
        inv_cfg = dataclasses.replace(cfg.refine if init_ws is not None else cfg.invert,
                                      identity_weight=cfg.identity_weight if identity else 0.0)
        res = invert(G, target, inv_cfg, cfg.pti, perceptual, mask, identity, progress, progress, init_ws)
        ws, noise, tuned = res.projection.ws, res.projection.noise, res.tuned
        info["projection"] = {"steps": inv_cfg.steps, "seconds": round(res.projection.seconds, 3),
                              "final_losses": {k: round(v, 6) for k, v in res.projection.history[-1].items()}}
        if tuned is not None:
            info["pti"] = {"steps": cfg.pti.steps, "seconds": round(res.pti_seconds, 3),
                           "final_losses": {k: round(v, 6) for k, v in res.pti_history[-1].items()}}
            files[net_name] = native.to_bytes(tuned, extra={"insetgan_pti": {"kind": kind, "cache_key": key[:20]}})
        arrays = {"ws": ws.cpu().numpy(), **{f"noise_{i:02d}": n.cpu().numpy() for i, n in enumerate(noise)}}
        files[npz_name] = iio.encode(lambda buf: np.savez(buf, **arrays))
    info["cache"] = {"hit": cached, "file": npz_name}
    G_user = with_noise(tuned if tuned is not None else G, noise)
    with torch.no_grad():
        recon = synthesize(G_user, ws, None)
        first = synthesize(G, start_latent(G, init_ws, ws.shape[0], "wplus", G.w_avg.to(ws).reshape(1, 1, -1)), None)
        info["seconds"] = round(time.perf_counter() - t0, 3)
        info["metrics"] = {"start": quality(first, target, perceptual), "inverted": quality(recon, target, perceptual)}
        if identity is not None:
            for name, img in (("start", first), ("inverted", recon)):
                info["metrics"][name]["identity_loss"] = [round(float(v), 4) for v in identity(img)]
    return Embedded(G_user, ws, target, recon, mask, info, files)


def _read_cache(cache_dir: Path, npz_name: str, net_name: str, G: Generator, pti: bool
                ) -> tuple[torch.Tensor, list[torch.Tensor], Generator | None] | None:
    """A cached inversion (W+ [1, L, D], noise maps [1, 1, H, W], tuned generator or None); None when damaged."""
    shapes = {"ws": (1, G.num_ws, G.w_dim),
              **{f"noise_{i:02d}": (1, 1, *buf.shape) for i, buf in enumerate(G.noise_buffers().values())}}
    try:
        arrays = read_npz_arrays(cache_dir / npz_name, shapes, f"cache entry {npz_name}")
        tuned = native.load(cache_dir / net_name)[0] if pti else None
    except InsetganError as exc:
        log.warning("recomputing the inversion: %s", exc)
        return None
    noise = [torch.from_numpy(arrays[f"noise_{i:02d}"]) for i in range(len(shapes) - 1)]
    return torch.from_numpy(arrays["ws"]), noise, tuned


def aligned_size(G: Generator) -> int:
    """The face side of a square face generator (FFHQ alignment target); error for non-square ones."""
    _, H, W = G.img_shape
    if H != W:
        raise InsetganError(f"face alignment needs a square face generator, this one is {H}x{W}")
    return H


def face_identity(net: torch.nn.Module, aligned: Image.Image, size: int, device: torch.device,
                  detector: LandmarkDetector | None = None
                  ) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """The MobileFaceNet identity loss ``img [B, 3, size, size] -> [B]`` towards an FFHQ-aligned selfie.

    The 5 points are detected once on the aligned selfie (upscaled when small) and reused for
    every generated face, which the face generator renders in the same FFHQ layout.
    """
    pts = detect_five(aligned, detector=detector)
    if pts is None:
        raise InsetganError("no face landmarks found on the aligned selfie: use a clearer, frontal photo")
    pts = points_for_size(pts, (aligned.height, aligned.width), (size, size))
    target = identity_target(net, to_tensor(aligned.resize((size, size), Image.LANCZOS), device), pts)
    return (lambda img: identity_loss(net, img, target)), {"points": np.round(pts, 2).tolist()}


def embed_face(photo_path: str, G: Generator, cfg: EmbedConfig, perceptual: L.Perceptual | None,
               cache_dir: Path | None, device: torch.device, progress: Progress | None = None,
               identity_net: torch.nn.Module | None = None, generator_path: str | Path | None = None,
               detector: LandmarkDetector | None = None) -> tuple[Embedded, Image.Image, Callable | None]:
    """Align and invert a selfie into the face generator.

    Returns (the embedding, the selfie aligned at 256 px for the dlib metric, the identity
    loss for the face inset or ``None`` when no identity network is given).
    """
    photo = load_photo(photo_path)
    size = aligned_size(G)
    detector = detector or LandmarkDetector()
    aligned, landmarks = align_face(photo, size, photo_path, detector)
    metric_img = align_ffhq(photo, landmarks, 256)
    target = to_tensor(aligned, device)
    identity, id_info = (None, {})
    if identity_net is not None:
        identity, id_info = face_identity(identity_net, metric_img, size, device, detector)
    emb = embed(G, target, cfg, perceptual, {"kind": "face", "photo": photo_info(photo_path, photo)["sha256"],
                                             "size": size, "identity": identity is not None},
                identity=identity, cache_dir=cache_dir, progress=progress, generator_path=generator_path)
    emb.info.update(photo=photo_info(photo_path, photo), aligned_size=size, identity_points=id_info.get("points"))
    return emb, metric_img, identity


def embed_outfit(photo_path: str, mask_path: str | None, G: Generator, cfg: EmbedConfig,
                 perceptual: L.Perceptual | None, cache_dir: Path | None, device: torch.device,
                 progress: Progress | None = None, generator_path: str | Path | None = None) -> Embedded:
    """Crop a full-body photo around the person at the canvas aspect and invert it into the body generator.

    With a mask (non-zero = person, same size as the photo) the crop centres on the person and
    the background is left out of the loss; without one the crop centres on the detected face.
    """
    photo = load_photo(photo_path)
    _, H, W = G.img_shape
    mask_img = open_rgb(mask_path).convert("L") if mask_path is not None else None
    try:
        detector = LandmarkDetector() if mask_img is None else None
    except ValueError:
        detector = None
    crop, mcrop = person_crop(photo, H, W, mask_img, detector)
    target = to_tensor(crop, device)
    mask = to_tensor(mcrop, device) if mcrop is not None else None
    key = {"kind": "outfit", "photo": photo_info(photo_path, photo)["sha256"],
           "mask": hashlib.sha256(Path(mask_path).read_bytes()).hexdigest() if mask_path else None}
    emb = embed(G, target, cfg, perceptual, key, mask=mask, cache_dir=cache_dir, progress=progress,
                generator_path=generator_path)
    emb.info.update(photo=photo_info(photo_path, photo), mask=mask_path)
    return emb


def batch_identity(net: torch.nn.Module, aligned: list[Image.Image], size: int, device: torch.device
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """One identity loss per image of a batch (each towards its own photo): ``img [B, 3, size, size] -> [B]``."""
    losses = [face_identity(net, a, size, device)[0] for a in aligned]
    return lambda img: torch.cat([f(img[i:i + 1]) for i, f in enumerate(losses)])
