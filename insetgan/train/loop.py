"""The training loop (:func:`train`): steps until the run's length, with snapshots and sample grids."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from insetgan.errors import InsetganError
from insetgan.io import atomic_write_bytes, grid, png_bytes, to_uint8
from insetgan.networks import native
from insetgan.networks.generator import Generator
from insetgan.progress import Progress
from insetgan.sampling import z_from_seed
from insetgan.train.checkpoint import load_state, save_state
from insetgan.train.config import TrainConfig
from insetgan.train.data import ImageSet
from insetgan.train.distributed import rank_and_size
from insetgan.train.state import TrainState, build_state, warm_start
from insetgan.train.step import train_step

log = logging.getLogger(__name__)


def sample_grid(G: Generator, seeds: int, device: torch.device) -> np.ndarray:
    """A grid (HWC uint8) of ``seeds`` images from fixed seeds 0..seeds-1 (constant noise, no truncation)."""
    with torch.no_grad():
        z = torch.cat([z_from_seed(s, G.z_dim) for s in range(seeds)]).to(device)
        imgs = G(z, None, noise_mode="const")
    return grid([to_uint8(i) for i in imgs.cpu()], cols=int(math.ceil(math.sqrt(seeds))))


def train(data: ImageSet, cfg: TrainConfig, outdir: Path, device: torch.device, resume: str | None = None,
          progress: Progress | None = None, init: str | None = None) -> TrainState:
    """Train until ``cfg.kimg`` thousand images; snapshots (state, sample grid, safetensors G_ema) on rank 0.

    ``progress(images shown, images in all, losses with kimg and img/s)`` is called after
    every step on rank 0. ``init`` (a generator file, ignored with ``resume``) warm-starts G
    and G_ema (:func:`warm_start`); with ``cfg.d_warmup_kimg`` the new discriminator first
    trains alone against it.

    Every ``snapshot_kimg`` and at the end, rank 0 writes ``state-KKKKKK.pt`` (resumable),
    ``samples-KKKKKK.png`` and ``network-KKKKKK.safetensors`` (G_ema in our format, with the
    dataset's region priors in its metadata), and refreshes ``network-latest.safetensors``.
    """
    rank, world = rank_and_size()
    if resume:
        state = load_state(resume, cfg, data, device)
    else:
        state = build_state(cfg, data, device)
        if init:
            warm_start(state, init, device)
            if state.nimg >= cfg.kimg * 1000:
                raise InsetganError(f"--init: {init} is already at {state.nimg / 1000:g} kimg; "
                                    f"--kimg {cfg.kimg:g} must be more")
    total = int(cfg.kimg * 1000)
    snap_every = max(int(cfg.snapshot_kimg * 1000), cfg.batch)
    next_snap = (state.nimg // snap_every + 1) * snap_every
    t_last = time.perf_counter()
    while state.nimg < total:
        losses = train_step(state, data, cfg, device)
        now = time.perf_counter()
        ips = cfg.batch / max(now - t_last, 1e-9)
        t_last = now
        if progress is not None and rank == 0:
            progress(min(state.nimg, total), total, {**losses, "kimg": state.nimg / 1000, "img/s": ips})
        if rank == 0 and (state.nimg >= next_snap or state.nimg >= total):
            tag = f"{state.nimg // 1000:06d}"
            save_state(state, cfg, outdir / f"state-{tag}.pt")
            atomic_write_bytes(outdir / f"samples-{tag}.png", png_bytes(sample_grid(state.G_ema, cfg.grid, device)))
            extra = {"training": {"kimg": state.nimg / 1000, "step": state.step, "config": cfg.to_dict()},
                     "dataset": {k: data.meta[k] for k in ("kind", "source", "count") if k in data.meta}}
            if "priors" in data.meta:
                extra["region_priors"] = data.meta["priors"]
            for name in (f"network-{tag}.safetensors", "network-latest.safetensors"):
                native.save(state.G_ema, outdir / name, extra=extra)
            log.info("snapshot at %.1f kimg: %s", state.nimg / 1000, outdir / f"state-{tag}.pt")
            next_snap = (state.nimg // snap_every + 1) * snap_every
    return state
