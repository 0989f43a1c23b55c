"""Fréchet distances of feature sets: of two Gaussians, of Gaussians fitted to two sets, and after
a projection onto the real set's principal components (the HOG metrics of :mod:`insetgan.eval.model_quality`).
"""
from __future__ import annotations

import numpy as np

from insetgan.errors import InsetganError


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues → 0)."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_gaussians(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein²) distance of N(mu1, cov1) and N(mu2, cov2).

    ``|mu1 − mu2|² + tr(cov1) + tr(cov2) − 2 tr((cov1 cov2)^½)``, with the trace term computed as
    ``tr((S cov2 S)^½)``, ``S = cov1^½``: the same eigenvalues, but of a symmetric PSD matrix, so
    eigen-decompositions give a real, stable result (no complex parts to drop, no ``sqrtm`` needed).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    s1 = _sqrt_psd(cov1)
    mid = s1 @ cov2 @ s1
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((mid + mid.T) / 2), 0.0, None)).sum())
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt), 0.0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets [N, D] and [M, D] (unbiased covariances)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InsetganError(f"expected two feature sets [N, D] of the same D, got {list(a.shape)} and {list(b.shape)}")
    if len(a) < 2 or len(b) < 2:
        raise InsetganError("each feature set needs at least 2 rows")
    return frechet_gaussians(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def pca_frechet(fake: np.ndarray, real: np.ndarray, components: int = 64) -> float:
    """Fréchet distance after projecting both feature sets onto the real set's first principal components."""
    mean = real.mean(0)
    _, _, vt = np.linalg.svd(real - mean, full_matrices=False)
    basis = vt[:min(components, vt.shape[0])].T
    return frechet_distance((fake - mean) @ basis, (real - mean) @ basis)
