"""The invert job: photos projected into a generator (then pivotal tuning), measured and encoded."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from insetgan import io as iio
from insetgan.devices import torch_device
from insetgan.inversion import photos
from insetgan.inversion.embedding import batch_identity
from insetgan.inversion.encoder import choose_start, encode
from insetgan.inversion.identity import dlib_distances, load_mobilefacenet
from insetgan.inversion.invert import Inversion, invert, quality, start_latent, synthesize
from insetgan.inversion.perceptual import PerceptualChoice, load_perceptual
from insetgan.jobs.progress import ProgressFactory
from insetgan.jobs.report import JobOutput, finished, job_report
from insetgan.jobs.requests import InvertRequest
from insetgan.jobs.setup import load_generator_for
from insetgan.networks import native
from insetgan.networks.generator import Generator


@dataclass
class Targets:
    """What an invert job projects: the photos as a batch [B, C, H, W], their aligned crops for the
    identity measure, their report entries, the region mask and the identity loss."""

    images: torch.Tensor
    metric_imgs: list[Image.Image]
    infos: list[dict[str, Any]]
    mask: torch.Tensor | None
    identity: Callable[[torch.Tensor], torch.Tensor] | None


def load_targets(req: InvertRequest, G: Generator, dev: torch.device) -> Targets:
    """The request's photos (aligned or cropped), mask and identity loss, for ``G``."""
    mask = None
    if req.mask is not None:  # read before the (slow) face alignment
        _, H, W = G.img_shape
        mask = photos.to_tensor(photos.load_photo(req.mask).convert("L").resize((W, H), Image.BILINEAR), dev)
    images, metric_imgs, infos = photos.load_targets(list(req.images), G, req.align, dev)
    identity = None
    if req.identity_weight > 0:
        identity = batch_identity(load_mobilefacenet(device=dev), metric_imgs, G.img_shape[1], dev)
    return Targets(images, metric_imgs, infos, mask, identity)


def _metrics(G: Generator, res: Inversion, t: Targets, perceptual: PerceptualChoice, init_ws: torch.Tensor | None
             ) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Start (``init_ws``, else w_avg), projection and tuned quality (and the dlib identity distance for aligned
    faces); the images start, projection (and tuned) of every photo."""
    proj, tuned = res.projection, res.tuned
    with torch.no_grad():
        start = synthesize(G, start_latent(G, init_ws, proj.ws.shape[0], "wplus", G.w_avg.reshape(1, 1, -1)), None)
        recon = synthesize(G, proj.ws, proj.noise)
        final = synthesize(tuned, proj.ws, proj.noise) if tuned is not None else recon
    metrics: dict[str, Any] = {"start": quality(start, t.images, perceptual.fn),
                               "projected": quality(recon, t.images, perceptual.fn)}
    if tuned is not None:
        metrics["tuned"] = quality(final, t.images, perceptual.fn)
    if t.metric_imgs:
        faces = [Image.fromarray(iio.to_uint8(final[i])).resize((256, 256), Image.LANCZOS)
                 for i in range(final.shape[0])]
        try:
            metrics["identity_dlib"] = dlib_distances(t.metric_imgs, faces)
        except ValueError as exc:
            metrics["identity_dlib"] = f"unavailable: {exc}"
    return metrics, [start, recon] + ([final] if tuned is not None else [])


def _encode(res: Inversion, target: torch.Tensor, images: list[torch.Tensor]) -> dict[str, bytes]:
    """latents.npz, projected_w.npz (as the official projector writes it), target.png, reconstruction.png and
    compare.png (target | start | projection | tuned)."""
    def u8(x: torch.Tensor) -> list[np.ndarray]:
        return [iio.to_uint8(x[i]) for i in range(x.shape[0])]

    proj = res.projection
    arrays = {"ws": proj.ws.cpu().numpy(), **{f"noise_{i:02d}": n.cpu().numpy() for i, n in enumerate(proj.noise)}}
    columns = [u8(target)] + [u8(x) for x in images]
    official = proj.ws.cpu().numpy().astype(np.float32)  # the official projector's file: key w, [1, num_ws, w_dim]
    return {"latents.npz": iio.encode(lambda buf: np.savez(buf, **arrays)),
            "projected_w.npz": iio.encode(lambda buf: np.savez(buf, w=official)),
            "target.png": iio.png_bytes(iio.grid(u8(target))),
            "reconstruction.png": iio.png_bytes(iio.grid(u8(images[-1]))),
            "compare.png": iio.png_bytes(iio.grid([col[i] for i in range(target.shape[0]) for col in columns],
                                                  cols=len(columns)))}


def run_invert(req: InvertRequest, progress: ProgressFactory) -> JobOutput:
    """Project the request's photos (then PTI), measure start / projection / tuned, and encode every file
    (``tuned.safetensors``: the tuned generator, with ``--mode pti``)."""
    dev = torch_device(req.device)
    t0 = time.perf_counter()
    ck, net_info = load_generator_for(req.network, dev, "--network", None)
    G = ck.generator
    pc = load_perceptual(req.perceptual, req.weights, dev, warn=False)
    t = load_targets(req, G, dev)
    start = choose_start(req.start_config, G, net_info["path"], dev)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    init_ws = encode(start.encoder, G, t.images) if start.encoder is not None else None
    encode_s = time.perf_counter() - t1
    cfg, pti = req.invert_config(init_ws is not None), req.pti_config
    bar, pti_bar = progress("invert", pc.notice), progress("pti", None)
    try:
        res = invert(G, t.images, cfg, pti, pc.fn, t.mask, t.identity, bar, pti_bar, init_ws)
    finally:
        bar.close()
        pti_bar.close()
    metrics, images = _metrics(G, res, t, pc, init_ws)
    files = _encode(res, t.images, images)
    if res.tuned is not None:
        files["tuned.safetensors"] = native.to_bytes(res.tuned, extra={"insetgan_pti": {
            "base_sha256": net_info["sha256"], "images": [i["sha256"] for i in t.infos]}})
    proj = res.projection
    history = proj.history[:: max(1, len(proj.history) // 50)] + proj.history[-1:]
    report = job_report(req.command, req, dev, {"network": net_info, "images": t.infos},
                        {"load": load_s, "encode": encode_s, "project": proj.seconds,
                         "per_step": proj.seconds / cfg.steps, "pti": res.pti_seconds},
                        start=start.describe(), mode=req.mode, aligned=req.align, mask=req.mask, perceptual=pc.name,
                        config=cfg.to_dict(), pti=pti.to_dict() if pti else None, metrics=metrics,
                        losses=[{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()}
                                for h in history])
    return finished(files, report)
