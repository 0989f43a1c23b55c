"""How well does compose --outfit keep the user's clothes? Measures the canvas-keeping options.

Inverts a full-body photo into the body generator (cached in --cache), then runs the compose
job from that canvas with each variant of the canvas settings and prints one table row per
variant: the body drift (L1 outside the face box dilated by the blend margin, start canvas vs
result), its ratio to the median distance between the inverted outfit and 8 random bodies of
the same model (seeds 0-7 at --trunc), the seam score of the naive paste and of the result,
and the outfit distance. The bar of the outfit issue: ratio <= 0.25 with the seam below the
naive paste's.

    .venv/bin/python scripts/bench_keep.py                          # built-in models, examples/
    .venv/bin/python scripts/bench_keep.py --body body.pkl --face-net ffhq.pkl --photo me.jpg
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

from benchutil import machine_line  # noqa: E402

from insetgan.eval.keep import body_drift  # noqa: E402
from insetgan.inversion.embedding import embed_outfit  # noqa: E402
from insetgan.inversion.perceptual import load_perceptual  # noqa: E402
from insetgan.jobs.compose import ComposeInputs, compose_candidates, outfit_config, run_compose  # noqa: E402
from insetgan.jobs.options import request_from  # noqa: E402
from insetgan.jobs.progress import silent  # noqa: E402
from insetgan.jobs.requests import ComposeRequest  # noqa: E402
from insetgan.jobs.sources import LatentSource  # noqa: E402
from insetgan.method.config import load_config  # noqa: E402
from insetgan.method.optimize import render  # noqa: E402
from insetgan.method.regions import Box  # noqa: E402
from insetgan.models import load_network  # noqa: E402
from insetgan.sampling import z_from_seed  # noqa: E402

VARIANTS = {  # name -> OptimConfig overrides (canvas_weights entries are merged)
    "preset as it is": {},
    "L_body x10": {"canvas_weights": {"body_l1": 5.0, "body_perceptual": 1.0}},
    "trust 0.20": {"canvas_trust": 0.20},
    "trust 0.10": {"canvas_trust": 0.10},
    "trust 0.05": {"canvas_trust": 0.05},
    "outfit default": None,  # the compose --outfit job itself (its request, run as the command line runs it)
}


def variant_config(base, overrides):
    """The preset with one variant's overrides."""
    kw = dict(overrides)
    if "canvas_weights" in kw:
        kw["canvas_weights"] = dataclasses.replace(base.canvas_weights, **kw["canvas_weights"])
    return dataclasses.replace(base, **kw)


def main() -> None:
    """Run every variant and print the table (and --json rows)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--body", default="default-body")
    ap.add_argument("--face-net", default="default-face")
    ap.add_argument("--photo", default=str(REPO / "examples" / "fullbody.jpg"))
    ap.add_argument("--mask", default=str(REPO / "examples" / "fullbody_mask.png"))
    ap.add_argument("--face-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="compose steps (default: the preset's)")
    ap.add_argument("--invert-steps", type=int, default=300)
    ap.add_argument("--trunc", type=float, default=0.7)
    ap.add_argument("--cache", default=str(REPO / "out" / "bench_keep_cache"))
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    dev = torch.device("cpu")
    body_ck, _ = load_network(args.body, dev, "--body", "body")
    face_ck, _ = load_network(args.face_net, dev, "--face-net", "face")
    pc = load_perceptual("auto", None, dev, warn=False)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    req = request_from(ComposeRequest, {"body": args.body, "face_net": args.face_net, "outfit": args.photo,
                                        "outfit_mask": args.mask or None, "face_seed": args.face_seed,
                                        "steps": args.steps, "invert_steps": args.invert_steps, "trunc": args.trunc,
                                        "device": "cpu"})
    emb = embed_outfit(args.photo, args.mask or None, body_ck.generator, req.embed_config, pc.fn, cache, dev)
    for name, data in emb.cache_files.items():
        (cache / name).write_bytes(data)
    with torch.no_grad():
        start = render(emb.G, emb.ws)
        G = body_ck.generator
        z = torch.cat([z_from_seed(s, G.z_dim) for s in range(8)])
        randoms = render(G, G.mapping(z, None, truncation_psi=args.trunc))
    base = load_config("default")
    if args.steps:
        base = base.with_steps(args.steps)
    rows = []
    print(machine_line())
    print(f"perceptual: {pc.name}; outfit inverted to {emb.info['metrics']['inverted']['psnr'][0]:.2f} dB")
    print("| variant | drift L1 | random-body L1 (median of 8) | ratio (bar <= 0.25) | seam naive | seam result | "
          "outfit L1 start -> result |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, overrides in VARIANTS.items():
        if overrides is None:  # the embedding is a cache hit: the same inversion as the variants'
            cfg, out = outfit_config(base), run_compose(req, silent, cache).job
        else:
            cfg = variant_config(base, overrides)
            inp = ComposeInputs(emb.G, face_ck.generator, (LatentSource(ws=emb.ws, label="outfit"),),
                                LatentSource(seed=args.face_seed, key="face"), trunc=args.trunc,
                                outfit=emb.target, outfit_mask=emb.mask)
            out = compose_candidates(inp, cfg, dev, pc.fn, pc.name)
        before, after = out.report["metrics"]["before"][0], out.report["metrics"]["after"][0]
        boxes = [[Box(*b[:4]) for b in out.report["boxes"]["final"]["face"]]]
        ref = statistics.median(d["l1"] for d in body_drift(start, randoms, boxes * 8, cfg.feather, None))
        row = {"variant": name, "drift_l1": after["body_drift_l1"], "random_l1": round(ref, 6),
               "ratio": round(after["body_drift_l1"] / ref, 4), "seam_naive": before["face:seam"],
               "seam_result": after["face:seam"], "outfit_l1": [before["outfit_l1"], after["outfit_l1"]]}
        rows.append(row)
        print(f"| {name} | {row['drift_l1']:.4f} | {ref:.4f} | {row['ratio']:.3f} | {row['seam_naive']:.3f} | "
              f"{row['seam_result']:.3f} | {before['outfit_l1']:.4f} -> {after['outfit_l1']:.4f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
