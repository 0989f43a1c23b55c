"""The generate job: a generator's images for a list of seeds, a grid and the report.

With ``--edit`` each seed's W+ (after truncation) gets the W directions added and the
style-space directions act on the styles, as in the ``insetgan edit`` strips.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from insetgan import io as iio
from insetgan.devices import torch_device
from insetgan.editing.apply import synthesize_edited
from insetgan.editing.directions import LoadedEdit
from insetgan.editing.samples import sample_ws
from insetgan.jobs.report import JobOutput, finished, job_report
from insetgan.jobs.network_requests import GenerateRequest
from insetgan.jobs.start_edits import load_for
from insetgan.models import load_network
from insetgan.sampling import SampleConfig, input_transform, sample_seeds


@torch.no_grad()
def edited_seeds(G: torch.nn.Module, seeds: list[int], cfg: SampleConfig, edits: Sequence[LoadedEdit]
                 ) -> tuple[list[torch.Tensor], list[float]]:
    """One edited image [C, H, W] per seed (batch 1 each) and per-seed seconds; ``G`` is left as it was."""
    cfg.validate(G)
    images, seconds = [], []
    with input_transform(G, cfg):
        for seed in seeds:
            t0 = time.perf_counter()
            images.append(synthesize_edited(G, sample_ws(G, [seed], cfg), edits, 1.0, cfg.noise_mode)[0].float().cpu())
            seconds.append(time.perf_counter() - t0)
    return images, seconds


def run_generate(req: GenerateRequest) -> JobOutput:
    """Sample every seed: ``seedNNNN.png`` (and ``.npy`` with ``raw``), ``grid.png`` and the report."""
    seeds = req.seed_list()
    dev = torch_device(req.device)
    t0 = time.perf_counter()
    ckpt, info = load_network(req.network, dev, "--network")
    G = ckpt.generator
    edits = load_for(G, req.parsed_edits(), "--edit")
    load_s = time.perf_counter() - t0
    cfg = req.sample_config
    cfg.validate(G)
    t1 = time.perf_counter()
    images, per_seed = edited_seeds(G, seeds, cfg, edits) if edits else sample_seeds(G, seeds, cfg)
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
                        num_ws=G.num_ws, edits=[e.to_dict() for e in edits])
    return finished(files, report)
