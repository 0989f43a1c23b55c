#!/usr/bin/env python3
"""Benchmark the compiled ops against the plain-PyTorch reference.

Shapes come from a 1024x1024 StyleGAN2 generator (upfirdn2d, bias_act) and from StyleGAN3 layers
(filtered_lrelu: the layers of the sg3t_face64 / sg3r_face32 fixtures at batch 4, plus a
256 px ToRGB). For each op: median forward and forward+backward time of the reference and the
compiled kernel, the speed-up, and the achieved memory throughput (bytes of the inputs read and
outputs written, divided by the time). Then the end-to-end 1024x1024 generator (our default
path, tuned allocator) with reference vs compiled ops, interleaved in one process.

    python scripts/bench_ops.py [--repeats 5] [--skip-generator] [--ops filtered_lrelu]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
from benchutil import median_time  # noqa: E402

from insetgan.networks.config import GeneratorConfig
from insetgan.networks.generator import Generator
from insetgan.networks.stylegan3 import design_lowpass_filter  # noqa: E402
from insetgan.torch_utils.cpu_alloc import tune_cpu_allocator  # noqa: E402
from insetgan.torch_utils.ops import bias_act, upfirdn2d  # noqa: E402
from insetgan.torch_utils.ops.filtered_lrelu import filtered_lrelu  # noqa: E402

BOTH_LAYOUTS = ("NCHW", "NHWC")


def _flrelu_case(name: str, shape: list[int], out_size: int, up: int, down: int, radial: bool, device: str):
    """A StyleGAN3 layer's filtered_lrelu: filters designed as the layer does (6 taps per factor), padding
    as the layer schedule computes it for an ``out_size`` output."""
    in_size = shape[2]
    if up == 1 and down == 1:  # ToRGB: no filters, linear, padding 0
        fn = lambda x, impl: filtered_lrelu(x, None, None, b, gain=1.0, slope=1.0, clamp=256, impl=impl)  # noqa: E731
    else:
        fu = design_lowpass_filter(6 * up, 16, 8, 32 * up).to(device)
        fd = design_lowpass_filter(6 * down, 16, 8, 32 * up, radial=radial).to(device)
        pad_total = (out_size - 1) * down + 1 - in_size * up + 6 * up + 6 * down - 2
        pad = [(pad_total + up) // 2, pad_total - (pad_total + up) // 2] * 2
        fn = lambda x, impl: filtered_lrelu(x, fu, fd, b, up=up, down=down, padding=pad, clamp=256,  # noqa: E731
                                            impl=impl)
    b = torch.randn(shape[1], device=device)
    return name, shape, fn, ("NCHW",)


def op_cases(device: str):
    """(name, shape, fn(x, impl), layouts) for the benchmarked op calls."""
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    b128 = torch.randn(128, device=device)
    return [
        ("upsample2d 2x", [1, 512, 64, 64], lambda x, impl: upfirdn2d.upsample2d(x, f, impl=impl), BOTH_LAYOUTS),
        ("filter2d", [1, 64, 1024, 1024], lambda x, impl: upfirdn2d.filter2d(x, f, impl=impl), BOTH_LAYOUTS),
        ("downsample2d 2x", [1, 64, 1024, 1024], lambda x, impl: upfirdn2d.downsample2d(x, f, impl=impl),
         BOTH_LAYOUTS),
        ("bias_act lrelu+clamp", [1, 128, 512, 512],
         lambda x, impl: bias_act.bias_act(x, b128, act="lrelu", clamp=256, impl=impl), BOTH_LAYOUTS),
        _flrelu_case("filtered_lrelu T up2 down2 sep", [4, 64, 38, 38], 36, 2, 2, False, device),
        _flrelu_case("filtered_lrelu T up2 down2 sep", [4, 64, 86, 86], 84, 2, 2, False, device),
        _flrelu_case("filtered_lrelu T up4 down2 sep", [4, 64, 54, 54], 84, 4, 2, False, device),
        _flrelu_case("filtered_lrelu R up2 down2 radial", [4, 128, 36, 36], 36, 2, 2, True, device),
        _flrelu_case("filtered_lrelu R up2 down2 radial", [4, 128, 52, 52], 52, 2, 2, True, device),
        _flrelu_case("filtered_lrelu ToRGB 1/1 no filters", [4, 3, 256, 256], 256, 1, 1, False, device),
    ]


def bench_ops(device: str, repeats: int, only: str | None = None) -> None:
    """Print the per-op table for ``device`` (only the ops whose name contains ``only``, when given)."""
    kernel = "cuda" if device == "cuda" else "cpp"
    print(f"\n| device | op | shape | layout | ref fwd ms | {kernel} fwd ms | fwd speed-up | {kernel} fwd GB/s | "
          f"ref fwd+bwd ms | {kernel} fwd+bwd ms | fwd+bwd speed-up |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, shape, fn, layouts in op_cases(device):
        if only and only not in name:
            continue
        for layout in layouts:
            x = torch.randn(shape, device=device)
            if layout == "NHWC":
                x = x.contiguous(memory_format=torch.channels_last)
            xg = x.clone().requires_grad_(True)
            y = fn(x, "ref")
            dy = torch.randn_like(y)
            moved = (x.numel() + y.numel()) * x.element_size()

            def fwd_bwd(impl):
                torch.autograd.grad(fn(xg, impl), xg, dy)

            rf = median_time(lambda: fn(x, "ref"), repeats, device)
            kf = median_time(lambda: fn(x, kernel), repeats, device)
            rb = median_time(lambda: fwd_bwd("ref"), repeats, device)
            kb = median_time(lambda: fwd_bwd(kernel), repeats, device)
            print(f"| {device} | {name} | {'x'.join(map(str, shape))} | {layout} | {rf * 1e3:.1f} | {kf * 1e3:.1f} | "
                  f"{rf / kf:.2f} | {moved / kf / 1e9:.1f} | {rb * 1e3:.1f} | {kb * 1e3:.1f} | {rb / kb:.2f} |",
                  flush=True)


def bench_generator(device: str, repeats: int, rounds: int = 3) -> None:
    """End-to-end 1024x1024 synthesis (our default path) with reference vs compiled ops.

    Both variants run interleaved in this process (``INSETGAN_OPS`` switched between calls),
    so a slow phase of a noisy machine hits both alike; medians over all rounds.
    """
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(img_resolution=1024, mapping_layers=8)).eval().requires_grad_(False).to(device)
    ws = G.mapping(torch.randn(1, G.z_dim, device=device), None).detach()

    def fwd():
        with torch.no_grad():
            G.synthesis(ws)

    def fwd_bwd():
        w = ws.clone().requires_grad_(True)
        G.synthesis(w).square().mean().backward()

    variants = {"reference ops": "ref", "compiled ops": ""}
    times = {name: ([], []) for name in variants}
    saved = os.environ.get("INSETGAN_OPS")
    try:
        for _ in range(rounds):
            for name, env in variants.items():
                os.environ["INSETGAN_OPS"] = env
                times[name][0].append(median_time(fwd, repeats, device))
                times[name][1].append(median_time(fwd_bwd, repeats, device))
    finally:
        if saved is None:
            os.environ.pop("INSETGAN_OPS", None)
        else:
            os.environ["INSETGAN_OPS"] = saved
    print("\n| device | generator 1024x1024 | forward s | fwd+bwd to ws s | forward speed-up | fwd+bwd speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    ref_f, ref_b = (statistics.median(t) for t in times["reference ops"])
    for name, (f, b) in times.items():
        f, b = statistics.median(f), statistics.median(b)
        print(f"| {device} | {name} | {f:.3f} | {b:.3f} | {ref_f / f:.2f} | {ref_b / b:.2f} |", flush=True)


def main() -> None:
    """Parse arguments and run the benchmarks."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-generator", action="store_true")
    ap.add_argument("--ops", default=None, help="only the ops whose name contains this text (e.g. filtered_lrelu)")
    args = ap.parse_args()
    tune_cpu_allocator()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"# {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, float32")
    for device in devices:
        bench_ops(device, args.repeats, args.ops)
        if not args.skip_generator:
            bench_generator(device, 2)


if __name__ == "__main__":
    main()
