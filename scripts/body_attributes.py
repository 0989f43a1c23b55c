"""Clothing-length attributes of full-body images: targets from CCP label maps, a regressor on EfficientNet features.

Targets (both in [0, 1], larger = longer garment), from a label map's person (non-``null``
pixels) between its top row ``y0`` and bottom row ``y1`` (height ``h``):

- ``upper_length`` (sleeves): the covered share of the arms-and-torso band ``y0 + [0.18, 0.52]·h``,
  ``covered / (covered + skin)``; short sleeves and sleeveless tops bare the arms (the hands are
  bare in every photo, a constant offset);
- ``lower_length`` (where the legs' skin starts): the same share in the legs band
  ``y0 + [0.55, 0.88]·h`` above the feet; shorts and short skirts bare the legs. Sheer
  ``stockings`` count as skin, ``tights`` and ``leggings`` as covered.

"Covered" is any garment label; accessories, bags, hair, footwear and socks are left out of both
counts. The regressor is ridge regression on EfficientNet-Lite0 features (strides 16 and 32,
average-pooled to a 4×2 grid, so where the skin is counts) of the photo cropped and resized as
``insetgan prepare bodies`` crops the training set, with mirrored copies as extra samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from insetgan.data.prepare import person_window
from insetgan.images import open_rgb, read_label_map
from insetgan.inversion.photos import reflect_crop
from insetgan.networks.efficientnet_lite import EfficientNetLite0

ATTRIBUTES = ("upper_length", "lower_length")
BANDS = {"upper_length": (0.18, 0.52), "lower_length": (0.55, 0.88)}
NOT_COUNTED = ("null", "accessories", "bag", "purse", "wallet", "hair", "hat", "glasses", "sunglasses", "earrings",
               "necklace", "bracelet", "ring", "watch", "gloves", "socks", "boots", "clogs", "flats", "heels",
               "loafers", "pumps", "sandals", "shoes", "sneakers", "wedges", "belt", "scarf", "tie")
SKIN_LIKE = ("skin", "stockings")
GRID = (4, 2)


@dataclass(frozen=True)
class LabelKinds:
    """Label indices that count as skin, and those that count as neither skin nor garment."""

    skin: tuple[int, ...]
    ignored: tuple[int, ...]

    @classmethod
    def load(cls, names_file: Path) -> "LabelKinds":
        """From ``label_names.txt`` (index → name, one per line)."""
        names = [n.strip().lower() for n in names_file.read_text().splitlines()]
        return cls(tuple(i for i, n in enumerate(names) if n in SKIN_LIKE),
                   tuple(i for i, n in enumerate(names) if n in NOT_COUNTED))


def targets(labels: np.ndarray, kinds: LabelKinds) -> dict[str, float] | None:
    """Both targets of one label map, or None when its person or a band holds too few counted pixels."""
    rows = np.flatnonzero((labels > 0).any(axis=1))
    if len(rows) < 50:
        return None
    y0, h = rows[0], rows[-1] + 1 - rows[0]
    skin = np.isin(labels, kinds.skin)
    covered = ~skin & ~np.isin(labels, kinds.ignored)
    out = {}
    for name, (lo, hi) in BANDS.items():
        band = slice(int(y0 + lo * h), int(y0 + hi * h))
        n_skin, n_cov = int(skin[band].sum()), int(covered[band].sum())
        if n_skin + n_cov < 200:
            return None
        out[name] = n_cov / (n_skin + n_cov)
    return out


def labelled_crops(ccp: Path, height: int, width: int, limit: int | None = None
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Photo names, crops [N, H, W, 3] uint8 (as ``prepare bodies`` frames them) and targets [N, 2]."""
    kinds = LabelKinds.load(ccp / "label_names.txt")
    names, crops, ys = [], [], []
    for path in sorted((ccp / "labels").glob("*.png"))[:limit]:
        labels = read_label_map(path)
        t = targets(labels, kinds)
        photo_path = ccp / "photos" / f"{path.stem}.jpg"
        if t is None or not photo_path.is_file():
            continue
        photo = open_rgb(photo_path)
        if photo.size != labels.shape[::-1]:
            continue
        window, _ = person_window(photo.size, height, width, labels)
        crops.append(np.asarray(reflect_crop(photo, window).resize((width, height), Image.LANCZOS)))
        names.append(path.stem)
        ys.append([t[a] for a in ATTRIBUTES])
    return names, np.stack(crops), np.array(ys, dtype=np.float64)


@torch.no_grad()
def features(net: EfficientNetLite0, images: torch.Tensor, batch: int = 32) -> np.ndarray:
    """Pooled EfficientNet features [N, F] of images [N, 3, H, W] in [-1, 1] (float64)."""
    out = []
    for i in range(0, len(images), batch):
        feats = net.features(images[i:i + batch].float())[2:]
        pooled = [F.adaptive_avg_pool2d(f, GRID).flatten(1) for f in feats]
        out.append(torch.cat(pooled, dim=1).double())
    return torch.cat(out).numpy()


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """HWC uint8 images as NCHW float in [-1, 1]."""
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1


@dataclass(frozen=True, eq=False)
class Ridge:
    """A linear regressor on standardised features: ``((x − mean) / std) @ coef + intercept``."""

    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions [N, outputs]."""
        return ((x - self.mean) / self.std) @ self.coef + self.intercept


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> Ridge:
    """Ridge regression of ``y`` [N, K] on ``x`` [N, F] (dual form: N is small)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / std
    ym = y.mean(axis=0)
    gram = xs @ xs.T
    alpha = np.linalg.solve(gram + lam * np.eye(len(x)), y - ym)
    return Ridge(mean, std, xs.T @ alpha, ym)


def choose_lambda(x: np.ndarray, y: np.ndarray, groups: np.ndarray, lams: tuple[float, ...], folds: int = 5
                  ) -> tuple[float, dict[float, float]]:
    """The ridge penalty with the lowest cross-validated squared error (folds by photo, so mirrors stay together)."""
    errors = {}
    fold_of = groups % folds
    for lam in lams:
        err = 0.0
        for k in range(folds):
            tr, te = fold_of != k, fold_of == k
            err += float(np.square(fit_ridge(x[tr], y[tr], lam).predict(x[te]) - y[te]).sum())
        errors[lam] = err / len(x)
    return min(errors, key=errors.get), errors


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two vectors."""
    return float(np.corrcoef(a, b)[0, 1])
