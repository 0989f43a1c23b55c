"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for GAN training on small datasets.

Colour (brightness, saturation, contrast), translation (up to 1/8 of the image, zero fill) and
cutout (a zeroed rectangle of half the image size). The same operations are applied to real and
generated images before the discriminator and are differentiable in the image, so the generator
learns through them. Parameters are drawn per sample from a given ``torch.Generator`` so that a
run is reproducible and a data-parallel run can draw a global batch and take its own slice.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from insetgan.errors import InsetganError

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str) -> tuple[str, ...]:
    """``'color,translation,cutout'`` → a tuple of known policies (empty string: none)."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip()) if text else ()
    unknown = [p for p in parts if p not in POLICIES]
    if unknown:
        raise InsetganError(f"unknown augmentation {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    return parts


def draw_params(gen: torch.Generator, batch: int) -> torch.Tensor:
    """Per-sample random numbers [batch, 7] in [0, 1) for :func:`augment` (one row per image)."""
    return torch.rand(batch, 7, generator=gen)


def augment(x: torch.Tensor, params: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Apply the ``policy`` to images ``x`` [B, C, H, W] in [-1, 1] with per-sample ``params`` [B, 7]."""
    if not policy:
        return x
    p = params.to(x.device, x.dtype)
    B, C, H, W = x.shape
    if "color" in policy:
        x = x + (p[:, 0] - 0.5).view(B, 1, 1, 1)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (p[:, 1] * 2).view(B, 1, 1, 1) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (p[:, 2] + 0.5).view(B, 1, 1, 1) + mean
    if "translation" in policy:
        sy, sx = int(H * 0.125 + 0.5), int(W * 0.125 + 0.5)
        ty = (p[:, 3] * (2 * sy + 1)).floor().long() - sy
        tx = (p[:, 4] * (2 * sx + 1)).floor().long() - sx
        rows = (torch.arange(H, device=x.device).view(1, H) - ty.view(B, 1) + 1).clamp(0, H + 1)
        cols = (torch.arange(W, device=x.device).view(1, W) - tx.view(B, 1) + 1).clamp(0, W + 1)
        padded = F.pad(x, [1, 1, 1, 1])
        idx_r = rows.view(B, 1, H, 1).expand(B, C, H, W + 2)
        x = padded.gather(2, idx_r)
        x = x.gather(3, cols.view(B, 1, 1, W).expand(B, C, H, W))
    if "cutout" in policy:
        ch, cw = int(H * 0.5 + 0.5), int(W * 0.5 + 0.5)
        cy = (p[:, 5] * (H + 1 - ch % 2)).floor().long()
        cx = (p[:, 6] * (W + 1 - cw % 2)).floor().long()
        dy = torch.arange(H, device=x.device).view(1, H, 1) - cy.view(B, 1, 1) + ch // 2
        dx = torch.arange(W, device=x.device).view(1, 1, W) - cx.view(B, 1, 1) + cw // 2
        inside = (dy >= 0) & (dy < ch) & (dx >= 0) & (dx < cw)
        x = x * (~inside).unsqueeze(1).to(x.dtype)
    return x
