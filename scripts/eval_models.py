#!/usr/bin/env python3
"""Quality bar of the built-in (or any) models: dlib face rates, full-body grids, compose seams and identity.

  face model   share of N samples (ψ=0.7) in which dlib finds a face on a 4× upscaled copy
  body model   share of N samples (ψ=0.7) whose face-prior region holds a face dlib finds
               (upscaled); a sample grid to check full bodies head to toe
  face FDD     with --face-data: Fréchet distance of dlib descriptors, 300 seeds (ψ=1) vs 300 real
               faces, beside the floor (300 vs the next 300 real faces); see insetgan/eval/model_quality.py
  body people  OpenCV HOG person rate of N samples (ψ=0.7); with --body-data beside N real crops
  shoes HOG FD with --shoes-data: HOG Fréchet distance, 300 seeds (ψ=1) vs 300 real, beside the floor
  compose      over S body seeds with the selfie's face (``sample-bodies --face``, one batch):
               share of seeds whose seam score after optimisation is below the naive paste's,
               and the median dlib identity distance between the selfie and the result's face

    python scripts/eval_models.py                                   # built-in models, selfie example
    python scripts/eval_models.py --body b.safetensors --face f.safetensors --samples 64 --seeds 32
    python scripts/eval_models.py --face-data data/faces64 --body-data data/bodies256 --shoes-data data/shoes32
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


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
    from insetgan.inversion.align import LandmarkDetector
    from insetgan.method.boxes import FACE_PRIOR
    from insetgan.models import region_priors
    from insetgan.models import resolve_network
    from insetgan.networks.checkpoints import load_checkpoint
    from insetgan.eval import model_quality as q

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--body", default="default")
    ap.add_argument("--face", default="default")
    ap.add_argument("--shoes", default="default", help="Shoes inset for its sample grid ('none' to skip).")
    ap.add_argument("--face-data", default=None, help="Face training dataset: adds the FDD row.")
    ap.add_argument("--body-data", default=None, help="Body training dataset: adds the real crops' person rate.")
    ap.add_argument("--shoes-data", default=None, help="Shoes training dataset: adds the HOG Fréchet distance row.")
    ap.add_argument("--selfie", default=str(ROOT / "examples" / "selfie.jpg"))
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--fd-samples", type=int, default=300, help="Samples and real images per Fréchet set.")
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
    shoes_G = load_checkpoint(resolve_network(args.shoes, "shoes")).generator if args.shoes != "none" else None
    if shoes_G is not None:
        q.write_grid(q.samples(shoes_G, 16, args.psi), out / "shoes_grid.png")
    bodies = q.samples(body_ck.generator, args.samples, args.psi)
    q.write_grid(bodies, out / "body_grid.png")
    res = {"face_rate": q.face_rate(face_ck.generator, args.samples, args.psi, det, out / "face_grid.png"),
           "body_face_rate": q.face_region_rate(q.to_arrays(bodies), prior, det),
           "body_person_rate": q.person_rate(q.to_arrays(bodies)),
           "face_prior": list(prior)}
    if args.body_data:
        res["body_person_rate_real"] = q.prepare_reference("body", args.body_data, samples_n=args.samples).floor[
            "person_rate"]
    if args.face_data:
        ref = q.prepare_reference("face", args.face_data, out, args.fd_samples)
        res["face_fdd"] = q.generated_face_fdd(face_ck.generator, ref.real, args.fd_samples)
        res["face_fdd_floor"] = ref.floor["fdd"]
    if args.shoes_data and shoes_G is not None:
        ref = q.prepare_reference("shoes", args.shoes_data, n=args.fd_samples)
        res["shoes_hog_fd"] = q.hog_fd(shoes_G, ref.real, args.fd_samples)
        res["shoes_hog_fd_floor"] = ref.floor["hog_fd"]
    res["compose"] = compose_eval(body_path, face_path, args.selfie, args.seeds, args.steps, out / "compose",
                                  args.invert_steps)
    (out / "eval.json").write_text(json.dumps(res, indent=2))
    c = res["compose"]
    print("| metric | value | bar |")
    print("|---|---|---|")
    print(f"| face model: dlib finds a face (4× upscaled), {args.samples} samples ψ={args.psi} | "
          f"{res['face_rate']:.0%} | ≥ 95% |")
    if "face_fdd" in res:
        print(f"| face model: FDD (dlib descriptors), {args.fd_samples} seeds ψ=1 vs {args.fd_samples} real | "
              f"{res['face_fdd']:.3f} | ≤ 0.10 (real vs real: {res['face_fdd_floor']:.3f}) |")
    print(f"| body model: face found in the face prior region, {args.samples} samples | "
          f"{res['body_face_rate']:.0%} | ≥ 30% |")
    real = (f"≥ 50% (real crops: {res['body_person_rate_real']:.0%})" if "body_person_rate_real" in res
            else "≥ 50% (--body-data for real crops)")
    print(f"| body model: OpenCV HOG finds a person (2× upscaled), {args.samples} samples ψ={args.psi} | "
          f"{res['body_person_rate']:.0%} | {real} |")
    if "shoes_hog_fd" in res:
        print(f"| shoes model: HOG Fréchet distance (PCA 64), {args.fd_samples} seeds ψ=1 vs "
              f"{args.fd_samples} real | {res['shoes_hog_fd']:.3f} | lower than the last shipped model's "
              f"(real vs real: {res['shoes_hog_fd_floor']:.3f}) |")
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
