"""Where a job's start latents and images come from: seeds, latent files, inverted photos, image files."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from insetgan.errors import InsetganError
from insetgan.images import open_rgb
from insetgan.latents import read_latent
from insetgan.networks.generator import Generator
from insetgan.sampling import z_from_seed


@dataclass(frozen=True)
class LatentSource:
    """Where start latents come from: a seed (mapped with truncation) or a latent file (.npy/.npz)."""

    seed: int | None = None
    path: str | None = None
    key: str = "canvas"
    ws: torch.Tensor | None = None
    label: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able form for the report."""
        if self.ws is not None:
            return {"inverted": self.label}
        return {"seed": self.seed} if self.path is None else {"latent": self.path, "key": self.key}


def latent_source(seed: int | None, latent: str | None, key: str, default_seed: int | None = 0
                  ) -> LatentSource | None:
    """The source of a seed option and a latent-file option (at most one given); None when neither is and
    there is no default seed."""
    if latent is not None:
        return LatentSource(path=latent, key=key)
    if seed is None and default_seed is None:
        return None
    return LatentSource(seed=default_seed if seed is None else seed, key=key)


def load_latent(path: str, G: Generator, key: str) -> torch.Tensor:
    """W+ [1|B, num_ws, w_dim] from a .npy (w [D], [1, D], W+ [L, D], [B, L, D]) or a .npz (array ``key``, or
    its only array)."""
    return torch.from_numpy(read_latent(path, G.num_ws, G.w_dim, key))


def start_latents(G: Generator, source: LatentSource, trunc: float, device: torch.device) -> torch.Tensor:
    """Start W+ [1|B, L, D] for ``source`` on ``device``."""
    if source.ws is not None:
        return source.ws.to(device)
    if source.path is not None:
        return load_latent(source.path, G, source.key).to(device)
    with torch.no_grad():
        z = z_from_seed(int(source.seed or 0), G.z_dim).to(device)
        return G.mapping(z, None, truncation_psi=trunc)


def batch_of(ws: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    """``ws`` for ``batch`` candidates: as it is, or one latent repeated; an error for any other count."""
    if ws.shape[0] == batch:
        return ws
    if ws.shape[0] == 1:
        return ws.expand(batch, -1, -1).contiguous()
    raise InsetganError(f"{what} latents hold {ws.shape[0]} candidates but {batch} are needed")


def load_image(path: str, device: torch.device) -> torch.Tensor:
    """An image file as [1, 3, H, W] in [-1, 1] (EXIF orientation applied; gray/RGBA converted to RGB).

    The scaling ``(u − 127.5) / 127.5`` round-trips exactly through :func:`insetgan.io.to_uint8`.
    """
    arr = np.asarray(open_rgb(path), dtype=np.float32)
    if min(arr.shape[:2]) < 16:
        raise InsetganError(f"image {path} is too small ({arr.shape[1]}x{arr.shape[0]})")
    return ((torch.from_numpy(arr).permute(2, 0, 1)[None] - 127.5) / 127.5).to(device)
