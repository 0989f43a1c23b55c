#!/usr/bin/env python3
"""Benchmark compose: per-step and total time, peak memory and the seam score reached, per preset.

Cases (random weights, full-size StyleGAN2 configs: channel_base 32768, channel_max 512,
8 mapping layers):
  a: 256x128 canvas + 64x64 face        b: 1024x512 canvas + 1024x1024 face

Every (case, preset, steps, device) row runs in its own process so peak memory (max RSS on
the CPU, max allocated on CUDA) belongs to that row alone. ``--max-steps`` caps the steps that
are actually run (the total time is then per-step time x the preset's steps, marked "est.";
the seam score is only reported for complete runs). A second table compares the blends on the
final state of each complete run (seam score and time per composite).

    python scripts/bench_compose.py                        # case a, default and paper presets
    python scripts/bench_compose.py --cases a,b --max-steps 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
from benchutil import median_time  # noqa: E402

from insetgan.inversion.perceptual import l1_ssim
from insetgan.method.blend import BLENDS
from insetgan.method.boxes import FACE_PRIOR, FixedBox
from insetgan.method.config import load_config
from insetgan.method.optimize import CanvasInput, InsetInput, composite, evaluate, naive_paste, optimize
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.generator import Generator
from insetgan.sampling import z_from_seed
from insetgan.torch_utils.cpu_alloc import tune_cpu_allocator

CASES = {
    "a": dict(body=dict(img_resolution=256, square=False), face=dict(img_resolution=64)),
    "b": dict(body=dict(img_resolution=1024, square=False), face=dict(img_resolution=1024)),
}
FULL = dict(z_dim=512, w_dim=512, c_dim=0, img_channels=3, channel_base=32768, channel_max=512,
            mapping_kwargs=dict(num_layers=8), num_fp16_res=4, conv_clamp=256)


def _generator(kw: dict, seed: int, device: str):
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig.from_init_kwargs({**FULL, **kw}))
    with torch.no_grad():  # a w_avg like a trained model's (mean of mapped samples)
        G.mapping.w_avg.copy_(G.mapping(torch.randn(2000, G.z_dim), None, update_w_avg=False)[:, 0].mean(0))
    return G.eval().requires_grad_(False).to(device)


def child(case: str, preset: str, steps: int | None, max_steps: int | None, device: str) -> dict:
    """One row: run compose on random full-size generators, return the measurements."""
    tune_cpu_allocator()
    dev = torch.device(device)
    Gb, Gf = _generator(CASES[case]["body"], 1, device), _generator(CASES[case]["face"], 2, device)
    cfg = load_config(preset)
    if steps:
        cfg = cfg.with_steps(steps)
    full_steps = cfg.steps
    run_steps = min(full_steps, max_steps) if max_steps else full_steps
    if run_steps < full_steps:
        cfg = cfg.with_steps(run_steps)
    with torch.no_grad():
        body = Gb.mapping(z_from_seed(1, 512).to(dev), None, truncation_psi=0.7)
        face = Gf.mapping(z_from_seed(2, 512).to(dev), None, truncation_psi=0.7)
        canvas0 = Gb.synthesis(body, noise_mode="const")
    box = FixedBox(FACE_PRIOR)(canvas0)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = optimize(CanvasInput(Gb, body), [InsetInput("face", Gf, face, [box])], cfg)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    peak_mb = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    # First step includes warm-up (kernel loading); per-step time uses the rest.
    per_step = total / run_steps
    row = dict(case=case, preset=preset, device=device, steps=full_steps, run_steps=run_steps,
               per_step_s=per_step, total_s=per_step * full_steps if run_steps < full_steps else total,
               estimated=run_steps < full_steps, peak_mb=peak_mb)
    naive = naive_paste(res.canvas_start, res.insets_start, res.boxes_start)
    before = evaluate(res.canvas_start, res.insets_start, res.boxes_start, naive, cfg, l1_ssim)[0]
    row.update(seam_naive=before["face:seam"], coarse_before=before["face:coarse_l1"],
               border_before=before["face:border"])
    if run_steps == full_steps:
        blends = {}
        for method in BLENDS:
            out = composite(res.canvas, res.insets, res.boxes, method, cfg.feather)
            m = evaluate(res.canvas, res.insets, res.boxes, out, cfg, l1_ssim)[0]
            t = median_time(lambda: composite(res.canvas, res.insets, res.boxes, method, cfg.feather), 3, device)
            blends[method] = dict(seam=m["face:seam"], ms=t * 1000)
        after = evaluate(res.canvas, res.insets, res.boxes,
                         composite(res.canvas, res.insets, res.boxes, cfg.blend, cfg.feather), cfg,
                         l1_ssim)[0]
        row.update(seam=after["face:seam"], coarse_after=after["face:coarse_l1"],
                   border_after=after["face:border"], blend=cfg.blend, blends=blends)
    return row


def main() -> None:
    """Run every row in a child process and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="a")
    ap.add_argument("--presets", default="default,paper")
    ap.add_argument("--steps", default="", help="Extra step counts for the default preset, e.g. 50,100.")
    ap.add_argument("--max-steps", type=int, default=None, help="Run at most this many steps per row.")
    ap.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print("ROW " + json.dumps(child(**spec)))
        return
    rows = []
    specs = []
    for device in args.devices.split(","):
        for case in args.cases.split(","):
            for preset in args.presets.split(","):
                specs.append(dict(case=case, preset=preset, steps=None, max_steps=args.max_steps, device=device))
            for n in filter(None, args.steps.split(",")):
                specs.append(dict(case=case, preset="default", steps=int(n), max_steps=args.max_steps,
                                  device=device))
    for spec in specs:
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                              text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
        if proc.returncode or not line:
            print(f"row {spec} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[0][4:]))
        print(f"done {spec}", file=sys.stderr)

    print(f"# compose benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads, "
          f"torch {torch.__version__}" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print("| case | device | preset | steps | per step (s) | total (s) | peak memory (MB) | seam naive → result |"
          " L_coarse L1 | L_border L1 |")
    print("|---|---|---|---:|---:|---:|---:|---|---|---|")
    for r in rows:
        est = " (est.)" if r["estimated"] else ""
        seam = f"{r['seam_naive']:.3f} → {r['seam']:.3f}" if "seam" in r else f"{r['seam_naive']:.3f} → n/a"
        coarse = f"{r['coarse_before']:.3f} → {r['coarse_after']:.3f}" if "seam" in r else "n/a"
        border = f"{r['border_before']:.3f} → {r['border_after']:.3f}" if "seam" in r else "n/a"
        print(f"| {r['case']} | {r['device']} | {r['preset']} | {r['steps']} | {r['per_step_s']:.3f} | "
              f"{r['total_s']:.1f}{est} | {r['peak_mb']:.0f} | {seam} | {coarse} | {border} |")
    full = [r for r in rows if "blends" in r]
    if full:
        print("\n| case | device | preset | steps | " + " | ".join(f"{m}: seam / ms" for m in full[0]["blends"]) + " |")
        print("|---|---|---|---:|" + "---|" * len(full[0]["blends"]))
        for r in full:
            cells = " | ".join(f"{b['seam']:.3f} / {b['ms']:.1f}" for b in r["blends"].values())
            print(f"| {r['case']} | {r['device']} | {r['preset']} | {r['steps']} | {cells} |")


if __name__ == "__main__":
    main()
