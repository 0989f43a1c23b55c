#!/usr/bin/env python3
"""Quality curve of a training run: every snapshot gets its numbers written beside it.

For each ``network-KKKKKK.safetensors`` of RUN_DIR (not ``-latest``) without a
``quality-KKKKKK.json``, evaluates it (``insetgan.eval.model_quality.evaluate_snapshot``: face → face rate,
FDD, style spread; body → HOG person rate, face-region rate, style spread; shoes → HOG Fréchet
distance, style spread), writes ``quality-KKKKKK.json`` and rewrites ``curve.json`` (rows sorted
by kimg) and ``curve.md`` (a markdown table, with the same numbers on real data as the floor).
The real side is computed once from DATASET (face descriptors cached in RUN_DIR as
``real-faces-<key>.npz``). A snapshot that fails to load is skipped with a warning (and retried
on the next poll with ``--watch``).

    python scripts/eval_run.py runs/face64 --kind face --data data/faces64
    nice python scripts/eval_run.py runs/face64 --kind face --data data/faces64 --watch 120 &
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

from insetgan.eval.model_quality import KINDS, descriptor_model, evaluate_snapshot, prepare_reference
from insetgan.inversion.align import LandmarkDetector
from insetgan.io import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]

SNAPSHOT = re.compile(r"network-(\d{6})\.safetensors")
COLUMNS = {"face": ("face_rate", "fdd"), "body": ("person_rate", "person_rate_flipped", "person_gain", "face_region_rate", "hog_fd"), "shoes": ("hog_fd",)}
SPREAD = ("spread_w", "spread_4x4", "spread_8x8", "spread_16x16")


def snapshots(run: Path, every: int) -> list[tuple[int, Path]]:
    """(kimg, path) of the run's final-named network snapshots whose kimg is a multiple of ``every``."""
    found = []
    for path in run.iterdir():
        m = SNAPSHOT.fullmatch(path.name)
        if m and int(m.group(1)) % every == 0:
            found.append((int(m.group(1)), path))
    return sorted(found)


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


def write_curve(run: Path, kind: str, floor: dict[str, float]) -> list[dict]:
    """Rewrite ``curve.json`` and ``curve.md`` from the run's ``quality-*.json`` files; returns the rows."""
    rows = []
    for path in run.glob("quality-*.json"):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            print(f"warning: skipping unreadable {path.name}", file=sys.stderr)
    rows.sort(key=lambda r: r.get("kimg", math.inf))
    _write_json(run / "curve.json", rows)
    cols = ("kimg", *COLUMNS[kind], *SPREAD, "seconds")
    real = ", ".join(f"{k} {_fmt(v)}" for k, v in floor.items())
    lines = [f"# Quality curve of {run.name} ({kind})", "", f"Real data (the floor): {real}.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f"{r[c]:g}" if c == "kimg" and c in r else _fmt(r.get(c)) for c in cols) + " |"
              for r in rows]
    atomic_write_bytes(run / "curve.md", ("\n".join(lines) + "\n").encode())
    return rows


def evaluate_pending(run: Path, args, reference, detector, model) -> tuple[int, int]:
    """Evaluate the snapshots without a quality file; returns (evaluated, failed)."""
    done = failed = 0
    for kimg, path in snapshots(run, args.every):
        out = run / f"quality-{kimg:06d}.json"
        if out.exists():
            continue
        try:
            row = evaluate_snapshot(path, args.kind, reference, samples_n=args.samples, fd_samples=args.fd_samples,
                                    psi=args.psi, detector=detector, model=model)
        except Exception as exc:  # noqa: BLE001 - a half-written or broken snapshot: retry next poll
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"warning: skipping {path.name}: {first}", file=sys.stderr)
            failed += 1
            continue
        _write_json(out, row)
        done += 1
        print(f"{path.name}: " + ", ".join(f"{k} {_fmt(row[k])}" for k in (*COLUMNS[args.kind], "seconds")
                                           if k in row), flush=True)
    return done, failed


def main() -> int:
    """Parse arguments, evaluate pending snapshots (polling with ``--watch``); the exit code."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="the run folder (holds network-KKKKKK.safetensors)")
    ap.add_argument("--kind", required=True, choices=KINDS)
    ap.add_argument("--data", required=True, help="the run's training dataset (folder or zip)")
    ap.add_argument("--every", type=int, default=1, help="only snapshots whose kimg is a multiple of K")
    ap.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                    help="keep polling for new snapshots every SECONDS (stop with Ctrl-C)")
    ap.add_argument("--samples", type=int, default=64, help="samples for the detection rates (protocol: 64)")
    ap.add_argument("--fd-samples", type=int, default=300, help="samples and real images per Fréchet set (300)")
    ap.add_argument("--psi", type=float, default=0.7, help="ψ of the detection-rate samples (0.7)")
    args = ap.parse_args()
    run, data = Path(args.run), Path(args.data)
    if not run.is_dir():
        raise ValueError(f"run folder not found: {run}")
    if not data.exists():
        raise ValueError(f"dataset not found: {data}")
    if args.every < 1 or args.samples < 1 or args.fd_samples < 2:
        raise ValueError("--every and --samples must be >= 1 and --fd-samples >= 2")
    model = descriptor_model() if args.kind == "face" else None
    detector = LandmarkDetector() if args.kind in ("face", "body") else None
    reference = prepare_reference(args.kind, data, run, args.fd_samples, args.samples, model, detector)
    while True:
        done, failed = evaluate_pending(run, args, reference, detector, model)
        rows = write_curve(run, args.kind, reference.floor) if done or not (run / "curve.json").exists() else None
        if args.watch is None:
            if not rows and not snapshots(run, args.every):
                print(f"no network-KKKKKK.safetensors in {run} yet", file=sys.stderr)
            return 1 if failed else 0
        time.sleep(args.watch)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
