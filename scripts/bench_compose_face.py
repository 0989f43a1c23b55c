#!/usr/bin/env python3
"""Benchmark ``insetgan compose --face SELFIE`` end to end: wall time, face found, identity distance.

Each selfie runs as a whole process with the default settings and a fresh output folder (so
nothing is cached), as a user runs it. With ``--baseline BIN`` a second ``insetgan`` executable
(e.g. an older checkout's venv) runs the same selfie right after, so both see the same machine
load; the table ends with the medians and the ratio of the wall times.

Selfies: the photos given, or ``--from-dataset DATASET --count N``: the source photos of the
first N adult faces (age ≥ 18, read from the All-Age-Faces file name ``NNNNNAxx``) among the
photos a prepared face dataset holds out for the encoder (every 97th image,
:func:`insetgan.inversion.encoder_run.holdout_indices`), looked up in the dataset's records.

    python scripts/bench_compose_face.py --from-dataset ../exp/data/faces64 --count 8 \\
        --baseline ../wt-base/.venv/bin/insetgan
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from insetgan.inversion.encoder_run import holdout_indices

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT_POOL = 64  # held-out images looked at for adults


def held_out_selfies(dataset: Path, count: int, min_age: int = 18) -> list[Path]:
    """Source photos of the first ``count`` adults among a prepared face dataset's held-out images."""
    meta = json.loads((dataset / "dataset.json").read_text())
    records, source = meta["records"], Path(meta["sources"][0])
    out = []
    for i in holdout_indices(len(records), HOLDOUT_POOL).tolist():
        name = records[i]["source"]
        age = re.search(r"A(\d+)", name)
        if age and int(age.group(1)) >= min_age:
            out.append(source / name)
        if len(out) == count:
            break
    return out


def run_one(exe: str, selfie: Path, outdir: Path, extra: list[str]) -> dict:
    """One ``compose --face`` process: its wall time, whether the result's face was found, its identity distance."""
    t0 = time.perf_counter()
    proc = subprocess.run([exe, "--quiet", "compose", "--face", str(selfie), "--outdir", str(outdir), *extra],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        return {"wall": wall, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    rep = json.loads((outdir / "report.json").read_text())
    after = (rep.get("identity") or {}).get("after") or [None]
    return {"wall": wall, "identity": after[0], "found": after[0] is not None,
            "invert_s": (rep.get("inputs", {}).get("face_photo") or {}).get("seconds")}


def main() -> None:
    """Run every selfie (and the baseline), print the table and the summary."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("selfies", nargs="*", type=Path)
    ap.add_argument("--from-dataset", type=Path, help="A prepared face dataset: its held-out adults' source photos.")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--insetgan", default=str(Path(sys.executable).with_name("insetgan")),
                    help="The executable measured (default: this venv's).")
    ap.add_argument("--baseline", default=None, help="A second insetgan executable run side by side.")
    ap.add_argument("--extra", default="", help="Extra compose options for the measured executable, e.g. "
                    "'--init mean'.")
    args = ap.parse_args()
    selfies = list(args.selfies) + (held_out_selfies(args.from_dataset, args.count) if args.from_dataset else [])
    if not selfies:
        ap.error("give selfies or --from-dataset")
    runs = {"this": (args.insetgan, args.extra.split())}
    if args.baseline:
        runs["baseline"] = (args.baseline, [])
    print(f"# bench_compose_face: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"{len(selfies)} selfies; this = {args.insetgan} {args.extra}; baseline = {args.baseline}")
    print("| selfie | " + " | ".join(f"{k} wall s | {k} found | {k} identity" for k in runs) + " |")
    print("|---|" + "---:|---:|---:|" * len(runs))
    results: dict[str, list[dict]] = {k: [] for k in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for i, selfie in enumerate(selfies):
            cells = []
            for name, (exe, extra) in runs.items():
                r = run_one(exe, selfie, Path(tmp) / f"{name}-{i}", extra)
                results[name].append(r)
                ident = f"{r['identity']:.3f}" if r.get("identity") is not None else r.get("error", "-")
                cells.append(f"{r['wall']:.1f} | {'yes' if r.get('found') else 'no'} | {ident}")
            print(f"| {selfie.name} | " + " | ".join(cells) + " |", flush=True)
    summary = {}
    for name, rs in results.items():
        ids = [r["identity"] for r in rs if r.get("identity") is not None]
        summary[name] = (statistics.median(r["wall"] for r in rs), sum(bool(r.get("found")) for r in rs),
                         statistics.median(ids) if ids else float("nan"))
        print(f"| **{name}: median** | {summary[name][0]:.1f} s | {summary[name][1]}/{len(rs)} found | "
              f"{summary[name][2]:.3f} |")
    if "baseline" in summary:
        print(f"\nwall-time ratio this / baseline (medians): {summary['this'][0] / summary['baseline'][0]:.3f}; "
              f"identity change: {summary['this'][2] - summary['baseline'][2]:+.3f}")


if __name__ == "__main__":
    main()
