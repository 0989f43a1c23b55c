#!/usr/bin/env python3
"""Benchmark training throughput (images/s) of `insetgan train` steps, per configuration and device.

Configurations (random data, the trainer's full step: G phase, D phase, lazy R1 every 16 steps
(its cost is averaged in by timing 16 steps), EMA), by default at the size of the built-in models
(scripts/train_default_models.sh: channel_base 2048, channel_max 128, 2 mapping layers, 128-D
latents, no noise inputs, DiffAugment colour+translation):
  32x32       shoes inset
  64x64       face inset
  256x128     body canvas

    python scripts/bench_train.py                 # all configs, CPU (and CUDA when present)
    python scripts/bench_train.py --batch 32 --steps 32 --channel-base 8192 --channel-max 256
    python scripts/bench_train.py --configs 64x64 --noise --aug ''     # the face recipe
    python scripts/bench_train.py --configs 256x128 --noise --d-arch projected --d-feature-res 128 --breakdown

``--breakdown`` adds, for the projected discriminator, where a step's discriminator time goes:
the feature network's forward (no graph, as in the D phase), its forward with the backward to
the image (the G phase), and the per-scale heads, at each ``--feature-sizes`` (the downsampled
copy the network is fed).
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from insetgan.networks.discriminator import DiscriminatorConfig
from insetgan.networks.efficientnet_lite import load_efficientnet_lite0
from insetgan.networks.projected import ProjectedDiscriminator
from insetgan.train.config import TrainConfig
from insetgan.train.data import ImageSet
from insetgan.train.state import build_state
from insetgan.train.step import train_step

CONFIGS = {"32x32": (32, 32), "64x64": (64, 64), "256x128": (256, 128)}


def measure(name: str, device: str, batch: int, steps: int, model: dict) -> tuple[float, float]:
    """(images/s, seconds per step) over ``steps`` steps after 2 warm-up steps (``model`` holds TrainConfig fields)."""
    H, W = CONFIGS[name]
    data = ImageSet((torch.rand(64, 3, H, W) * 255).to(torch.uint8), {})
    cfg = TrainConfig(batch=batch, **model)
    dev = torch.device(device)
    state = build_state(cfg, data, dev)
    for _ in range(2):
        train_step(state, data, cfg, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(state, data, cfg, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / steps
    return batch / sec, sec


def _timed(fn, repeat: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def breakdown(name: str, batch: int, feature_sizes: list[int], head_width: float, repeat: int = 5) -> None:
    """Print the projected discriminator's cost per image: feature forward, forward + backward to the image, heads."""
    H, W = CONFIGS[name]
    features = load_efficientnet_lite0()
    img = torch.rand(batch, 3, H, W) * 2 - 1
    print(f"\n# projected discriminator at {name}, batch {batch}, head width {head_width}: ms per image")
    print("| feature input | features fwd (no grad) | features fwd+bwd to image | heads fwd+bwd | whole D fwd+bwd |")
    print("|---|---|---|---|---|")
    for size in feature_sizes:
        cfg = DiscriminatorConfig(img_resolution=H, square=H == W, architecture="projected", feature_res=size,
                                  head_width=head_width)
        D = ProjectedDiscriminator(cfg, features)
        with torch.no_grad():
            proj = D.project(img)

        def fwd_nograd() -> None:
            with torch.no_grad():
                D.project(img)

        def fwd_bwd() -> None:
            x = img.clone().requires_grad_(True)
            sum(p.sum() for p in D.project(x)).backward()

        def heads() -> None:
            sum(h(p.detach()).sum() for h, p in zip(D.heads, proj)).backward()

        def whole() -> None:
            x = img.clone().requires_grad_(True)
            D(x).sum().backward()

        ms = [1000 * _timed(f, repeat) / batch for f in (fwd_nograd, fwd_bwd, heads, whole)]
        shape = f"{D.feature_size[0]}x{D.feature_size[1]}"
        print(f"| {shape} | " + " | ".join(f"{m:.1f}" for m in ms) + " |", flush=True)


def main() -> None:
    """Parse arguments, measure every (config, device), print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--devices", default="cpu" + (",cuda" if torch.cuda.is_available() else ""))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16, help="Timed steps (16 = one R1 interval).")
    ap.add_argument("--channel-base", type=int, default=2048)
    ap.add_argument("--channel-max", type=int, default=128)
    ap.add_argument("--z-dim", type=int, default=128)
    ap.add_argument("--map-layers", type=int, default=2)
    ap.add_argument("--noise", action="store_true", help="with noise inputs (default: without, as shipped)")
    ap.add_argument("--aug", default="color,translation")
    ap.add_argument("--d-arch", default="resnet", help="resnet, conv or projected")
    ap.add_argument("--d-feature-res", type=int, default=None, help="projected: the feature network's input")
    ap.add_argument("--d-head-width", type=float, default=0.5)
    ap.add_argument("--proj-d", type=float, default=0.0, help="a projected critic beside a resnet/conv one")
    ap.add_argument("--breakdown", action="store_true", help="the projected discriminator's cost, part by part")
    ap.add_argument("--feature-sizes", default="64,128,256", help="with --breakdown: feature inputs (long side)")
    args = ap.parse_args()
    model = dict(z_dim=args.z_dim, w_dim=args.z_dim, map_layers=args.map_layers, channel_base=args.channel_base,
                 channel_max=args.channel_max, noise=args.noise, aug=args.aug, d_arch=args.d_arch,
                 d_feature_res=args.d_feature_res, d_head_width=args.d_head_width, proj_d=args.proj_d)
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(f"# bench_train: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}, "
          f"batch {args.batch}, channel_base {args.channel_base}, channel_max {args.channel_max}, "
          f"{args.z_dim}-D latents, {args.map_layers} mapping layers, D {args.d_arch}"
          + (f" + projected x{args.proj_d}" if args.proj_d else "")
          + (f", feature input {args.d_feature_res}" if args.d_feature_res else ""))
    print("| config | device | images/s | s/step | kimg/hour |")
    print("|---|---|---|---|---|")
    for name in args.configs.split(","):
        for device in args.devices.split(","):
            ips, sec = measure(name, device, args.batch, args.steps, model)
            print(f"| {name} | {device} | {ips:.1f} | {sec:.3f} | {ips * 3.6:.1f} |", flush=True)
        if args.breakdown:
            breakdown(name, args.batch, [int(s) for s in args.feature_sizes.split(",")], args.d_head_width)


if __name__ == "__main__":
    main()
