#!/usr/bin/env python3
"""Built-in editing directions of the built-in body: upper- and lower-garment length, learned and measured.

1. Targets from the CCP label maps (``scripts/body_attributes.py``: the covered share of the
   arms band and of the legs band), a ridge regressor on EfficientNet-Lite0 features of the photos
   cropped as the body's training set (features cached in ``--work``); its held-out correlation is recorded.
2. ``--samples`` bodies (seeds 0..N-1, ψ = 1) are scored by the regressor; InterFaceGAN: the
   lowest and highest ``--ratio`` of each score are labelled 0 / 1 and a linear SVM in W
   separates them (held-out accuracy recorded). ``upper_length`` is made orthogonal to the
   ``lower_length`` normal and to the least-squares gradient of the lower score in W
   (InterFaceGAN's conditional manipulation: on this body the two are entangled). Each unit
   normal is scaled by :data:`UNIT_SIGMAS` standard deviations of the
   samples' W along it, so strengths -3..3 span ±9 σ, where the small body shows the change.
3. Measured on ``--eval-seeds`` fresh seeds: the regressor's score along each direction at
   strengths -3..3 (mean per strength, per-seed Spearman correlation, share of monotone strips),
   the other attribute's change, and the pixel change inside the face region against the rest.
4. Writes ``body.npz`` (``upper_length``, ``lower_length`` [w_dim]), ``body.json`` (the body's
   SHA-256 and the measurements) and strips (PNG) to ``--work``; ``--ship`` copies the pair to
   ``insetgan/assets/directions/`` and a small strip to ``docs/images/editing_strip.png``.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/body_directions.py --work runs/body_dirs --ship
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from body_attributes import (ATTRIBUTES, choose_lambda, correlation, features, fit_ridge, labelled_crops, to_tensor)  # noqa: E402

from insetgan import io as iio  # noqa: E402
from insetgan.editing.apply import synthesize_edited  # noqa: E402
from insetgan.editing.boundary import BoundaryConfig, extremes, fit_boundary  # noqa: E402
from insetgan.editing.directions import LoadedEdit, WDirection, directions_dir  # noqa: E402
from insetgan.editing.spec import Edit  # noqa: E402
from insetgan.models import load_network  # noqa: E402
from insetgan.networks.efficientnet_lite import load_efficientnet_lite0  # noqa: E402
from insetgan.sampling import z_from_seed  # noqa: E402

STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
UNIT_SIGMAS = 3.0  # strength 1 moves W by three standard deviations of the samples along the direction
CONDITIONS = {"upper_length": "lower_length"}  # InterFaceGAN's conditional edit: the other normal projected out
EVAL_FIRST_SEED = 1_000_000
LAMBDAS = (300.0, 1e3, 3e3, 1e4, 3e4)


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ccp", type=Path, default=ROOT.parent / "shared" / "data" / "ccp")
    p.add_argument("--body", default="default-body", help="Body generator (path or built-in name).")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--ratio", type=float, default=0.2, help="Share of lowest / highest scores labelled 0 / 1.")
    p.add_argument("--eval-seeds", type=int, default=24)
    p.add_argument("--work", type=Path, required=True, help="Folder for the outputs and caches.")
    p.add_argument("--ship", action="store_true", help="Copy the directions into the package and the docs.")
    return p.parse_args()


def photo_features(ccp: Path, height: int, width: int, net: torch.nn.Module, cache: Path
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of the labelled photos and of their mirrors, and the targets (cached in ``cache``)."""
    if cache.is_file():
        with np.load(cache) as c:
            return c["f"], c["ff"], c["y"]
    _, crops, y = labelled_crops(ccp, height, width)
    x = to_tensor(crops)
    f, ff = features(net, x), features(net, x.flip(3))
    np.savez(cache, f=f, ff=ff, y=y)
    return f, ff, y


def train_regressor(f: np.ndarray, ff: np.ndarray, y: np.ndarray):  # noqa: ANN201 - (Ridge, dict)
    """The attribute regressor on the photos' features, and its held-out numbers (a 20% photo split)."""
    perm = np.random.RandomState(0).permutation(len(y))
    held, train = perm[: len(y) // 5], perm[len(y) // 5:]
    both = np.concatenate([f[train], ff[train]])
    groups = np.concatenate([np.arange(len(train))] * 2)
    lam, cv = choose_lambda(both, np.concatenate([y[train]] * 2), groups, LAMBDAS)
    model = fit_ridge(both, np.concatenate([y[train]] * 2), lam)
    pred = (model.predict(f[held]) + model.predict(ff[held])) / 2
    report = {"photos": len(y), "heldout_photos": len(held), "ridge_lambda": lam,
              "cv_mse": {f"{k:g}": round(v, 5) for k, v in cv.items()},
              "target_mean": dict(zip(ATTRIBUTES, y.mean(axis=0).round(4).tolist())),
              "target_std": dict(zip(ATTRIBUTES, y.std(axis=0).round(4).tolist())),
              "heldout_correlation": {a: round(correlation(pred[:, k], y[held, k]), 4)
                                      for k, a in enumerate(ATTRIBUTES)}}
    final = fit_ridge(np.concatenate([f, ff]), np.concatenate([y, y]), lam)
    return final, report


@torch.no_grad()
def score_images(images: torch.Tensor, net: torch.nn.Module, model, mirror: bool = True
                 ) -> np.ndarray:  # noqa: ANN001
    """Attribute scores [N, 2] of generated images [N, 3, H, W] (with ``mirror``: the mean with the mirror's)."""
    images = images.clamp(-1, 1)
    if not mirror:
        return model.predict(features(net, images))
    return (model.predict(features(net, images)) + model.predict(features(net, images.flip(3)))) / 2


@torch.no_grad()
def sample_and_score(G: torch.nn.Module, net: torch.nn.Module, model, seeds: range, batch: int = 16
                     ) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """W codes [N, w_dim] (ψ = 1) and attribute scores [N, 2] of the seeds."""
    ws, scores = [], []
    for i in range(0, len(seeds), batch):
        z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds[i:i + batch]])
        w = G.mapping(z, None)
        img = G.synthesis(w, noise_mode="const")
        ws.append(w[:, 0].double().numpy())
        scores.append(score_images(img, net, model, mirror=False))
    return np.concatenate(ws), np.concatenate(scores)


def conditioned(n: np.ndarray, other: np.ndarray, w: np.ndarray, other_score: np.ndarray) -> np.ndarray:
    """``n`` with the other attribute's boundary normal and its score's least-squares gradient in W projected out."""
    wc = w - w.mean(axis=0)
    grad = np.linalg.solve(wc.T @ wc + 1e-3 * len(w) * np.eye(w.shape[1]), wc.T @ (other_score - other_score.mean()))
    basis, _ = np.linalg.qr(np.stack([other, grad], axis=1))
    n = n - basis @ (basis.T @ n)
    return n / np.linalg.norm(n)


def w_edit(name: str, vector: np.ndarray, num_ws: int) -> LoadedEdit:
    """A W edit of all rows by ``vector`` with strength 1 (scaled per column by the caller)."""
    return LoadedEdit(Edit(f"default-body:{name}"), "", "", WDirection(np.tile(vector, (num_ws, 1))))


def face_mask(G: torch.nn.Module, metadata: dict) -> np.ndarray:
    """[H, W] bool mask of the body's face prior box (from its metadata; the method's default otherwise)."""
    raw = json.loads(metadata.get("region_priors", "{}") or "{}")
    x, y, w, h = raw.get("face", (0.37, 0.04, 0.27, 0.13))
    _, H, W = G.img_shape
    mask = np.zeros((H, W), dtype=bool)
    mask[int(y * H): int((y + h) * H) + 1, int(x * W): int((x + w) * W) + 1] = True
    return mask


def monotone_share(curves: np.ndarray) -> float:
    """Share of per-seed score curves [S, K] that never decrease by more than 0.01 from one strength to the next."""
    return float((np.diff(curves, axis=1) >= -0.01).all(axis=1).mean())


def spearman(curve: np.ndarray) -> float:
    """Spearman correlation of a score curve with the strength order."""
    ranks = np.argsort(np.argsort(curve, kind="stable"), kind="stable")
    return correlation(ranks.astype(float), np.arange(len(curve), dtype=float)) if np.ptp(curve) > 0 else 0.0


@torch.no_grad()
def measure(G: torch.nn.Module, net: torch.nn.Module, model, edit: LoadedEdit, k: int, seeds: range,
            mask: np.ndarray):  # noqa: ANN001, ANN201 - (numbers, strip tiles)
    """Scores along direction ``k`` at :data:`STRENGTHS` on fresh seeds, face-region change, strip tiles."""
    curves = np.zeros((len(seeds), len(STRENGTHS), len(ATTRIBUTES)))
    face_change, rest_change, tiles = [], [], []
    for r, seed in enumerate(seeds):
        w = G.mapping(z_from_seed(seed, G.z_dim), None)
        imgs = torch.cat([synthesize_edited(G, w, [edit], s) for s in STRENGTHS])
        curves[r] = score_images(imgs, net, model)
        diff = (imgs[-1] - imgs[0]).abs().mean(dim=0).numpy()
        face_change.append(float(diff[mask].mean()))
        rest_change.append(float(diff[~mask].mean()))
        tiles.append([iio.to_uint8(im) for im in imgs])
    own = curves[:, :, k]
    other = curves[:, :, 1 - k]
    numbers = {
        "strengths": list(STRENGTHS),
        "mean_score": own.mean(axis=0).round(4).tolist(),
        "mean_other_score": other.mean(axis=0).round(4).tolist(),
        "score_change_-3_to_3": round(float((own[:, -1] - own[:, 0]).mean()), 4),
        "other_change_-3_to_3": round(float((other[:, -1] - other[:, 0]).mean()), 4),
        "spearman_mean": round(float(np.mean([spearman(c) for c in own])), 4),
        "monotone_share": round(monotone_share(own), 4),
        "face_region_change": round(float(np.mean(face_change)), 4),
        "rest_change": round(float(np.mean(rest_change)), 4),
        "seeds": [seeds.start, seeds.stop - 1],
    }
    return numbers, tiles


def sha256(path: Path) -> str:
    """SHA-256 of a file."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_strips(work: Path, tiles: dict[str, list[list[np.ndarray]]]) -> Path:
    """Full-size strips per attribute and a small two-attribute strip for the docs; the docs strip's path."""
    for name, rows in tiles.items():
        flat = [t for row in rows[:4] for t in row]
        iio.atomic_write_bytes(work / f"strip_{name}.png", iio.png_bytes(iio.grid(flat, cols=len(STRENGTHS))))
    small = []
    for name in ATTRIBUTES:
        for row in tiles[name][:2]:
            small += [row[i][::2, ::2] for i in (0, 2, 3, 4, 6)]  # strengths -3, -1, 0, 1, 3
    docs = work / "editing_strip.png"
    iio.atomic_write_bytes(docs, iio.png_bytes(iio.grid(small, cols=5)))
    return docs


def main() -> None:
    """Run the pipeline (see the module doc)."""
    args = parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ckpt, info = load_network(args.body, "cpu", "--body")
    G = ckpt.generator.eval().requires_grad_(False)
    _, H, W = G.img_shape
    net = load_efficientnet_lite0()
    model, reg_report = train_regressor(*photo_features(args.ccp, H, W, net, args.work / "photo_features.npz"))
    print("regressor", json.dumps(reg_report["heldout_correlation"]), f"{time.perf_counter() - t0:.0f}s", flush=True)
    cache = args.work / f"samples_{args.samples}.npz"
    if cache.is_file():
        with np.load(cache) as c:
            w, scores = c["w"], c["scores"]
    else:
        w, scores = sample_and_score(G, net, model, range(args.samples))
        np.savez(cache, w=w, scores=scores)
    print("sampled", len(w), f"{time.perf_counter() - t0:.0f}s", flush=True)
    vectors, report, tiles, normals, boundaries = {}, {}, {}, {}, {}
    mask = face_mask(G, ckpt.metadata)
    for k, name in enumerate(ATTRIBUTES):
        low, high = extremes(scores[:, k], args.ratio)
        idx = np.concatenate([low, high])
        labels = np.concatenate([np.zeros(len(low), int), np.ones(len(high), int)])
        boundaries[name] = fit_boundary(w[idx], labels, BoundaryConfig(kind="svm", holdout=0.2))
        normals[name] = boundaries[name].normal
    for k, name in enumerate(ATTRIBUTES):
        n = normals[name]
        if name in CONDITIONS:
            n = conditioned(n, normals[CONDITIONS[name]], w, scores[:, ATTRIBUTES.index(CONDITIONS[name])])
        sigma = float((w @ n).std())
        vectors[name] = (n * sigma * UNIT_SIGMAS).astype(np.float32)
        numbers, tiles[name] = measure(G, net, model, w_edit(name, vectors[name], G.num_ws), k,
                                       range(EVAL_FIRST_SEED, EVAL_FIRST_SEED + args.eval_seeds), mask)
        report[name] = {"boundary": boundaries[name].to_dict(), "sigma_w": round(sigma, 4),
                        "conditioned_on": CONDITIONS.get(name),
                        "sample_score_mean": round(float(scores[:, k].mean()), 4),
                        "sample_score_std": round(float(scores[:, k].std()), 4), "measured": numbers}
        print(name, json.dumps(report[name]), flush=True)
    cos = float(normals[ATTRIBUTES[0]] @ normals[ATTRIBUTES[1]])
    body_path = Path(info["path"])
    record = {"generator": {"name": args.body, "file": body_path.name, "sha256": sha256(body_path),
                            "w_dim": G.w_dim, "num_ws": G.num_ws},
              "convention": f"W directions on all rows; strength 1 = {UNIT_SIGMAS:g} standard deviations of the "
                            "samples' W along the direction; positive = longer garment",
              "samples": args.samples, "ratio": args.ratio, "regressor": reg_report, "directions": report,
              "normals_cosine": round(cos, 4), "script": "scripts/body_directions.py",
              "seconds": round(time.perf_counter() - t0, 1)}
    iio.atomic_write_bytes(args.work / "body.npz", iio.encode(lambda buf: np.savez(buf, **vectors)))
    iio.atomic_write_bytes(args.work / "body.json", iio.json_bytes(record))
    docs_strip = write_strips(args.work, tiles)
    if args.ship:
        directions_dir().mkdir(parents=True, exist_ok=True)
        for name in ("body.npz", "body.json"):
            shutil.copyfile(args.work / name, directions_dir() / name)
        shutil.copyfile(docs_strip, ROOT / "docs" / "images" / "editing_strip.png")
    print("done", f"{time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
