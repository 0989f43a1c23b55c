#!/usr/bin/env python3
"""How soon can a new discriminator tell a generator's samples from real images?

Draws N samples of a fixed generator (ψ 1, random noise) and N real images of its dataset,
keeps the last 64 of each aside, and trains a new discriminator alone on the rest (batch 16 +
16, Adam β = (0, 0.99), no R1; ``--aug`` applies DiffAugment policies to both sides in training). Every 25 steps it prints the held-out
accuracy (real called real, generated called generated) and the mean held-out logits. A
discriminator that needs many kimg to beat 60% here cannot keep up with a generator that
trains beside it (MODEL_CARD.md).

    python scripts/probe_discriminator.py default-body --data data/bodies256 --arch resnet --lr 0.002
    python scripts/probe_discriminator.py default-body --data data/bodies256 --arch conv --lr 0.001
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from insetgan.models import resolve_network
from insetgan.networks.checkpoints import load_generator
from insetgan.networks.discriminator import ARCHITECTURES, DiscriminatorConfig, build_discriminator
from insetgan.train.augment import augment, draw_params, parse_policy
from insetgan.train.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = 64


def main() -> None:
    """Train the probe and print one row per 25 steps."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network", help="the generator (a file or a built-in name such as default-body)")
    ap.add_argument("--data", required=True, help="its prepared dataset (folder or zip)")
    ap.add_argument("--arch", choices=ARCHITECTURES, default="resnet", help="resnet (StyleGAN2's) or conv (plain)")
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--channel-base", type=int, default=2048)
    ap.add_argument("--channel-max", type=int, default=128)
    ap.add_argument("--samples", type=int, default=640, help="generated and real images each (64 held out)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aug", default="", help="DiffAugment policies in training, e.g. color,translation")
    args = ap.parse_args()
    policy = parse_policy(args.aug)
    if args.samples <= HELD_OUT + 16 or args.steps < 1 or args.lr <= 0:
        raise ValueError(f"need --samples > {HELD_OUT + 16}, --steps >= 1 and --lr > 0")

    G = load_generator(resolve_network(args.network)).float().eval()
    data = load_dataset(args.data)
    _, C, H, W = data.images.shape
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        fakes = torch.cat([G(torch.randn(min(32, args.samples - i), G.z_dim, generator=gen), None,
                             noise_mode="random") for i in range(0, args.samples, 32)])
    if fakes.shape[1:] != data.images.shape[1:]:
        raise ValueError(f"the generator draws {list(fakes.shape[1:])} images, the dataset holds {[C, H, W]}")
    idx = torch.randperm(data.images.shape[0], generator=gen)[:args.samples]
    reals = data.images[idx].float() / 127.5 - 1
    n = min(len(reals), len(fakes)) - HELD_OUT
    torch.manual_seed(args.seed)
    D = build_discriminator(DiscriminatorConfig(img_resolution=H, img_channels=C, square=W == H,
                                                channel_base=args.channel_base, channel_max=args.channel_max,
                                                architecture=args.arch))
    opt = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(0.0, 0.99), eps=1e-8)
    test_f, test_r = fakes[n:n + HELD_OUT], reals[n:n + HELD_OUT]
    print(f"{'step':>5} {'kimg':>6} {'accuracy':>8} {'logit gen':>9} {'logit real':>10} {'s/step':>7}")
    t0 = time.perf_counter()
    for step in range(args.steps + 1):
        if step % 25 == 0:
            with torch.no_grad():
                lf, lr = D(test_f), D(test_r)
            acc = float(((lf < 0).float().mean() + (lr > 0).float().mean()) / 2)
            per = (time.perf_counter() - t0) / step if step else 0.0
            print(f"{step:>5} {step * 16 / 1000:>6.2f} {acc:>8.2f} {float(lf.mean()):>9.3f} {float(lr.mean()):>10.3f} "
                  f"{per:>7.3f}", flush=True)
        if step == args.steps:
            break
        i, j = torch.randint(n, (16,), generator=gen), torch.randint(n, (16,), generator=gen)
        fake, real = (augment(x, draw_params(gen, 16), policy) for x in (fakes[i], reals[j]))
        loss = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    try:
        main()
    except ValueError as exc:  # InsetganError is one too
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
