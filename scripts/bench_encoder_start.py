#!/usr/bin/env python3
"""Choose the refinement after an encoder's start: identity, PSNR and time per photo, against the optimisation.

Each photo is embedded alone into the built-in face through ``embed_face`` (FFHQ alignment,
the MobileFaceNet identity loss at compose's weight, no cache), once from ``w_avg`` with the
300-step schedule and once from the encoder's start for each number of ``--refine-steps``
(the ``refine_config`` settings). Identity is the dlib descriptor distance between the photo
and the reconstruction (< 0.6: the same person); the gain is over the ``w_avg`` image's PSNR.
Photos: the astronaut of ``tests/data`` and the first ``--count`` adults among the photos a
prepared face dataset holds out for the encoder (see ``bench_compose_face.py``).

    python scripts/bench_encoder_start.py --from-dataset ../exp/data/faces64 --count 7 --refine-steps 60,100,150
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_compose_face import held_out_selfies  # noqa: E402

from insetgan.inversion.embedding import EmbedConfig, embed_face
from insetgan.inversion.encoder import StartConfig
from insetgan.inversion.identity import dlib_distances, load_mobilefacenet
from insetgan.inversion.invert import InvertConfig, psnr, refine_config, synthesize
from insetgan.inversion.perceptual import load_perceptual
from insetgan.io import to_uint8
from insetgan.jobs.requests import IDENTITY_WEIGHT
from insetgan.models import models_dir, resolve_network
from insetgan.networks.checkpoints import load_generator


def main() -> None:
    """Embed every photo with every start, print one row per start."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-dataset", type=Path, required=True)
    ap.add_argument("--count", type=int, default=7)
    ap.add_argument("--encoder", default=str(models_dir() / "face-encoder.safetensors"))
    ap.add_argument("--refine-steps", default="60,100,150")
    ap.add_argument("--mean-steps", type=int, default=InvertConfig.steps)
    args = ap.parse_args()
    photos = [ROOT / "tests" / "data" / "astronaut.jpg"] + held_out_selfies(args.from_dataset, args.count)
    G = load_generator(resolve_network("default-face"))
    pc, net, dev = load_perceptual("auto", warn=False), load_mobilefacenet(), torch.device("cpu")
    starts = {f"w_avg + {args.mean_steps} steps": EmbedConfig(InvertConfig(steps=args.mean_steps),
                                                                identity_weight=IDENTITY_WEIGHT,
                                                                start=StartConfig("mean"))}
    for n in (int(s) for s in args.refine_steps.split(",") if s):
        starts[f"encoder + {n} steps"] = EmbedConfig(identity_weight=IDENTITY_WEIGHT, refine=refine_config(n),
                                                     start=StartConfig("encoder", args.encoder))
    rows: dict[str, list[tuple[float | None, float, float, float]]] = {k: [] for k in starts}
    w_avg = G.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1).contiguous()
    for photo in photos:
        for name, cfg in starts.items():
            t0 = time.perf_counter()
            emb, aligned, _ = embed_face(str(photo), G, cfg, pc.fn, None, dev, identity_net=net)
            seconds = time.perf_counter() - t0
            face = Image.fromarray(to_uint8(emb.recon[0])).resize((256, 256), Image.LANCZOS)
            with torch.no_grad():
                base = float(psnr(synthesize(G, w_avg, None), emb.target))
            quality = emb.info["metrics"]["inverted"]["psnr"][0]
            rows[name].append((dlib_distances([aligned], [face])[0], quality, quality - base, seconds))
    print(f"# bench_encoder_start: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {len(photos)} photos, encoder {args.encoder}")
    print("| start | median identity (dlib) | worst | faces found | mean PSNR | worst gain over w_avg | s/photo |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rs in rows.items():
        ds = [r[0] for r in rs if r[0] is not None]
        med, worst = (statistics.median(ds), max(ds)) if ds else (float("nan"), float("nan"))
        print(f"| {name} | {med:.3f} | {worst:.3f} | {len(ds)}/{len(rs)} | {statistics.mean(r[1] for r in rs):.2f} | "
              f"{min(r[2] for r in rs):.2f} dB | {statistics.mean(r[3] for r in rs):.1f} |")


if __name__ == "__main__":
    main()
