"""The encoder training run (:func:`train_encoder`): steps, snapshots with quality numbers, sample grids.

A run folder holds, every ``snapshot_kimg`` and at the end: ``state-KKKKKK.pt`` (resumable),
``encoder-KKKKKK.safetensors`` and ``encoder-latest.safetensors`` (the encoder file, with the
generator's hash and the snapshot's numbers in its metadata), ``recon-KKKKKK.png`` (pairs of
input | reconstruction: held-out photos, then generator samples) and one line of
``metrics.jsonl``: PSNR of G(E(x)) against x on the held-out photos and on fixed samples, the
samples' latent error, the MobileFaceNet identity cosine (faces), the PSNR of ``G(w_avg)`` for
reference, and the encoder's seconds per image.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from insetgan.errors import InsetganError
from insetgan.inversion.align import LandmarkDetector
from insetgan.inversion.encoder_training import (EncoderTrainConfig, EncoderTrainState, TrainContext, face_identity,
                                                 load_state, new_state, sample_ws, save_state, train_step)
from insetgan.inversion.identity import detect_five, load_mobilefacenet
from insetgan.inversion.invert import psnr
from insetgan.inversion.perceptual import DeepFeatureDistance
from insetgan.io import atomic_write_bytes, grid, png_bytes, to_uint8
from insetgan.networks.encoder_files import save_encoder
from insetgan.networks.generator import Generator
from insetgan.progress import Progress
from insetgan.train.data import ImageSet

log = logging.getLogger(__name__)

EVAL_SEED = 2**31 - 1  # the fixed samples of the snapshots (apart from any training step's draws)
EVAL_PSI = 0.75
POINT_IMAGES = 16  # dataset faces whose detected five points are averaged
HOLDOUT_STRIDE = 97


@dataclass(frozen=True, eq=False)
class EvalSet:
    """Held-out photos and fixed generator samples (with their W+) that every snapshot measures."""

    reals: torch.Tensor
    fakes: torch.Tensor
    fake_ws: torch.Tensor


def face_points(images: torch.Tensor, count: int = POINT_IMAGES) -> torch.Tensor | None:
    """The median five points [5, 2] dlib finds on the first ``count`` aligned faces (None: no dlib, no face)."""
    try:
        detector = LandmarkDetector()
    except InsetganError as exc:
        log.warning("%s: training without the identity loss", exc)
        return None
    found = []
    for img in images[:count]:
        pts = detect_five(Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy())), detector=detector)
        if pts is not None:
            found.append(pts)
    if not found:
        log.warning("dlib finds no face in the dataset's first images: training without the identity loss")
        return None
    return torch.tensor(np.median(found, axis=0), dtype=torch.float32)


def holdout_indices(n: int, count: int) -> torch.Tensor:
    """The held-out images of a dataset of ``n``: every :data:`HOLDOUT_STRIDE`-th from the first, ``count`` of them.

    A fixed stride spreads them over the dataset (prepared datasets are sorted by source name,
    which may follow age or identity) and keeps them the same when the dataset is prepared again
    from more photos in the same order, so a resumed run's numbers stay comparable. Datasets
    under ``HOLDOUT_STRIDE × count`` images use the widest stride that fits.
    """
    stride = min(HOLDOUT_STRIDE, n // count) if count else 1
    return torch.arange(count) * stride


def split(data: ImageSet, cfg: EncoderTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(training photos, held-out photos) of the dataset (see :func:`holdout_indices`)."""
    n = data.images.shape[0]
    if n <= cfg.holdout and cfg.batch_real > 0:
        raise InsetganError(f"the dataset has {n} images: it needs more than --holdout {cfg.holdout}")
    held = holdout_indices(n, min(cfg.holdout, n))
    keep = torch.ones(n, dtype=torch.bool)
    keep[held] = False
    return data.images[keep], data.images[held]


def make_context(G: Generator, data: ImageSet, cfg: EncoderTrainConfig, device: torch.device) -> TrainContext:
    """The frozen generator, the training photos and the losses; the identity loss for face datasets."""
    if tuple(data.images.shape[1:]) != tuple(G.img_shape):
        raise InsetganError(f"the dataset's images are {list(data.images.shape[1:])}, the generator makes "
                            f"{list(G.img_shape)}: prepare the photos at the generator's size")
    G = G.to(device).eval().requires_grad_(False)
    perceptual = DeepFeatureDistance(min_size=cfg.perceptual_size).to(device) if cfg.perceptual_weight > 0 else None
    identity_net, points = None, None
    if data.meta.get("kind") == "faces" and cfg.identity_weight > 0:
        points = face_points(data.images)
        if points is not None:
            identity_net = load_mobilefacenet(device=device)
    return TrainContext(G, split(data, cfg)[0], perceptual, identity_net, points, device)


def eval_set(ctx: TrainContext, data: ImageSet, cfg: EncoderTrainConfig, count: int = 64) -> EvalSet:
    """Up to ``count`` held-out photos and ``count`` fixed samples (ψ :data:`EVAL_PSI`, no mixing)."""
    G, dev = ctx.G, ctx.device
    reals = split(data, cfg)[1][:count].to(dev, torch.float32) / 127.5 - 1
    gen = torch.Generator().manual_seed(EVAL_SEED)
    z = torch.randn(count, G.z_dim, generator=gen).to(dev)
    with torch.no_grad():
        ws = sample_ws(G, z, z, torch.full((count,), EVAL_PSI, device=dev),
                       torch.full((count,), G.num_ws, device=dev))
        fakes = G.synthesis(ws, noise_mode="const")
    return EvalSet(reals, fakes, ws)


def _reconstruct(encoder: torch.nn.Module, G: Generator, images: torch.Tensor, chunk: int = 16
                 ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(W+, G(W+), encoder seconds per image) of ``images``, in chunks."""
    ws, recon, seconds = [], [], 0.0
    with torch.no_grad():
        for part in images.split(chunk):
            t0 = time.perf_counter()
            w = encoder(part)
            seconds += time.perf_counter() - t0
            ws.append(w)
            recon.append(G.synthesis(w, noise_mode="const"))
    return torch.cat(ws), torch.cat(recon), seconds / max(images.shape[0], 1)


def evaluate(state: EncoderTrainState, ctx: TrainContext, ev: EvalSet) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The snapshot's numbers and the tiles of its grid (input, reconstruction, … for photos then samples)."""
    G, encoder = ctx.G, state.encoder.eval()
    out: dict[str, Any] = {}
    tiles: list[np.ndarray] = []
    w_avg = G.w_avg.view(1, 1, -1).expand(1, G.num_ws, -1)
    with torch.no_grad():
        mean_img = G.synthesis(w_avg.contiguous(), noise_mode="const")
    for name, images in (("real", ev.reals), ("fake", ev.fakes)):
        if images.shape[0] == 0:
            continue
        ws, recon, seconds = _reconstruct(encoder, G, images)
        out[f"psnr_{name}"] = round(float(psnr(recon, images).mean()), 3)
        out[f"psnr_{name}_w_avg"] = round(float(psnr(mean_img.expand_as(images), images).mean()), 3)
        out["seconds_per_image"] = round(seconds, 5)
        if name == "fake":
            out["latent_mse"] = round(float((ws - ev.fake_ws).square().mean()), 5)
        with torch.no_grad():
            ident = face_identity(ctx, recon, images)
        if ident is not None:
            out[f"identity_cos_{name}"] = round(float(1 - ident.mean()), 4)
        for a, b in zip(images[:8], recon[:8]):
            tiles += [to_uint8(a.cpu()), to_uint8(b.cpu())]
    encoder.train()
    return out, tiles


def snapshot(state: EncoderTrainState, cfg: EncoderTrainConfig, ctx: TrainContext, ev: EvalSet, outdir: Path,
             extra: dict[str, Any]) -> dict[str, Any]:
    """Write the state, the encoder files, the grid and a ``metrics.jsonl`` line; returns the line."""
    tag = f"{state.nimg // 1000:06d}"
    numbers, tiles = evaluate(state, ctx, ev)
    line = {"kimg": round(state.nimg / 1000, 3), "step": state.step, **numbers, **extra}
    save_state(state, cfg, outdir / f"state-{tag}.pt")
    meta = {"training": {"kimg": state.nimg / 1000, "step": state.step, "config": cfg.to_dict()}, "quality": numbers}
    for name in (f"encoder-{tag}.safetensors", "encoder-latest.safetensors"):
        save_encoder(state.encoder, outdir / name, state.generator_sha256, meta)
    atomic_write_bytes(outdir / f"recon-{tag}.png", png_bytes(grid(tiles, cols=min(2 * cfg.grid, len(tiles)))))
    with open(outdir / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    return line


def train_encoder(G: Generator, data: ImageSet, cfg: EncoderTrainConfig, outdir: Path, device: torch.device,
                  resume: str | None = None, progress: Progress | None = None) -> EncoderTrainState:
    """Train until ``cfg.kimg`` thousand images, with snapshots (see the module) every ``cfg.snapshot_kimg``."""
    ctx = make_context(G, data, cfg, device)
    state = load_state(resume, cfg, ctx.G, device) if resume else new_state(cfg, ctx.G, device)
    ev = eval_set(ctx, data, cfg)
    total = int(cfg.kimg * 1000)
    snap_every = max(int(cfg.snapshot_kimg * 1000), cfg.batch)
    next_snap = (state.nimg // snap_every + 1) * snap_every
    t_start, n_start = time.perf_counter(), state.nimg
    if state.nimg == 0:  # the starting point of the curves
        snapshot(state, cfg, ctx, ev, outdir, {})
    while state.nimg < total:
        losses = train_step(state, cfg, ctx)
        ips = (state.nimg - n_start) / max(time.perf_counter() - t_start, 1e-9)
        if progress is not None:
            progress(min(state.nimg, total), total, {**losses, "kimg": state.nimg / 1000, "img/s": ips})
        if state.nimg >= next_snap or state.nimg >= total:
            line = snapshot(state, cfg, ctx, ev, outdir, {"img_per_s": round(ips, 3), "losses": losses})
            log.info("encoder snapshot at %.1f kimg: %s", state.nimg / 1000,
                     {k: v for k, v in line.items() if k.startswith(("psnr", "identity", "latent"))})
            next_snap = (state.nimg // snap_every + 1) * snap_every
    return state
