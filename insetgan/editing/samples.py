"""Samples to label for an InterFaceGAN boundary: a grid, their W codes, and the labels read back.

``insetgan directions samples`` writes ``grid.png`` (each tile numbered with its seed),
``latents.npz`` (``w`` [N, w_dim] after truncation, ``seeds`` [N] as exact float64 integers) and
``labels.csv`` (``seed,label`` with the labels left empty). The user writes 0 or 1 after the seeds
they can judge (rows left empty are skipped) and passes both files to ``directions boundary``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import ImageDraw

from insetgan import io as iio
from insetgan.editing.readers import checked_size, read_npz_file
from insetgan.errors import InsetganError
from insetgan.latents import MAX_LATENT_ABS
from insetgan.limits import MAX_SEED, clipped
from insetgan.sampling import SampleConfig, class_vector, input_transform, z_from_seed

MAX_SAMPLES = 4096
MAX_LABELS_BYTES = 4 * 2**20
GRID_COLUMNS = 8


@torch.no_grad()
def sample_ws(G: torch.nn.Module, seeds: Sequence[int], cfg: SampleConfig) -> torch.Tensor:
    """W+ [N, num_ws, w_dim] of the seeds (official z convention, the truncation of ``cfg``)."""
    cfg.validate(G)
    device = next(G.parameters()).device
    c = class_vector(G, cfg.class_idx, device)
    out = [G.mapping(z_from_seed(s, G.z_dim).to(device), c, truncation_psi=cfg.truncation_psi,
                     truncation_cutoff=cfg.truncation_cutoff) for s in seeds]
    return torch.cat(out) if out else torch.zeros(0, G.num_ws, G.w_dim)


def numbered(arr: np.ndarray, text: str) -> np.ndarray:
    """An HWC uint8 image with ``text`` in a small box at its top-left corner."""
    im = iio.pil_image(arr).convert("RGB")
    draw = ImageDraw.Draw(im)
    box = draw.textbbox((2, 1), text)
    draw.rectangle((0, 0, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    draw.text((2, 1), text, fill=(255, 255, 255))
    return np.asarray(im)


@torch.no_grad()
def samples_files(G: torch.nn.Module, seeds: Sequence[int], cfg: SampleConfig) -> dict[str, bytes]:
    """``grid.png``, ``latents.npz`` and an empty ``labels.csv`` for the seeds (encoded, not yet written)."""
    if not 1 <= len(seeds) <= MAX_SAMPLES:
        raise InsetganError(f"give 1 to {MAX_SAMPLES} samples, got {len(seeds)}")
    tiles, ws = [], []
    with input_transform(G, cfg):
        for seed in seeds:
            w = sample_ws(G, [seed], cfg)
            img = G.synthesis(w, noise_mode=cfg.noise_mode)[0].float().cpu()
            tiles.append(numbered(iio.to_uint8(img), str(seed)))
            ws.append(w[0, 0].float().cpu().numpy())
    latents = iio.encode(lambda buf: np.savez(buf, w=np.stack(ws).astype(np.float32),
                                             seeds=np.array(seeds, dtype=np.float64)))
    labels = "seed,label\n" + "".join(f"{s}," + "\n" for s in seeds)
    return {"grid.png": iio.png_bytes(iio.grid(tiles, cols=min(GRID_COLUMNS, len(tiles)))),
            "latents.npz": latents, "labels.csv": labels.encode()}


def read_latents(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``w`` [N, D] and integer ``seeds`` [N] from a ``latents.npz`` written by ``directions samples``."""
    what = f"latents {clipped(str(path), 120)}"
    p = Path(path)
    checked_size(p, what)
    with p.open("rb") as f:
        if f.read(2) != b"PK":
            raise InsetganError(f"{what} is not an .npz file (w and seeds arrays, as directions samples writes)")
    arrays = read_npz_file(p, what, ("w", "seeds"))
    if "w" not in arrays:
        raise InsetganError(f"{what} has no array 'w' (W codes [N, w_dim])")
    w = arrays["w"]
    if w.ndim != 2 or not 1 <= w.shape[0] <= MAX_SAMPLES:
        raise InsetganError(f"{what}: 'w' has shape {list(w.shape)}; expected [N, w_dim] with N <= {MAX_SAMPLES}")
    if np.abs(w).max() > MAX_LATENT_ABS:
        raise InsetganError(f"{what}: 'w' holds values beyond ±{MAX_LATENT_ABS:g}")
    seeds = arrays.get("seeds", np.arange(w.shape[0], dtype=np.float32))
    if seeds.shape != (w.shape[0],) or (seeds != np.round(seeds)).any() or seeds.min() < 0 or seeds.max() > MAX_SEED:
        raise InsetganError(f"{what}: 'seeds' must hold {w.shape[0]} whole numbers in 0..{MAX_SEED}")
    return w, seeds.astype(np.int64)


def _cells(line: str, path: str, number: int) -> tuple[str, str]:
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 2:
        raise InsetganError(f"{path}, line {number}: expected two columns (seed or index, label), got "
                            f"{clipped(line, 60)!r}")
    return parts[0], parts[1]


def read_labels(path: str | Path, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the latents and their 0/1 labels from ``labels.csv`` (``seed,label`` or ``index,label``).

    The header names the key column (``seed`` or ``index``); rows with an empty label are
    skipped; every other problem (a label other than 0/1, an unknown seed, a repeated key) is one
    line naming the row.
    """
    p = Path(path)
    what = f"labels {clipped(str(path), 120)}"
    if checked_size(p, what) > MAX_LABELS_BYTES:
        raise InsetganError(f"{what} is over {MAX_LABELS_BYTES:,} bytes")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise InsetganError(f"{what} is not UTF-8 text") from None
    if not lines:
        raise InsetganError(f"{what} is empty")
    key_name, label_name = _cells(lines[0], what, 1)
    if key_name.lower() not in ("seed", "index") or label_name.lower() != "label":
        raise InsetganError(f"{what}: the first line must be 'seed,label' or 'index,label'")
    by_key = {int(s): i for i, s in enumerate(seeds)} if key_name.lower() == "seed" else None
    indices, labels, seen = [], [], set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        key, label = _cells(line, what, number)
        if not label:
            continue
        if label not in ("0", "1") or not key.isdigit() or len(key) > 12:
            raise InsetganError(f"{what}, line {number}: expected a {key_name.lower()} and a label 0 or 1, got "
                                f"{clipped(line, 60)!r}")
        index = by_key.get(int(key)) if by_key is not None else int(key)
        if index is None or not 0 <= index < len(seeds):
            raise InsetganError(f"{what}, line {number}: {key_name.lower()} {key} is not in the latents file")
        if index in seen:
            raise InsetganError(f"{what}, line {number}: {key_name.lower()} {key} is labelled twice")
        seen.add(index)
        indices.append(index)
        labels.append(int(label))
    return np.array(indices, dtype=np.int64), np.array(labels, dtype=np.int64)
