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
    python scripts/bench_train.py --configs 64x64 --noise --aug ''     # the face recipe of issue 14
"""
from __future__ import annotations

import argparse
import platform
import time

import torch


CONFIGS = {"32x32": (32, 32), "64x64": (64, 64), "256x128": (256, 128)}


def measure(name: str, device: str, batch: int, steps: int, model: dict) -> tuple[float, float]:
    """(images/s, seconds per step) over ``steps`` steps after 2 warm-up steps (``model`` holds TrainConfig fields)."""
    from insetgan.train.loop import ImageSet, TrainConfig, build_state, train_step

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
    args = ap.parse_args()
    model = dict(z_dim=args.z_dim, w_dim=args.z_dim, map_layers=args.map_layers, channel_base=args.channel_base,
                 channel_max=args.channel_max, noise=args.noise, aug=args.aug)
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(f"# bench_train: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}, "
          f"batch {args.batch}, channel_base {args.channel_base}, channel_max {args.channel_max}, "
          f"{args.z_dim}-D latents, {args.map_layers} mapping layers")
    print("| config | device | images/s | s/step | kimg/hour |")
    print("|---|---|---|---|---|")
    for name in args.configs.split(","):
        for device in args.devices.split(","):
            ips, sec = measure(name, device, args.batch, args.steps, model)
            print(f"| {name} | {device} | {ips:.1f} | {sec:.3f} | {ips * 3.6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
