"""The user's photos as generator latents: align a selfie or crop an outfit photo, invert, cache.

``embed_face`` FFHQ-aligns a selfie to the face generator's resolution, projects it (W+ by
default, optionally with pivotal tuning) with the perceptual, pixel and identity losses, and
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
from insetgan import losses as L
from insetgan.align import LandmarkDetector, align_ffhq, ffhq_quad, open_rgb
from insetgan.invert import InvertConfig, PTIConfig, invert, quality, synthesize, with_noise
from insetgan.networks import native
from insetgan.networks.generator import Generator

log = logging.getLogger(__name__)

MIN_FACE_PX = 64  # smallest FFHQ quad side (source pixels) we align; smaller faces are mostly blur
SMALL_PHOTO_PX = 1024  # photos up to this side are searched again with 2x detector upsampling
MIN_PHOTO_PX = 16
Progress = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class EmbedConfig:
    """How a photo is embedded: the projector, optional pivotal tuning, the identity weight."""

    invert: InvertConfig = InvertConfig()
    pti: PTIConfig | None = None
    identity_weight: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"invert": self.invert.to_dict(), "pti": self.pti.to_dict() if self.pti else None,
                "identity_weight": self.identity_weight}


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


def load_photo(path: str) -> Image.Image:
    """An RGB photo (EXIF applied) that is large enough to use; one-line errors otherwise."""
    img = open_rgb(path)
    if min(img.size) < MIN_PHOTO_PX:
        raise ValueError(f"image {path} is too small ({img.width}x{img.height})")
    return img


def align_face(photo: Image.Image, size: int, what: str = "the photo",
               detector: LandmarkDetector | None = None) -> tuple[Image.Image, np.ndarray]:
    """FFHQ-align the largest face of ``photo`` to ``size``² → (aligned image, its 68 landmarks in the photo)."""
    detector = detector or LandmarkDetector()
    try:
        face = detector.largest(photo, what)
    except ValueError:
        if max(photo.size) > SMALL_PHOTO_PX:
            raise
        face = detector.largest(photo, what, upsample=2)  # small photo: look for small faces too
    quad = ffhq_quad(face.landmarks)
    side = float(np.hypot(*(quad[3] - quad[0])))
    if side < MIN_FACE_PX:
        raise ValueError(f"the face in {what} is too small to align ({side:.0f} px; need at least "
                         f"{MIN_FACE_PX} px): use a larger or closer photo")
    return align_ffhq(photo, face.landmarks, size), face.landmarks


def person_crop(photo: Image.Image, height: int, width: int, mask: Image.Image | None = None,
                detector: LandmarkDetector | None = None) -> tuple[Image.Image, Image.Image | None]:
    """A person-centred crop of ``photo`` at the ``height``:``width`` aspect, resized to that size.

    Centred on the mask's bounding box (non-zero = person) when a mask is given, else on the
    largest detected face horizontally (full photo height), else on the photo centre. Parts of
    the window outside the photo are filled by reflection. Returns (crop, cropped mask or None).
    """
    W, H = photo.size
    if mask is not None:
        if mask.size != photo.size:
            raise ValueError(f"the mask is {mask.width}x{mask.height} but the photo is {W}x{H}")
        m = np.asarray(mask.convert("L")) > 0
        if not m.any():
            raise ValueError("the mask is empty (no person pixels)")
        ys, xs = np.nonzero(m)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        need_h = max((y1 - y0) * 1.05, (x1 - x0) * 1.05 * height / width)
    else:
        faces = []
        if detector is not None:
            faces = detector.faces(photo)
        cx = (faces[0].rect[0] + faces[0].rect[2]) / 2 if faces else W / 2
        cy, need_h = H / 2, float(H)
    win_h = need_h
    win_w = win_h * width / height
    left, top = int(round(cx - win_w / 2)), int(round(cy - win_h / 2))
    box = (left, top, left + int(round(win_w)), top + int(round(win_h)))
    crop = reflect_crop(photo, box).resize((width, height), Image.LANCZOS)
    mcrop = None
    if mask is not None:
        mcrop = reflect_crop(mask.convert("L"), box, fill_zero=True).resize((width, height), Image.BILINEAR)
    return crop, mcrop


def _reflect_index(start: int, stop: int, size: int) -> np.ndarray:
    """Indices ``start..stop-1`` folded into ``0..size-1`` by mirror reflection (any distance outside)."""
    idx = np.arange(start, stop) % (2 * size)
    return np.where(idx >= size, 2 * size - 1 - idx, idx)


def reflect_crop(img: Image.Image, box: tuple[int, int, int, int], fill_zero: bool = False) -> Image.Image:
    """Crop ``box`` (x0, y0, x1, y1; may extend outside) with mirror padding, or zeros (for masks)."""
    arr = np.asarray(img)
    H, W = arr.shape[:2]
    x0, y0, x1, y1 = box
    out = arr[_reflect_index(y0, y1, H)][:, _reflect_index(x0, x1, W)]
    if fill_zero:
        ys, xs = np.arange(y0, y1), np.arange(x0, x1)
        inside = ((ys >= 0) & (ys < H))[:, None] & ((xs >= 0) & (xs < W))[None, :]
        out = np.where(inside.reshape(inside.shape + (1,) * (arr.ndim - 2)), out, 0).astype(arr.dtype)
    return Image.fromarray(np.ascontiguousarray(out))


def to_tensor(img: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """A PIL RGB image as [1, 3, H, W] in [-1, 1] (or a mode-L mask as [1, 1, H, W] in [0, 1])."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        return torch.from_numpy(arr / 255.0)[None, None].to(device)
    return ((torch.from_numpy(arr).permute(2, 0, 1)[None] - 127.5) / 127.5).to(device)


def state_hash(G: Generator) -> str:
    """SHA-256 of a generator's tensors (names and bytes): identifies the network for caching."""
    h = hashlib.sha256()
    for k, v in G.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _cache_names(kind: str, key: str) -> tuple[str, str]:
    return f"{kind}-{key[:20]}.npz", f"{kind}-{key[:20]}.safetensors"


def embed(G: Generator, target: torch.Tensor, cfg: EmbedConfig, perceptual: L.Perceptual | None,
          kind: str, key_parts: dict[str, Any], mask: torch.Tensor | None = None,
          identity: Callable[[torch.Tensor], torch.Tensor] | None = None, cache_dir: Path | None = None,
          progress: Progress | None = None) -> Embedded:
    """Invert ``target`` [1, 3, H, W] into ``G``: the generator that renders it and its W+ latent.

    A result already in ``cache_dir`` is reused. A new one is returned in ``cache_files``
    (file name → bytes) for the caller to write with its other outputs, so a job that fails
    later leaves nothing behind.
    """
    key = hashlib.sha256(json.dumps({**key_parts, "net": state_hash(G), "cfg": cfg.to_dict()},
                                    sort_keys=True).encode()).hexdigest()
    info: dict[str, Any] = {"cache_key": key[:20], "config": cfg.to_dict()}
    npz_name, net_name = _cache_names(kind, key)
    t0 = time.perf_counter()
    cached = cache_dir is not None and (cache_dir / npz_name).is_file() and \
        (cfg.pti is None or (cache_dir / net_name).is_file())
    files: dict[str, bytes] = {}
    if cached:
        with np.load(cache_dir / npz_name, allow_pickle=False) as data:
            ws = torch.from_numpy(data["ws"]).to(target.device)
            noise = [torch.from_numpy(data[f"noise_{i:02d}"]).to(target.device)
                     for i in range(len(G.noise_buffers()))]
        tuned = native.load(cache_dir / net_name)[0].to(target.device) if cfg.pti is not None else None
    else:
        inv_cfg = dataclasses.replace(cfg.invert, identity_weight=cfg.identity_weight if identity else 0.0)
        res = invert(G, target, inv_cfg, cfg.pti, perceptual, mask, identity, progress, progress)
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
        start = synthesize(G, G.w_avg.to(ws).reshape(1, 1, -1).expand_as(ws).contiguous(), None)
    info["seconds"] = round(time.perf_counter() - t0, 3)
    info["metrics"] = {"start": quality(start, target, perceptual), "inverted": quality(recon, target, perceptual)}
    return Embedded(G_user, ws, target, recon, mask, info, files)


def photo_info(path: str, image: Image.Image) -> dict[str, Any]:
    """Report entry for an input photo: path, hash, size."""
    return {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "size": [image.height, image.width]}


def aligned_size(G: Generator) -> int:
    """The face side of a square face generator (FFHQ alignment target); error for non-square ones."""
    _, H, W = G.img_shape
    if H != W:
        raise ValueError(f"face alignment needs a square face generator, this one is {H}x{W}")
    return H


def face_identity(net: torch.nn.Module, aligned: Image.Image, size: int, device: torch.device,
                  detector: LandmarkDetector | None = None
                  ) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """The MobileFaceNet identity loss ``img [B, 3, size, size] -> [B]`` towards an FFHQ-aligned selfie.

    The 5 points are detected once on the aligned selfie (upscaled when small) and reused for
    every generated face, which the face generator renders in the same FFHQ layout.
    """
    from insetgan.identity import detect_five, identity_loss, identity_target, points_for_size

    pts = detect_five(aligned, detector=detector)
    if pts is None:
        raise ValueError("no face landmarks found on the aligned selfie: use a clearer, frontal photo")
    pts = points_for_size(pts, (aligned.height, aligned.width), (size, size))
    target = identity_target(net, to_tensor(aligned.resize((size, size), Image.LANCZOS), device), pts)
    return (lambda img: identity_loss(net, img, target)), {"points": np.round(pts, 2).tolist()}


def embed_face(photo_path: str, G: Generator, cfg: EmbedConfig, perceptual: L.Perceptual | None,
               cache_dir: Path | None, device: torch.device, progress: Progress | None = None,
               identity_net: torch.nn.Module | None = None) -> tuple[Embedded, Image.Image, Callable | None]:
    """Align and invert a selfie into the face generator.

    Returns (the embedding, the selfie aligned at 256 px for the dlib metric, the identity
    loss for the face inset or ``None`` when no identity network is given).
    """
    photo = load_photo(photo_path)
    size = aligned_size(G)
    detector = LandmarkDetector()
    aligned, landmarks = align_face(photo, size, photo_path, detector)
    metric_img = align_ffhq(photo, landmarks, 256)
    target = to_tensor(aligned, device)
    identity, id_info = (None, {})
    if identity_net is not None:
        identity, id_info = face_identity(identity_net, metric_img, size, device, detector)
    emb = embed(G, target, cfg, perceptual, "face", {"photo": photo_info(photo_path, photo)["sha256"],
                                                      "size": size, "identity": identity is not None},
                identity=identity, cache_dir=cache_dir, progress=progress)
    emb.info.update(photo=photo_info(photo_path, photo), aligned_size=size, identity_points=id_info.get("points"))
    return emb, metric_img, identity


def embed_outfit(photo_path: str, mask_path: str | None, G: Generator, cfg: EmbedConfig,
                 perceptual: L.Perceptual | None, cache_dir: Path | None, device: torch.device,
                 progress: Progress | None = None) -> Embedded:
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
    key = {"photo": photo_info(photo_path, photo)["sha256"],
           "mask": hashlib.sha256(Path(mask_path).read_bytes()).hexdigest() if mask_path else None}
    emb = embed(G, target, cfg, perceptual, "outfit", key, mask=mask, cache_dir=cache_dir, progress=progress)
    emb.info.update(photo=photo_info(photo_path, photo), mask=mask_path)
    return emb


def dlib_distances(references: list[Image.Image], faces: list[Image.Image], desc: Any = None
                   ) -> list[float | None]:
    """dlib face-descriptor distance of each face to its reference (``None`` where dlib finds no face).

    Pass a loaded :class:`insetgan.identity.FaceDescriptor` as ``desc`` to reuse its dlib models.
    """
    from insetgan.identity import FaceDescriptor

    desc = desc or FaceDescriptor()
    out = []
    for ref, face in zip(references, faces):
        d = desc.distance(ref, face)
        out.append(None if d is None else round(float(d), 4))
    return out


def identity_report(photo: Image.Image, before: torch.Tensor, after: torch.Tensor, boxes_before: list,
                    boxes_after: list) -> dict[str, Any]:
    """dlib face-descriptor distances between the user's aligned photo and each face crop, before and after."""
    from insetgan.identity import DLIB_SAME_PERSON, FaceDescriptor

    def crops(imgs: torch.Tensor, boxes: list) -> list[Image.Image]:
        # The box with a quarter-side margin (dlib's detector wants some context), upscaled
        # smoothly to 256 px: a blocky upscale of a small face defeats its HOG features.
        out = []
        for i in range(imgs.shape[0]):
            b, m = boxes[i], 0.25 * max(boxes[i].w, boxes[i].h)
            crop = Image.fromarray(iio.to_uint8(imgs[i])).crop(
                (round(b.x - m), round(b.y - m), round(b.x + b.w + m), round(b.y + b.h + m)))
            out.append(crop.resize((256, 256), Image.BICUBIC))
        return out

    n, desc = before.shape[0], FaceDescriptor()
    return {"metric": "dlib-face-descriptor (euclidean)", "same_person_below": DLIB_SAME_PERSON,
            "before": dlib_distances([photo] * n, crops(before, boxes_before), desc),
            "after": dlib_distances([photo] * n, crops(after, boxes_after), desc)}


def load_targets(paths: list[str], G: Generator, align: bool, device: torch.device
                 ) -> tuple[torch.Tensor, list[Image.Image], list[dict[str, Any]]]:
    """Photos as generator targets [B, 3, H, W]: FFHQ-aligned faces (``align``) or crops at the network's aspect.

    Also returns the faces aligned at 256 px (for identity losses and the dlib metric; empty
    without ``align``) and the report entries of the photos.
    """
    _, H, W = G.img_shape
    detector = None
    if align:
        if H != W:
            raise ValueError(f"--align needs a square face network (this one is {H}x{W}); use --no-align")
        detector = LandmarkDetector()
    targets, metric_imgs, infos = [], [], []
    for path in paths:
        photo = load_photo(path)
        if align:
            aligned, lm = align_face(photo, H, path, detector)
            metric_imgs.append(align_ffhq(photo, lm, 256))
        else:
            aligned, _ = person_crop(photo, H, W)
        targets.append(to_tensor(aligned, device))
        infos.append(photo_info(path, photo))
    return torch.cat(targets), metric_imgs, infos


def batch_identity(net: torch.nn.Module, aligned: list[Image.Image], size: int, device: torch.device
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """One identity loss per image of a batch (each towards its own photo): ``img [B, 3, size, size] -> [B]``."""
    losses = [face_identity(net, a, size, device)[0] for a in aligned]
    return lambda img: torch.cat([f(img[i:i + 1]) for i, f in enumerate(losses)])


@dataclass
class InvertOutput:
    """Files of an ``invert`` run (name → bytes, report included) and the tuned generator (PTI) if any."""

    files: dict[str, bytes]
    report: dict[str, Any]
    tuned: Generator | None


def run_invert(G: Generator, target: torch.Tensor, cfg: InvertConfig, pti: PTIConfig | None,
               perceptual: L.Perceptual | None, report_head: dict[str, Any], mask: torch.Tensor | None = None,
               identity: Callable[[torch.Tensor], torch.Tensor] | None = None,
               metric_imgs: list[Image.Image] | None = None, progress: Progress | None = None,
               pti_progress: Progress | None = None) -> InvertOutput:
    """Project ``target`` (then PTI), measure start / projection / tuned, and encode every output file."""
    res = invert(G, target, cfg, pti, perceptual, mask, identity, progress, pti_progress)
    proj, tuned, pti_s = res.projection, res.tuned, res.pti_seconds
    with torch.no_grad():
        start = synthesize(G, G.w_avg.reshape(1, 1, -1).expand_as(proj.ws).contiguous(), None)
        recon = synthesize(G, proj.ws, proj.noise)
        final = synthesize(tuned, proj.ws, proj.noise) if tuned is not None else recon
    metrics: dict[str, Any] = {"start": quality(start, target, perceptual),
                               "projected": quality(recon, target, perceptual)}
    if tuned is not None:
        metrics["tuned"] = quality(final, target, perceptual)
    if metric_imgs:
        faces = [Image.fromarray(iio.to_uint8(final[i])).resize((256, 256), Image.LANCZOS)
                 for i in range(final.shape[0])]
        try:
            metrics["identity_dlib"] = dlib_distances(metric_imgs, faces)
        except ValueError as exc:
            metrics["identity_dlib"] = f"unavailable: {exc}"

    def u8(x: torch.Tensor) -> list[np.ndarray]:
        return [iio.to_uint8(x[i]) for i in range(x.shape[0])]

    files: dict[str, bytes] = {}
    arrays = {"ws": proj.ws.cpu().numpy(), **{f"noise_{i:02d}": n.cpu().numpy() for i, n in enumerate(proj.noise)}}
    files["latents.npz"] = iio.encode(lambda buf: np.savez(buf, **arrays))
    files["target.png"] = iio.png_bytes(iio.grid(u8(target)))
    files["reconstruction.png"] = iio.png_bytes(iio.grid(u8(final)))
    columns = [u8(target), u8(start), u8(recon)] + ([u8(final)] if tuned is not None else [])
    files["compare.png"] = iio.png_bytes(iio.grid([col[i] for i in range(target.shape[0]) for col in columns],
                                                  cols=len(columns)))
    history = proj.history[:: max(1, len(proj.history) // 50)] + proj.history[-1:]
    report = dict(report_head)
    report.update(config=cfg.to_dict(), pti=pti.to_dict() if pti else None, metrics=metrics,
                  losses=[{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in history])
    report["timings_s"] = {**report_head.get("timings_s", {}), "project": round(proj.seconds, 3),
                           "per_step": round(proj.seconds / cfg.steps, 5), "pti": round(pti_s, 3)}
    report["outputs"] = sorted(files) + (["tuned.safetensors"] if tuned is not None else []) + ["report.json"]
    files["report.json"] = iio.json_bytes(report)
    return InvertOutput(files, report, tuned)
