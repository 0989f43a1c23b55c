#!/usr/bin/env python3
"""Quality bar of the built-in (or any) models: dlib face rates, full-body grids, compose seams and identity.

  face model   share of N samples (ψ=0.7) in which dlib finds a face on a 4× upscaled copy
  body model   share of N samples (ψ=0.7) whose face-prior region holds a face dlib finds
               (upscaled); a sample grid to check full bodies head to toe
  compose      over S body seeds with the selfie's face (``sample-bodies --face``, one batch):
               share of seeds whose seam score after optimisation is below the naive paste's,
               and the median dlib identity distance between the selfie and the result's face

    python scripts/eval_models.py                                   # built-in models, selfie example
    python scripts/eval_models.py --body b.safetensors --face f.safetensors --samples 64 --seeds 32
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _samples(G, n: int, psi: float) -> torch.Tensor:
    from insetgan.generate import z_from_seed

    with torch.no_grad():
        z = torch.cat([z_from_seed(s, G.z_dim) for s in range(n)])
        return G(z, None, truncation_psi=psi, noise_mode="const")


def _pil(img: torch.Tensor, scale: int) -> Image.Image:
    from insetgan.io import to_uint8

    im = Image.fromarray(to_uint8(img))
    return im.resize((im.width * scale, im.height * scale), Image.BICUBIC) if scale > 1 else im


def write_grid(imgs: torch.Tensor, path: Path, cols: int = 8) -> None:
    """The first ``2*cols`` images as a PNG grid."""
    from insetgan.io import atomic_write_bytes, grid, png_bytes, to_uint8

    atomic_write_bytes(path, png_bytes(grid([to_uint8(i) for i in imgs[:2 * cols]], cols=cols)))


def face_rate(G, n: int, psi: float, detector, grid_path: Path | None = None) -> float:
    """Share of samples in which dlib finds a face on a 4× upscaled copy (and a sample grid)."""
    imgs = _samples(G, n, psi)
    if grid_path is not None:
        write_grid(imgs, grid_path)
    return sum(bool(detector.faces(_pil(i, 4))) for i in imgs) / n


def body_rate(G, n: int, psi: float, prior: tuple[float, float, float, float], detector,
              grid_path: Path | None) -> float:
    """Share of samples whose face-prior region (with a margin) holds a face dlib finds, upscaled to ~256 px."""
    from insetgan.io import to_uint8

    imgs = _samples(G, n, psi)
    H, W = imgs.shape[-2:]
    x, y, w, h = prior[0] * W, prior[1] * H, prior[2] * W, prior[3] * H
    m = 0.5 * max(w, h)
    box = (max(0, int(x - m)), max(0, int(y - m)), min(W, int(x + w + m)), min(H, int(y + h + m)))
    found = 0
    for img in imgs:
        crop = Image.fromarray(to_uint8(img)).crop(box)
        scale = max(1, round(256 / max(crop.size)))
        found += bool(detector.faces(crop.resize((crop.width * scale, crop.height * scale), Image.BICUBIC)))
    if grid_path is not None:
        write_grid(imgs, grid_path)
    return found / n


def compose_eval(body: str, face: str, selfie: str, seeds: int, steps: int | None, outdir: Path,
                 invert_steps: int | None = None) -> dict:
    """Run ``sample-bodies --face SELFIE`` over ``seeds`` body seeds; seam wins and identity distances."""
    import subprocess

    args = [sys.executable, "-m", "insetgan", "--quiet", "sample-bodies", "--body", body, "--face-net", face,
            "--face", selfie, "--num", str(seeds), "--outdir", str(outdir)]
    if steps:
        args += ["--steps", str(steps)]
    if invert_steps:
        args += ["--invert-steps", str(invert_steps)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"sample-bodies failed: {proc.stderr.strip()}")
    rep = json.loads((outdir / "report.json").read_text())
    before = [row["face:seam"] for row in rep["metrics"]["before"]]
    after = [row["face:seam"] for row in rep["metrics"]["after"]]
    wins = [a < b for a, b in zip(after, before) if a is not None and b is not None]
    dists = [d for d in rep["identity"]["after"] if d is not None]
    def med(vals: list) -> float | None:
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    return {"seeds": seeds, "seam_measured": len(wins), "seam_wins": sum(wins) / max(len(wins), 1),
            "seam_median_before": med(before), "seam_median_after": med(after),
            "identity_found": len(dists), "identity_median": statistics.median(dists) if dists else None,
            "seconds": rep["timings_s"]["optimize"]}


def main() -> None:
    """Parse arguments, evaluate, print a markdown table and write eval.json."""
    from insetgan.align import LandmarkDetector
    from insetgan.boxes import FACE_PRIOR
    from insetgan.jobs import region_priors
    from insetgan.models import resolve_network
    from insetgan.networks.checkpoints import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--body", default="default")
    ap.add_argument("--face", default="default")
    ap.add_argument("--shoes", default="default", help="Shoes inset for its sample grid ('none' to skip).")
    ap.add_argument("--selfie", default=str(ROOT / "examples" / "selfie.jpg"))
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="Compose steps (default: the preset's).")
    ap.add_argument("--invert-steps", type=int, default=None, help="Selfie projector steps (default: 300).")
    ap.add_argument("--psi", type=float, default=0.7)
    ap.add_argument("--outdir", default="out/eval")
    args = ap.parse_args()
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    body_path, face_path = resolve_network(args.body, "body"), resolve_network(args.face, "face")
    body_ck, face_ck = load_checkpoint(body_path), load_checkpoint(face_path)
    prior = region_priors(dict(body_ck.metadata)).get("face", FACE_PRIOR)
    det = LandmarkDetector()
    if args.shoes != "none":
        write_grid(_samples(load_checkpoint(resolve_network(args.shoes, "shoes")).generator, 16, args.psi),
                   out / "shoes_grid.png")
    res = {"face_rate": face_rate(face_ck.generator, args.samples, args.psi, det, out / "face_grid.png"),
           "body_face_rate": body_rate(body_ck.generator, args.samples, args.psi, prior, det, out / "body_grid.png"),
           "face_prior": list(prior)}
    res["compose"] = compose_eval(body_path, face_path, args.selfie, args.seeds, args.steps, out / "compose",
                                  args.invert_steps)
    (out / "eval.json").write_text(json.dumps(res, indent=2))
    c = res["compose"]
    print("| metric | value | bar |")
    print("|---|---|---|")
    print(f"| face model: dlib finds a face (4× upscaled), {args.samples} samples ψ={args.psi} | "
          f"{res['face_rate']:.0%} | ≥ 70% |")
    print(f"| body model: face found in the face prior region, {args.samples} samples | "
          f"{res['body_face_rate']:.0%} | ≥ 30% |")
    print(f"| compose: seam after < naive, {c['seam_measured']} of {c['seeds']} seeds measurable | "
          f"{c['seam_wins']:.0%} | ≥ 90% |")
    if c["seam_measured"]:
        print(f"| compose: median seam naive → after | {c['seam_median_before']:.3f} → "
              f"{c['seam_median_after']:.3f} | |")
    med = f"{c['identity_median']:.3f}" if c["identity_median"] is not None else "no face found"
    print(f"| compose: median dlib identity distance to the selfie ({c['identity_found']} faces found) | {med} | "
          f"< 0.6 = same person |")
    print(f"\nsample grids (ψ={args.psi}): {out}/{{face,body,shoes}}_grid.png; details: {out / 'eval.json'}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
