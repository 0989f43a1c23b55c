"""SeFa: closed-form factorisation of latent semantics (Shen & Zhou, CVPR 2021).

The affine (style) transforms of the style layers fed by the chosen W+ rows are stacked into one
matrix ``A`` (one row per style channel, each normalised to unit length as the reference
implementation does); the directions ``n`` that change the styles most, ``argmax ‖A n‖`` over
unit ``n``, are the eigenvectors of ``AᵀA`` by decreasing eigenvalue. Moving W along the first of
them changes the image most among all unit directions, as far as the first layer of each
convolution sees it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from insetgan.editing.layers import generator_shape, style_affines
from insetgan.errors import InsetganError
from insetgan.io import encode

PREFIX = "sefa"


@dataclass(frozen=True, eq=False)
class SefaResult:
    """Unit directions ``[K, w_dim]`` sorted by eigenvalue (largest first), the eigenvalues and the layers used."""

    directions: np.ndarray
    eigenvalues: np.ndarray
    rows: tuple[int, int]
    layers: tuple[str, ...]

    def npz_bytes(self) -> bytes:
        """The ``.npz`` file: ``sefa0`` … ``sefa<K-1>`` ([w_dim] each), ``_eigenvalues`` [K], ``_rows`` [2]."""
        arrays = {f"{PREFIX}{k}": d.astype(np.float32) for k, d in enumerate(self.directions)}
        arrays["_eigenvalues"] = self.eigenvalues.astype(np.float64)
        arrays["_rows"] = np.array(self.rows, dtype=np.float64)
        return encode(lambda buf: np.savez(buf, **arrays))


def stacked_weights(G: nn.Module, rows: tuple[int, int] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """The affine weights ``[channels, w_dim]`` of the style layers fed by ``rows`` (all layers when None)."""
    shape = generator_shape(G)
    first, last = rows if rows is not None else (0, shape.num_ws - 1)
    if not 0 <= first <= last < shape.num_ws:
        raise InsetganError(f"rows {first}-{last} are outside this generator's W+ rows 0-{shape.num_ws - 1}")
    chosen = [(layer, affine) for layer, affine in zip(shape.layers, style_affines(G)) if first <= layer.row <= last]
    if not chosen:
        raise InsetganError(f"no style layer is fed by rows {first}-{last} (toRGB layers are not factorised)")
    weights = [affine.weight.detach().to(torch.float64).cpu().numpy() for _, affine in chosen]
    return np.concatenate(weights, axis=0), tuple(layer.name for layer, _ in chosen)


def sefa(G: nn.Module, rows: tuple[int, int] | None = None, num: int = 10) -> SefaResult:
    """The ``num`` strongest SeFa directions of the style layers fed by ``rows`` (inclusive; None: all rows)."""
    A, layers = stacked_weights(G, rows)
    w_dim = A.shape[1]
    if not 1 <= num <= w_dim:
        raise InsetganError(f"--num must be in [1, {w_dim}] (the W width), got {num}")
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    A = A / np.maximum(norms, 1e-12)
    values, vectors = np.linalg.eigh(A.T @ A)
    order = np.argsort(values)[::-1][:num]
    directions = vectors[:, order].T
    # Each eigenvector's sign is arbitrary; make the largest component positive so runs agree.
    signs = np.sign(directions[np.arange(num), np.abs(directions).argmax(axis=1)])
    directions = directions * np.where(signs == 0, 1.0, signs)[:, None]
    all_rows = (0, generator_shape(G).num_ws - 1)
    return SefaResult(directions, values[order], rows if rows is not None else all_rows, layers)


def rayleigh(G: nn.Module, rows: tuple[int, int] | None, directions: np.ndarray) -> np.ndarray:
    """``‖A n‖²`` of each unit direction ``n`` (rows of ``directions``): what SeFa's eigenvalues measure."""
    A, _ = stacked_weights(G, rows)
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
    n = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return np.square(n @ A.T).sum(axis=1)
