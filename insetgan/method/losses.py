"""InsetGAN loss terms, each a small function returning one value per candidate ([B]).

All images are [B, C, H, W] in [-1, 1]. Every term is a per-candidate mean, so a batch of B
independent candidates can be optimised by summing the terms over the batch: each candidate's
latents receive exactly the gradient they would get alone.

The perceptual term is any callable ``(a, b) -> [B]``: LPIPS or its fallback from
:mod:`insetgan.inversion.perceptual`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F

from insetgan.errors import InsetganError
from insetgan.limits import Range

MAX_WEIGHT = 1e6  # the largest loss weight a config may set (the paper preset uses 20000)
WEIGHT_RANGE = Range(0.0, MAX_WEIGHT)

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

def _per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(1)


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per candidate, [B]."""
    return _per_sample_mean((a - b).abs())


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference per candidate, [B]."""
    return _per_sample_mean((a - b).square())


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` [B, C, H, W] over the pixels where ``mask`` [B or 1, 1, H, W] is set, per candidate."""
    mask = mask.to(x).expand(x.shape[0], 1, *x.shape[-2:])
    return (x * mask).flatten(1).sum(1) / (mask.flatten(1).sum(1) * x.shape[1]).clamp_min(1e-8)


def resize(img: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize (area-like when shrinking), differentiable."""
    size = (size, size) if isinstance(size, int) else size
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)


def border_mask(height: int, width: int, strip: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[1, 1, H, W] mask of the outer strip of ``strip`` pixels of an inset frame."""
    if strip <= 0 or 2 * strip >= min(height, width):
        raise InsetganError(f"border strip {strip} px does not fit a {height}x{width} inset")
    m = torch.ones(1, 1, height, width, device=device)
    m[..., strip:height - strip, strip:width - strip] = 0
    return m


@dataclass(frozen=True)
class LossWeights:
    """Weights of the InsetGAN terms for the phases that optimise one role (canvas or inset).

    The weights apply to the latents of each generator: ``reg_mean`` to the RMS distance
    ‖w − w_avg‖/√D and ``reg_delta`` to Σ_layers mean(δ²).
    """

    coarse_l1: float = 1.0
    coarse_perceptual: float = 0.1
    border: float = 10.0
    border_perceptual: float = 0.0
    body_l1: float = 0.0
    body_perceptual: float = 0.0
    face_l1: float = 0.0
    face_perceptual: float = 0.0
    face_identity: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            WEIGHT_RANGE.check(getattr(self, f.name), f"loss weight {f.name}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def coarse_loss(crop: torch.Tensor, inset: torch.Tensor, perceptual: Perceptual | None, size: int = 64
                ) -> dict[str, torch.Tensor]:
    """L_coarse parts: L1 and perceptual between the canvas crop and the inset, both at ``size``×``size``."""
    a, b = resize(crop, size), resize(inset, size)
    out = {"coarse_l1": l1(a, b)}
    if perceptual is not None:
        out["coarse_perceptual"] = perceptual(a, b)
    return out


def border_loss(crop: torch.Tensor, inset: torch.Tensor, strip: int, metric: str = "l1",
                perceptual: Perceptual | None = None) -> dict[str, torch.Tensor]:
    """L_border parts on the outer strip of ``strip`` px (at inset resolution) of crop vs inset."""
    mask = border_mask(inset.shape[-2], inset.shape[-1], strip, inset.device)
    diff = crop - inset
    err = diff.abs() if metric == "l1" else diff.square()
    out = {"border": masked_mean(err, mask)}
    if perceptual is not None:
        out["border_perceptual"] = perceptual(crop * mask, inset * mask)
    return out


def reg_loss(w: torch.Tensor, delta: torch.Tensor, w_avg: torch.Tensor) -> dict[str, torch.Tensor]:
    """L_reg parts for W+ = w + δ: RMS distance of w [B, 1, D] from w_avg, and Σ_layers mean(δ²) of δ [B, L, D]."""
    dim = w.shape[-1]
    mean = (w - w_avg.reshape(1, 1, dim)).flatten(1).norm(dim=1) / dim ** 0.5
    return {"reg_mean": mean, "reg_delta": delta.square().mean(-1).sum(-1)}


def region_loss(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor, perceptual: Perceptual | None,
                prefix: str) -> dict[str, torch.Tensor]:
    """L_body / L_face parts: masked L1 and perceptual of ``img`` vs ``ref`` where ``mask`` is set."""
    out = {f"{prefix}_l1": masked_mean((img - ref).abs(), mask)}
    if perceptual is not None:
        m = mask.to(img)
        out[f"{prefix}_perceptual"] = perceptual(img * m, ref * m)
    return out


def weighted_total(parts: dict[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    """Σ weight·part per candidate, [B]; parts without a weight (e.g. the regulariser) are weighted by the caller.

    A part named ``role:term`` (or ``term``) takes the weight of the :class:`LossWeights` field
    ``term``; the table is read off the dataclass, so a new weight field needs no second list.
    """
    table = {f.name: getattr(weights, f.name) for f in fields(weights)}
    total = None
    for name, value in parts.items():
        key = name.split(":", 1)[-1]
        if key in table and table[key]:
            term = table[key] * value
            total = term if total is None else total + term
    if total is None:
        raise InsetganError("every loss weight is zero: nothing to optimise")
    return total
