"""The generate job: a generator's images for a list of seeds, a grid and the report."""
from __future__ import annotations

import time

import numpy as np

from insetgan import io as iio
from insetgan.devices import torch_device
from insetgan.jobs.report import JobOutput, finished, job_report
from insetgan.jobs.network_requests import GenerateRequest
from insetgan.models import load_network
from insetgan.sampling import sample_seeds


def run_generate(req: GenerateRequest) -> JobOutput:
    """Sample every seed: ``seedNNNN.png`` (and ``.npy`` with ``raw``), ``grid.png`` and the report."""
    seeds = req.seed_list()
    dev = torch_device(req.device)
    t0 = time.perf_counter()
    ckpt, info = load_network(req.network, dev, "--network")
    load_s = time.perf_counter() - t0
    G = ckpt.generator
    cfg = req.sample_config
    cfg.validate(G)
    t1 = time.perf_counter()
    images, per_seed = sample_seeds(G, seeds, cfg)
    gen_s = time.perf_counter() - t1
    arrays = [iio.to_uint8(img) for img in images]
    files: dict[str, bytes] = {}
    for seed, img, arr in zip(seeds, images, arrays):
        files[f"seed{seed:04d}.png"] = iio.png_bytes(arr)
        if req.raw:
            files[f"seed{seed:04d}.npy"] = iio.npy_bytes(img.numpy().astype(np.float32))
    files["grid.png"] = iio.png_bytes(iio.grid(arrays))
    transform = {"translate": list(cfg.translate) if cfg.translate else None, "rotate": cfg.rotate} \
        if cfg.sets_transform else {}
    settings = {"truncation_psi": req.trunc, "truncation_cutoff": req.trunc_cutoff, "noise_mode": req.noise_mode,
                "class": req.class_idx, "device": str(dev), "z": "np.random.RandomState(seed).randn(1, z_dim)",
                **transform}
    report = job_report(req.command, req, dev,
                        {"network": str(req.network), "path": info["path"], "sha256": info["sha256"],
                         "format": ckpt.format, "notes": list(ckpt.notes)},
                        {"load": load_s, "generate": gen_s, "per_seed": [round(s, 4) for s in per_seed]},
                        seeds=seeds, settings=settings, architecture=G.cfg.family, generator=G.cfg.to_dict(),
                        num_ws=G.num_ws)
    return finished(files, report)
