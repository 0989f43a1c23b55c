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
    python scripts/bench_generator.py --only-stylegan3  # just the StyleGAN3 rows

The StyleGAN3 rows use the fixture networks (``sg3t_face64``, ``sg3r_face32`` in the shared
fixtures folder: ``$INSETGAN_SHARED/fixtures``, else ``../shared/fixtures``) at batch 4 and
compare, interleaved in one process: all reference ops; compiled upfirdn2d/bias_act with
filtered_lrelu as their composition (the state before its fused kernel); all compiled ops
(the fused filtered_lrelu kernel), as the CLI runs. The convolutions are the same in all three.
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
from benchutil import median_time  # noqa: E402

from insetgan.networks.checkpoints import load_checkpoint
from insetgan.networks.config import GeneratorConfig  # noqa: E402
from insetgan.networks.generator import Generator  # noqa: E402
from insetgan.torch_utils.cpu_alloc import tune_cpu_allocator  # noqa: E402
from insetgan.torch_utils.ops import dispatch

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


SG3_FIXTURES = ("sg3t_face64", "sg3r_face32")
SG3_VARIANTS = {  # name: (INSETGAN_OPS, filtered_lrelu has its kernel)
    "reference ops": ("ref", True),
    "compiled upfirdn2d/bias_act, filtered_lrelu composed of them": ("", False),
    "compiled ops (fused filtered_lrelu)": ("", True),
}


def fixtures_dir() -> Path:
    """The shared fixtures folder (``$INSETGAN_SHARED/fixtures``, else ``../shared/fixtures``)."""
    return Path(os.environ.get("INSETGAN_SHARED", ROOT.parent / "shared")) / "fixtures"


def measure_stylegan3(name: str, device: str, batch: int, repeats: int, rounds: int) -> dict[str, dict[str, float]]:
    """Synthesis forward and forward+backward to ws of a StyleGAN3 fixture for every ``SG3_VARIANTS`` entry,
    interleaved over ``rounds`` in this process; medians."""
    dev = torch.device(device)
    G = load_checkpoint(fixtures_dir() / f"{name}.pkl").generator.to(dev)
    torch.manual_seed(0)
    ws = G.mapping(torch.randn(batch, G.z_dim, device=dev), None).detach()
    times: dict[str, dict[str, list[float]]] = {v: {"forward": [], "fwd_bwd": []} for v in SG3_VARIANTS}
    kernels = dispatch.OP_KERNELS["filtered_lrelu"]

    def fwd():
        with torch.no_grad():
            G.synthesis(ws)

    def fwd_bwd():
        w = ws.clone().requires_grad_(True)
        G.synthesis(w).square().mean().backward()

    try:
        for _ in range(rounds):
            for variant, (ops, fused) in SG3_VARIANTS.items():
                os.environ["INSETGAN_OPS"] = ops
                dispatch.OP_KERNELS["filtered_lrelu"] = kernels if fused else ()
                times[variant]["forward"].append(median_time(fwd, repeats, dev))
                times[variant]["fwd_bwd"].append(median_time(fwd_bwd, repeats, dev))
    finally:
        dispatch.OP_KERNELS["filtered_lrelu"] = kernels
        os.environ.pop("INSETGAN_OPS", None)
    return {v: {k: statistics.median(t) for k, t in d.items()} for v, d in times.items()}


def bench_stylegan3(devices: list[str], batch: int, repeats: int, rounds: int) -> None:
    """Print the StyleGAN3 table (skipped with a note when the fixtures are missing)."""
    if not all((fixtures_dir() / f"{n}.pkl").exists() for n in SG3_FIXTURES):
        print(f"\n(StyleGAN3 rows skipped: {fixtures_dir()} does not hold {', '.join(SG3_FIXTURES)})")
        return
    tune_cpu_allocator()
    print("\n| device | StyleGAN3 network | batch | ops | forward s | fwd+bwd to ws s | forward ratio | "
          "fwd+bwd ratio |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for device in devices:
        for name in SG3_FIXTURES:
            res = measure_stylegan3(name, device, batch, repeats, rounds)
            ref = res["reference ops"]
            for variant, r in res.items():
                print(f"| {device} | {name} | {batch} | {variant} | {r['forward']:.3f} | {r['fwd_bwd']:.3f} | "
                      f"{r['forward'] / ref['forward']:.2f} | {r['fwd_bwd'] / ref['fwd_bwd']:.2f} |", flush=True)


def bench_stylegan2(devices: list[str], sizes: list[str], repeats: int, rounds: int) -> None:
    """Print the StyleGAN2 table: every path of ``PATHS`` per size, one worker process per allocator setting."""
    print("| device | config | path | forward s | fwd+bwd to ws s | forward ratio | fwd+bwd ratio |")
    print("|---|---|---|---:|---:|---:|---:|")
    for device in devices:
        for size in sizes:
            results: dict[str, dict[str, float]] = {}
            for tune in (False, True):  # one process per allocator setting
                group = [p for p, spec in PATHS.items() if spec["tune"] == tune]
                out = subprocess.run([sys.executable, __file__, "--repeats", str(repeats), "--rounds",
                                      str(rounds), "--worker", size, json.dumps(group), device],
                                     capture_output=True, text=True, check=True)
                results.update(json.loads(out.stdout.strip().splitlines()[-1]))
            ref = results[REFERENCE]
            for path in PATHS:
                res = results[path]
                print(f"| {device} | {size} | {path} | {res['forward']:.3f} | {res['fwd_bwd']:.3f} | "
                      f"{res['forward'] / ref['forward']:.2f} | {res['fwd_bwd'] / ref['fwd_bwd']:.2f} |", flush=True)


def main() -> None:
    """Run every row in a worker process and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per path")
    ap.add_argument("--only-stylegan3", action="store_true", help="only the StyleGAN3 fixture rows")
    ap.add_argument("--sg3-batch", type=int, default=4, help="batch of the StyleGAN3 rows")
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
          "float32; StyleGAN2 rows: batch 1, random weights")
    if not args.only_stylegan3:
        bench_stylegan2(devices, args.sizes, args.repeats, args.rounds)
    bench_stylegan3(devices, args.sg3_batch, args.repeats, args.rounds)


if __name__ == "__main__":
    main()
