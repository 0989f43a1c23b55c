#!/usr/bin/env python3
"""Collapse check for training states: coarse-layer style spread and the discriminator's diversity view.

For each ``state-*.pt`` (or every one in a run folder) prints its kimg, the spread of the
generator's styles across latents at the 4x4, 8x8 and 16x16 layers (std over mean: falling
values mean the layout stops following the latent, the collapse seen in MODEL_CARD.md), and the
discriminator's minibatch-std statistic and mean logit on generated and on real images, and for
a run with ``--face-d`` the face discriminator's mean logits on the face windows of both ("-" without).

    python scripts/diagnose_run.py runs/face64 --data data/faces64
    python scripts/diagnose_run.py runs/face64/state-000010.pt runs/face64/state-000014.pt --data data/faces64
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from insetgan.train.checkpoint import load_state
from insetgan.train.config import TrainConfig
from insetgan.train.data import load_dataset
from insetgan.train.diagnose import minibatch_std_stats, style_spread

ROOT = Path(__file__).resolve().parents[1]


def _states(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob("state-*.pt"))
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"not a training state or run folder: {p}")
    if not out:
        raise ValueError("no state-*.pt found")
    return out


def main() -> None:
    """Print one row per training state."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("states", nargs="+", help="state-*.pt files or run folders")
    ap.add_argument("--data", required=True, help="the run's prepared dataset (folder or zip)")
    ap.add_argument("--samples", type=int, default=64)
    args = ap.parse_args()
    states = _states(args.states)
    data = load_dataset(args.data)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cpu = torch.device("cpu")
    print(f"{'state':<18} {'kimg':>6} {'w':>6} {'4x4':>6} {'8x8':>6} {'16x16':>6} "
          f"{'mbstd fake':>10} {'mbstd real':>10} {'logit fake':>10} {'logit real':>10} {'face fake':>10} {'face real':>10}")
    for path in states:
        saved = json.loads(torch.load(path, map_location=cpu, weights_only=True)["config"])
        cfg = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
        st = load_state(path, cfg, data, cpu)
        st.G.eval()
        spread = style_spread(st.G, 256)
        coarse = [max((v for k, v in spread.items() if k.startswith(f"b{r}.conv")), default=float("nan"))
                  for r in (4, 8, 16)]
        gen = torch.Generator().manual_seed(1)
        n = args.samples
        with torch.no_grad():
            fake = st.G(torch.randn(n, st.G.z_dim, generator=gen), None, noise_mode="random" if cfg.noise else "none")
        real = data.images[torch.randint(data.images.shape[0], (n,), generator=gen)].float() / 127.5 - 1
        mf, lf = minibatch_std_stats(st.D, fake)
        mr, lr = minibatch_std_stats(st.D, real)
        face = ["-", "-"]
        if st.D_face is not None and st.face_window is not None:
            with torch.no_grad():
                face = [f"{float(st.D_face(st.face_window.crop(x)).mean()):.2f}" for x in (fake, real)]
        print(f"{path.name:<18} {st.nimg / 1000:>6.1f} {spread['w']:>6.3f} {coarse[0]:>6.3f} {coarse[1]:>6.3f} "
              f"{coarse[2]:>6.3f} {mf:>10.3f} {mr:>10.3f} {lf:>10.2f} {lr:>10.2f} {face[0]:>10} {face[1]:>10}")


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
