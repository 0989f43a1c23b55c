#!/usr/bin/env python3
"""Benchmark the generator: synthesis forward and forward+backward to ws (latent optimisation).

Prints a table of median times per configuration and path, with ratios against the reference
path measured in the same run. The reference path is the official algorithm as the official
code runs it: weights modulated per sample (fused modulated convolution, what
stylegan2-ada-pytorch uses in eval mode), NCHW tensors, the plain-PyTorch ops and the default
allocator. Our path picks the modulated convolution (non-fused when a backward pass may
follow), the memory layout (NHWC on CPU), tunes the allocator (``torch_utils.cpu_alloc``)
and uses the compiled ops, as the CLI does; intermediate rows show each step. Paths with the same allocator setting run
interleaved in one process (one process per setting), medians over all rounds.

    python scripts/bench_generator.py                   # all sizes, CPU (and CUDA if present)
    python scripts/bench_generator.py --sizes 256 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
from insetgan.networks.config import GeneratorConfig  # noqa: E402
from insetgan.networks.generator import Generator  # noqa: E402
from benchutil import median_time  # noqa: E402
from insetgan.torch_utils.cpu_alloc import tune_cpu_allocator  # noqa: E402

CONFIGS = {
    "1024": dict(img_resolution=1024, channel_base=32768, channel_max=512, mapping_layers=8),
    "256": dict(img_resolution=256, channel_base=32768, channel_max=512, mapping_layers=8),
    "1024x512": dict(img_resolution=1024, square=False, channel_base=32768, channel_max=512, mapping_layers=8),
}
REFERENCE = "reference (official algorithm)"
OFFICIAL = dict(fused_modconv=True, channels_last=False)
AUTO = dict(fused_modconv=None, channels_last=None)
PATHS = {
    REFERENCE: dict(kwargs=OFFICIAL, tune=False, ops="ref"),
    "reference + tuned allocator": dict(kwargs=OFFICIAL, tune=True, ops="ref"),
    "ours, reference ops, default allocator": dict(kwargs=AUTO, tune=False, ops="ref"),
    "ours, reference ops": dict(kwargs=AUTO, tune=True, ops="ref"),
    "ours (as the CLI runs: compiled ops)": dict(kwargs=AUTO, tune=True, ops="auto"),
}





def measure(size: str, paths: list[str], device: str, repeats: int, rounds: int) -> dict[str, dict[str, float]]:
    """Time forward and forward+backward to ws for ``paths`` (same allocator setting) in this process.

    The paths are interleaved over ``rounds`` rounds (``repeats`` timed runs each) and the
    median over all runs is reported, so slow phases of a noisy machine hit every path alike.
    """
    if PATHS[paths[0]]["tune"]:
        tune_cpu_allocator()
    dev = torch.device(device)
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(**CONFIGS[size])).eval().requires_grad_(False).to(dev)
    ws = G.mapping(torch.randn(1, G.z_dim, device=dev), None).detach()
    times: dict[str, dict[str, list[float]]] = {p: {"forward": [], "fwd_bwd": []} for p in paths}
    for _ in range(rounds):
        for path in paths:
            spec = PATHS[path]
            os.environ["INSETGAN_OPS"] = "ref" if spec["ops"] == "ref" else ""

            def fwd():
                with torch.no_grad():
                    G.synthesis(ws, noise_mode="const", **spec["kwargs"])

            def fwd_bwd():
                w = ws.clone().requires_grad_(True)
                G.synthesis(w, noise_mode="const", **spec["kwargs"]).square().mean().backward()

            times[path]["forward"].append(median_time(fwd, repeats, dev))
            times[path]["fwd_bwd"].append(median_time(fwd_bwd, repeats, dev))
    return {p: {k: statistics.median(v) for k, v in t.items()} for p, t in times.items()}


def main() -> None:
    """Run every row in a worker process and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per path")
    ap.add_argument("--worker", nargs=3, metavar=("SIZE", "PATHS", "DEVICE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        paths = json.loads(args.worker[1])
        print(json.dumps(measure(args.worker[0], paths, args.worker[2], args.repeats, args.rounds)))
        return
    devices = ["cpu"]
    if args.device == "cuda":
        devices = ["cuda"]
    elif args.device == "auto" and torch.cuda.is_available():
        devices.append("cuda")
    print(f"# {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          "batch 1, float32, random weights")
    print("| device | config | path | forward s | fwd+bwd to ws s | forward ratio | fwd+bwd ratio |")
    print("|---|---|---|---:|---:|---:|---:|")
    for device in devices:
        for size in args.sizes:
            results: dict[str, dict[str, float]] = {}
            for tune in (False, True):  # one process per allocator setting
                group = [p for p, spec in PATHS.items() if spec["tune"] == tune]
                out = subprocess.run([sys.executable, __file__, "--repeats", str(args.repeats), "--rounds",
                                      str(args.rounds), "--worker", size, json.dumps(group), device],
                                     capture_output=True, text=True, check=True)
                results.update(json.loads(out.stdout.strip().splitlines()[-1]))
            ref = results[REFERENCE]
            for path in PATHS:
                res = results[path]
                print(f"| {device} | {size} | {path} | {res['forward']:.3f} | {res['fwd_bwd']:.3f} | "
                      f"{res['forward'] / ref['forward']:.2f} | {res['fwd_bwd'] / ref['fwd_bwd']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
