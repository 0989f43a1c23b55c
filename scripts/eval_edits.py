"""Does an edited composite keep its seam, face and identity? compose --edit against the unedited compose.

For the built-in body, composes each seed unedited and with each built-in direction at each
strength (``--edit default-body:NAME=α``), with ``--face PHOTO`` (the selfie is inverted once,
then read from --cache), and prints one table row per setting, averaged over the seeds: the
seam of the naive paste and of the result (``face:seam``), the body drift (start canvas vs
result outside the face box; the start is the edited canvas, so this is the optimisation's
drift, not the edit's), the face's dlib score before and after, the identity distance to the
selfie after, how many faces the face check flags as worse, and how far the edit moved the start
canvas (mean absolute change of canvas.png against the unedited start, 0-255).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/eval_edits.py               # seeds 0-2, strengths -2,2
    .venv/bin/python scripts/eval_edits.py --seeds 0-5 --strengths -3,3 --json rows.json
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from benchutil import machine_line  # noqa: E402

from insetgan import io as iio  # noqa: E402
from insetgan.editing.directions import directions_dir  # noqa: E402
from insetgan.jobs.compose import run_compose  # noqa: E402
from insetgan.jobs.options import request_from  # noqa: E402
from insetgan.jobs.progress import silent  # noqa: E402
from insetgan.jobs.requests import ComposeRequest  # noqa: E402


def _settings(strengths: list[float]) -> list[tuple[str, tuple[str, ...]]]:
    """(label, --edit specs): unedited first, then each built-in direction at each strength."""
    names = json.loads((directions_dir() / "body.json").read_text())["directions"]
    return [("unedited", ())] + [(f"{n} {s:+g}", (f"default-body:{n}={s:g}",)) for n in names for s in strengths]


def _compose(seed: int, edits: tuple[str, ...], args: argparse.Namespace, cache: Path) -> tuple[dict, np.ndarray]:
    """One compose job: its report and its start canvas (the edited body before the optimisation)."""
    req = request_from(ComposeRequest, {"body_seed": seed, "face_photo": args.face, "face_seed": args.face_seed,
                                        "edits": list(edits), "steps": args.steps, "device": "cpu"})
    res = run_compose(req, silent, cache)
    for name, data in res.cache_files.items():
        (cache / name).write_bytes(data)
    return res.job.report, np.asarray(Image.open(io.BytesIO(res.job.files["canvas.png"]))).astype(np.float64)


def _row(label: str, runs: list[tuple[dict, np.ndarray]], plain: list[np.ndarray]) -> dict:
    """The setting's numbers, averaged over its seeds."""
    def mean(values: list) -> float | None:
        kept = [v for v in values if v is not None]
        return round(statistics.mean(kept), 4) if kept else None

    before = [r["metrics"]["before"][0] for r, _ in runs]
    after = [r["metrics"]["after"][0] for r, _ in runs]
    return {"setting": label, "seeds": len(runs),
            "seam_naive": mean([b.get("face:seam") for b in before]),
            "seam_result": mean([a.get("face:seam") for a in after]),
            "body_drift_l1": mean([a.get("body_drift_l1") for a in after]),
            "face_score": [mean([b.get("face:score") for b in before]), mean([a.get("face:score") for a in after])],
            "identity_after": mean([a.get("face:identity") for a in after]),
            "worse": sum(bool(r["face_check"]["worse"][0]) for r, _ in runs),
            "start_change": mean([float(np.abs(c - p).mean()) for (_, c), p in zip(runs, plain)]),
            "per_seed": [{"seed": r["latents"]["body"][0].get("seed"), "seam": [b.get("face:seam"), a.get("face:seam")],
                          "face_score": [b.get("face:score"), a.get("face:score")],
                          "identity_after": a.get("face:identity"), "warnings": r["face_check"]["warnings"]}
                         for (r, _), b, a in zip(runs, before, after)]}


def _line(row: dict) -> str:
    """One markdown table row."""
    score = " → ".join("none" if v is None else f"{v:.3f}" for v in row["face_score"])
    identity = "" if row["identity_after"] is None else f"{row['identity_after']:.3f}"
    return (f"| {row['setting']} | {row['seam_naive']:.3f} → {row['seam_result']:.3f} | {row['body_drift_l1']:.4f} | "
            f"{score} | {identity} | {row['worse']}/{row['seeds']} | {row['start_change']:.1f} |")


def main() -> None:
    """Compose every seed in every setting and print the table (and --json rows)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--strengths", default="-2,2")
    ap.add_argument("--face", default=str(REPO / "examples" / "selfie.jpg"), help="selfie ('none': --face-seed)")
    ap.add_argument("--face-seed", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="compose steps (default: the preset's)")
    ap.add_argument("--cache", default=str(REPO / "out" / "eval_edits_cache"))
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args()
    args.face = None if args.face == "none" else args.face
    logging.getLogger("insetgan").setLevel(logging.ERROR)  # the table counts the face check's warnings
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    seeds = iio.parse_range(args.seeds, "seed", max_count=64)
    print(machine_line())
    print(f"built-in models, seeds {args.seeds}, face {args.face or f'seed {args.face_seed}'}, "
          f"steps {args.steps or 'the preset'}")
    print("| setting | seam naive → result | body drift L1 | face score start → result | identity after | "
          "worse faces | start canvas change |")
    print("|---|---|---:|---|---:|---:|---:|")
    rows, plain = [], []
    for label, edits in _settings([float(s) for s in args.strengths.split(",")]):
        runs = [_compose(seed, edits, args, cache) for seed in seeds]
        plain = plain or [canvas for _, canvas in runs]
        rows.append(_row(label, runs, plain))
        print(_line(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
