"""InterFaceGAN boundaries: a linear classifier on W of labelled samples, its unit normal a direction.

Shen et al. (CVPR 2020) separate the W codes of samples with and without an attribute by a
hyperplane; its unit normal, pointing towards the positive side, is the editing direction. The
classifier here is written in torch: logistic regression or a linear SVM (squared hinge), both
with an L2 penalty, fitted by L-BFGS on W centred and scaled by one number (which keeps the
hyperplane's orientation). A stratified held-out share of the samples measures its accuracy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from insetgan.errors import InsetganError
from insetgan.limits import Range, check_choice, check_ranges, ranged

KINDS = ("logistic", "svm")
MIN_PER_CLASS = 2


@dataclass(frozen=True)
class BoundaryConfig:
    """How to fit: classifier kind, held-out share, L2 penalty, L-BFGS steps, split seed."""

    kind: str = "logistic"
    holdout: float = ranged(0.2, 0.0, 0.9)
    l2: float = ranged(1e-3, 0.0, 1e3)
    steps: int = ranged(200, 1, 10_000, integer=True)
    seed: int = ranged(0, 0, 2**32 - 1, integer=True)

    def __post_init__(self) -> None:
        check_choice(self.kind, "classifier", KINDS)
        check_ranges(self)


@dataclass(frozen=True, eq=False)
class Boundary:
    """A fitted boundary: unit normal ``[w_dim]``, offset (``normal·w + offset = 0`` on the hyperplane), accuracies."""

    normal: np.ndarray
    offset: float
    train_accuracy: float
    heldout_accuracy: float | None
    n_train: int
    n_heldout: int
    kind: str

    def to_dict(self) -> dict[str, Any]:
        """The numbers for a report."""
        return {"kind": self.kind, "train_accuracy": round(self.train_accuracy, 4),
                "heldout_accuracy": None if self.heldout_accuracy is None else round(self.heldout_accuracy, 4),
                "n_train": self.n_train, "n_heldout": self.n_heldout, "offset": self.offset}


def split(labels: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train / held-out split (each class keeps at least one training sample)."""
    rng = np.random.RandomState(seed)
    train, held = [], []
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_held = min(int(math.ceil(holdout * len(idx))), len(idx) - 1) if holdout > 0 else 0
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def fit_linear(x: np.ndarray, y: np.ndarray, cfg: BoundaryConfig) -> tuple[np.ndarray, float]:
    """Weights ``[D]`` and bias of a linear classifier of ``y`` (0/1) from ``x`` [N, D] (float64 L-BFGS)."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    mean = xt.mean(dim=0)
    scale = float((xt - mean).square().mean().sqrt()) or 1.0
    xs = (xt - mean) / scale
    target = torch.from_numpy(np.asarray(y, dtype=np.float64)) * 2 - 1  # ±1
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=cfg.steps, line_search_fn="strong_wolfe", tolerance_grad=1e-10)

    def loss() -> torch.Tensor:
        opt.zero_grad()
        margin = target * (xs @ w + b)
        data = torch.nn.functional.softplus(-margin) if cfg.kind == "logistic" else torch.relu(1 - margin).square()
        value = data.mean() + 0.5 * cfg.l2 * w.square().sum()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(loss)
    weights = w.detach() / scale
    bias = float(b.detach() - (mean * weights).sum())
    return weights.numpy(), bias


def accuracy(x: np.ndarray, y: np.ndarray, weights: np.ndarray, bias: float) -> float:
    """Share of samples on the side of the hyperplane their label says."""
    return float(((x @ weights + bias > 0) == (y == 1)).mean())


def fit_boundary(w: np.ndarray, labels: np.ndarray, cfg: BoundaryConfig = BoundaryConfig()) -> Boundary:
    """The boundary between the W codes ``w`` [N, D] labelled 0 and 1, with its held-out accuracy.

    The normal is that of the classifier fitted on the training share (the one the held-out
    accuracy measures), scaled to unit length and pointing towards label 1.
    """
    w = np.asarray(w, dtype=np.float64)
    labels = np.asarray(labels)
    if w.ndim != 2 or labels.shape != (w.shape[0],):
        raise InsetganError(f"need W codes [N, D] and N labels, got {list(w.shape)} and {list(labels.shape)}")
    counts = [int((labels == c).sum()) for c in (0, 1)]
    if min(counts) < MIN_PER_CLASS or counts[0] + counts[1] != len(labels):
        raise InsetganError(f"need labels 0 and 1, at least {MIN_PER_CLASS} of each; got {counts[0]} zeros and "
                            f"{counts[1]} ones of {len(labels)} labels")
    train, held = split(labels, cfg.holdout, cfg.seed)
    weights, bias = fit_linear(w[train], labels[train], cfg)
    norm = float(np.linalg.norm(weights))
    if not math.isfinite(norm) or norm == 0:
        raise InsetganError("the classifier found no boundary (all weights zero): are the labels informative?")
    held_acc = accuracy(w[held], labels[held], weights, bias) if len(held) else None
    return Boundary(weights / norm, bias / norm, accuracy(w[train], labels[train], weights, bias), held_acc,
                    len(train), len(held), cfg.kind)


def extremes(scores: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the lowest and highest ``ratio`` share of ``scores`` (InterFaceGAN's choice of clear samples)."""
    Range(0.0, 0.5, lo_open=True).check(ratio, "ratio")
    order = np.argsort(scores, kind="stable")
    n = max(1, int(round(ratio * len(scores))))
    return order[:n], order[-n:]
