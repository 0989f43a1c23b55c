"""Image metrics reported by every InsetGAN run."""
from __future__ import annotations

import torch

from insetgan.errors import InsetganError
from insetgan.method.regions import Box


def seam_score(img: torch.Tensor, box: Box, band: int = 4) -> float:
    """Visibility of the box boundary in ``img`` [N, C, H, W] (axis-aligned box).

    The mean absolute image gradient across the boundary (between the last pixel inside and
    the first outside, normal to each edge) divided by the mean gradient of the same
    direction in a band of ``band`` pixels on both sides. 1.0 means the boundary is no
    sharper than its surroundings, i.e. no visible seam; a hard paste of unrelated content
    scores well above 1.
    """
    H, W = img.shape[-2:]
    x0, y0 = int(round(box.x)), int(round(box.y))
    x1, y1 = int(round(box.x + box.w)), int(round(box.y + box.h))
    x0, y0, x1, y1 = max(x0, 1), max(y0, 1), min(x1, W - 1), min(y1, H - 1)
    if x1 - x0 < 2 * band or y1 - y0 < 2 * band:
        raise InsetganError(f"box {box} is too small or too close to the image border for a seam score")
    img = img.to(torch.float64)
    gx = (img[..., :, 1:] - img[..., :, :-1]).abs().mean(dim=1)  # [N, H, W-1]: between columns j and j+1
    gy = (img[..., 1:, :] - img[..., :-1, :]).abs().mean(dim=1)  # [N, H-1, W]
    seam, ref = [], []
    rows, cols = slice(y0, y1), slice(x0, x1)
    for edge in (x0 - 1, x1 - 1):  # vertical edges: gradient between column edge and edge+1
        seam.append(gx[:, rows, edge])
        lo, hi = max(edge - band, 0), min(edge + band + 1, W - 1)
        ref.append(torch.cat([gx[:, rows, lo:edge], gx[:, rows, edge + 1:hi]], dim=-1).flatten(1))
    for edge in (y0 - 1, y1 - 1):  # horizontal edges
        seam.append(gy[:, edge, cols])
        lo, hi = max(edge - band, 0), min(edge + band + 1, H - 1)
        ref.append(torch.cat([gy[:, lo:edge, cols], gy[:, edge + 1:hi, cols]], dim=-2).flatten(1))
    s = torch.cat([t.flatten(1) for t in seam], 1).mean()
    r = torch.cat(ref, 1).mean()
    return float(s / r.clamp_min(1e-12))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Mean structural similarity (SSIM) per image of ``a`` and ``b`` [B, C, H, W] → [B].

    Wang et al. (2004): an 11×11 Gaussian window (σ = 1.5) applied per channel as a *valid*
    convolution (no padding, so no border artefacts; both sides must be at least 11 pixels),
    C1 = (0.01·L)², C2 = (0.03·L)² with ``data_range`` L = 2 for images in [-1, 1]. The SSIM
    map is averaged over channels and positions. 1 for identical images; differentiable.
    """
    if a.shape != b.shape or a.ndim != 4:
        raise InsetganError(f"ssim needs two [B, C, H, W] tensors of one shape, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[-2:]) < 11:
        raise InsetganError(f"ssim needs images of at least 11×11 pixels, got {tuple(a.shape[-2:])}")
    conv = torch.nn.functional.conv2d
    ch = a.shape[1]
    x = torch.arange(11, dtype=a.dtype, device=a.device) - 5
    g = torch.exp(-x * x / (2 * 1.5**2))
    g = g / g.sum()
    gx, gy = g.view(1, 1, 1, 11).repeat(ch, 1, 1, 1), g.view(1, 1, 11, 1).repeat(ch, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return conv(conv(t, gx, groups=ch), gy, groups=ch)  # separable Gaussian window

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3))
