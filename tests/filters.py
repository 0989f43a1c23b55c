"""Random FIR filters for the filtered_lrelu tests (reference and compiled kernels)."""
from __future__ import annotations

import torch


def random_filter(kind: str, taps: int, gen: torch.Generator, dtype: torch.dtype = torch.float32
                  ) -> torch.Tensor | None:
    """None, a 1-D (separable) filter, a square 2-D one, a radial-like 2-D one or an anisotropic 2-D one (sum 1)."""
    if kind == "none":
        return None
    if kind == "sep":
        f = torch.rand([taps], generator=gen, dtype=torch.float64) + 0.1
    elif kind == "2d":
        f = torch.rand([taps, taps], generator=gen, dtype=torch.float64) + 0.1
    elif kind == "radial":  # symmetric and not of rank 1, like StyleGAN3-R's down filters
        r = torch.linspace(-1, 1, taps, dtype=torch.float64)
        f = torch.cos(1.3 * torch.sqrt(r[:, None] ** 2 + r[None, :] ** 2)) + 0.3
    else:  # "aniso": a 2-D filter with different heights and widths
        f = torch.rand([taps, taps + 2], generator=gen, dtype=torch.float64) - 0.2
    return (f / f.sum()).to(dtype)
