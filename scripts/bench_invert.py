#!/usr/bin/env python3
"""Benchmark the projector: time per step and time to reach a PSNR threshold, per face config and device.

Configs (random weights, full-size StyleGAN2 face configs: channel_base 32768, channel_max 512,
8 mapping layers, 512-D latents): ``64`` (64x64) and ``1024`` (1024x1024). The target is made
by the same generator from a known latent with fresh random noise; the threshold is the w_avg
start's PSNR + 10 dB (the test's bar). The PSNR per step comes from the projector's pixel
loss (the image it optimises, with its latent noise). ``--max-steps`` caps the steps run: the
time to the threshold is then only reported when the capped run reached it. The encoder column
is one forward pass of an encoder built for the config (untrained: its cost, not its start).

    python scripts/bench_invert.py                         # 64 (full run) and 1024 (3 steps)
    python scripts/bench_invert.py --configs 64 --steps 1000

``--faces DATASET`` measures the built-in 64x64 face generator on real photos instead: ``--count``
images of a prepared face dataset that ``train-encoder`` holds out (every 97th from the first), inverted together
for each number of ``--face-steps`` with each ``--face-perceptual`` loss, and with an ``--encoder``
(default: the shipped one) alone and refined for each of ``--refine-steps``. Each row gives the
mean PSNR of the reconstruction, the median dlib face-descriptor distance to the photo
(identity; under 0.6 is probably the same person) and the seconds per image:

    python scripts/bench_invert.py --faces data/faces64 --face-perceptual l1-ssim,effnet-lite0 \
        --face-steps 100,300 --refine-steps 30,60,100
"""
from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
from bench_compose import _generator  # noqa: E402  (same full-size random generators)

from insetgan.inversion import invert as inv
from insetgan.inversion.encoder import encode
from insetgan.inversion.encoder_run import holdout_indices
from insetgan.inversion.identity import FaceDescriptor, dlib_distances
from insetgan.inversion.perceptual import load_perceptual
from insetgan.io import to_uint8
from insetgan.models import models_dir, resolve_network
from insetgan.networks.checkpoints import load_generator
from insetgan.networks.encoder import build_encoder, config_for
from insetgan.networks.encoder_files import load_encoder
from insetgan.sampling import z_from_seed
from insetgan.train.data import load_dataset


class _Stop(Exception):
    """Raised by the progress callback to end a capped run."""


CONFIGS = {"64": dict(img_resolution=64), "1024": dict(img_resolution=1024)}


def run(config: str, device: str, steps: int, max_steps: int | None, perceptual_spec: str) -> dict:
    """One row: project a known-latent image, return timings and PSNRs."""
    dev = torch.device(device)
    G = _generator(CONFIGS[config], 2, device)
    pc = load_perceptual(perceptual_spec, device=dev, warn=False)
    torch.manual_seed(0)
    with torch.no_grad():
        target = G.synthesis(G.mapping(z_from_seed(5, G.z_dim).to(dev), None, truncation_psi=0.7),
                             noise_mode="random")
    w_avg, _ = inv.w_stats(G)
    with torch.no_grad():
        start = float(inv.psnr(inv.synthesize(G, w_avg.expand(1, G.num_ws, -1).contiguous(), None), target))
    threshold = start + 10
    run_steps = min(steps, max_steps) if max_steps else steps
    cfg = inv.InvertConfig(steps=steps)
    stamps: list[float] = []
    history: list[dict] = []  # the losses of every step run, filled by the progress callback

    def progress(step: int, total: int, losses: dict) -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        history.append(losses)
        if run_steps < total and step >= run_steps:
            raise _Stop

    t0 = time.perf_counter()
    try:
        inv.project(G, target, cfg, pc.fn, progress=progress)
    except _Stop:
        pass
    per_step = (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1) if len(stamps) > 1 else stamps[0] - t0
    psnrs = [10 * math.log10(4 / max(h["pixel"], 1e-12)) for h in history]
    hit = next((i for i, p in enumerate(psnrs) if p >= threshold), None)
    enc = build_encoder(config_for(G), G, pretrained=False).to(dev).eval()
    encode(enc, G, target)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    encode(enc, G, target)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return {"config": config, "device": device, "perceptual": pc.name, "steps": run_steps, "per_step": per_step,
            "encoder_s": time.perf_counter() - t1,
            "start_psnr": start, "final_psnr": psnrs[-1] if psnrs else None,
            "to_threshold": (stamps[hit] - t0) if hit is not None else None,
            "threshold_step": hit + 1 if hit is not None else None}


def face_rows(dataset: str, count: int, steps: list[int], specs: list[str], encoder: str | None,
              refine: list[int]) -> list[dict]:
    """Rows of the real-photo benchmark (see the module): optimisation per loss and steps, the encoder alone, the
    encoder's start refined for each of ``refine`` steps (the default refinement settings, the first loss)."""
    import statistics

    from PIL import Image


    G = load_generator(resolve_network("default-face"))
    images = load_dataset(dataset).images
    target = images[holdout_indices(images.shape[0], count)].float() / 127.5 - 1
    desc = FaceDescriptor()
    refs = [Image.fromarray(to_uint8(t)) for t in target]

    def row(method: str, recon: torch.Tensor, seconds: float) -> dict:
        dist = [d for d in dlib_distances(refs, [Image.fromarray(to_uint8(r)) for r in recon], desc) if d is not None]
        return {"method": method, "psnr": float(inv.psnr(recon, target).mean()),
                "identity": statistics.median(dist) if dist else None, "found": len(dist), "count": count,
                "s_per_image": seconds / count}

    rows = [row("w_avg (start)", inv.synthesize(G, G.w_avg.expand(count, G.num_ws, -1).contiguous(), None), 0.0)]
    for spec in specs:
        pc = load_perceptual(spec, warn=False)
        for n in steps:
            t0 = time.perf_counter()
            proj = inv.project(G, target, inv.InvertConfig(steps=n), pc.fn)
            with torch.no_grad():
                recon = inv.synthesize(G, proj.ws, proj.noise)
            rows.append(row(f"optimise {n} steps, {pc.name}", recon, time.perf_counter() - t0))
    if encoder:
        enc, _ = load_encoder(encoder, G)
        t0 = time.perf_counter()
        ws = encode(enc, G, target)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            rows.append(row("encoder only", inv.synthesize(G, ws, None), seconds))
        pc = load_perceptual(specs[0] if specs else "auto", warn=False)
        for n in refine:
            t0 = time.perf_counter()
            proj = inv.project(G, target, inv.refine_config(n), pc.fn, init_ws=ws)
            with torch.no_grad():
                recon = inv.synthesize(G, proj.ws, proj.noise)
            rows.append(row(f"encoder + {n} refinement steps, {pc.name}", recon, seconds + time.perf_counter() - t0))
    return rows


def main_faces(args: argparse.Namespace) -> None:
    """Print the real-photo table."""
    print(f"# bench_invert --faces {args.faces}: {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, {args.count} held-out photos")
    print("| method | PSNR | median identity distance (dlib) | faces found | s/image |")
    print("|---|---:|---:|---:|---:|")
    steps = [int(s) for s in args.face_steps.split(",") if s]
    refine = [int(s) for s in args.refine_steps.split(",") if s]
    for r in face_rows(args.faces, args.count, steps, [p for p in args.face_perceptual.split(",") if p],
                       args.encoder, refine):
        ident = f"{r['identity']:.3f}" if r["identity"] is not None else "-"
        print(f"| {r['method']} | {r['psnr']:.2f} | {ident} | {r['found']}/{r['count']} | {r['s_per_image']:.3f} |",
              flush=True)


def main() -> None:
    """Parse arguments, run every row, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="64,1024")
    ap.add_argument("--devices", default="cpu" + (",cuda" if torch.cuda.is_available() else ""))
    ap.add_argument("--steps", type=int, default=300, help="Projector schedule length (the default).")
    ap.add_argument("--max-steps", default="64:0,1024:3",
                    help="Per-config cap on steps actually run (0 = none), e.g. 64:0,1024:3; CUDA runs are uncapped.")
    ap.add_argument("--perceptual", default="auto")
    ap.add_argument("--faces", default=None, help="A prepared 64x64 face dataset: the real-photo benchmark.")
    ap.add_argument("--count", type=int, default=8, help="Photos (the first ones train-encoder holds out).")
    ap.add_argument("--face-steps", default="100,300", help="Comma-separated step counts ('' for none).")
    ap.add_argument("--face-perceptual", default="l1-ssim,effnet-lite0")
    ap.add_argument("--encoder", default=str(models_dir() / "face-encoder.safetensors"),
                    help="An encoder file for the face generator ('' for none).")
    ap.add_argument("--refine-steps", default=f"30,{inv.REFINE_STEPS},100",
                    help="Refinement lengths after the encoder's start ('' for none).")
    args = ap.parse_args()
    if args.faces:
        main_faces(args)
        return
    caps = {k: int(v) for k, v in (item.split(":") for item in args.max_steps.split(","))}
    print(f"# bench_invert: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print("| config | device | perceptual | steps run | s/step | encoder s | start PSNR | final PSNR | "
          "+10 dB reached at |")
    print("|---|---|---|---|---|---|---|---|---|")
    for config in args.configs.split(","):
        for device in args.devices.split(","):
            cap = None if device == "cuda" else (caps.get(config) or None)
            r = run(config, device, args.steps, cap, args.perceptual)
            reach = (f"step {r['threshold_step']}, {r['to_threshold']:.1f} s" if r["to_threshold"] is not None
                     else "not within the run")
            final = f"{r['final_psnr']:.2f}" if r["final_psnr"] is not None else "-"
            print(f"| {config}x{config} | {device} | {r['perceptual']} | {r['steps']}/{args.steps} | "
                  f"{r['per_step']:.4f} | {r['encoder_s']:.4f} | {r['start_psnr']:.2f} | {final} | {reach} |",
                  flush=True)


if __name__ == "__main__":
    main()
