"""Sampling images from a generator with the official seed convention."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from insetgan.errors import InsetganError
from insetgan.limits import Range
from insetgan.networks.generator import NOISE_MODES
from insetgan.networks.stylegan3 import AnyGenerator, is_stylegan3

# Truncation ψ: 1 samples freely, 0 gives the average, negative values the opposite side of it; beyond
# ±10 the latents leave the range the synthesis network was trained on by orders of magnitude.
PSI_RANGE = Range(-10.0, 10.0)
TRANSLATE_RANGE = Range(-10.0, 10.0)  # StyleGAN3 input translation, in units of the image size
ROTATE_RANGE = Range(-360.0, 360.0)  # degrees


@dataclass(frozen=True)
class SampleConfig:
    """How to sample: truncation, noise, class and (StyleGAN3 only) the input transform.

    ``translate`` / ``rotate`` (degrees) replace a StyleGAN3 network's stored transform while
    sampling (as the official gen_images.py sets it); None keeps the stored one.
    """

    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    noise_mode: str = "const"
    class_idx: int | None = None
    translate: tuple[float, float] | None = None
    rotate: float | None = None

    @property
    def sets_transform(self) -> bool:
        """True when ``translate`` or ``rotate`` was given."""
        return self.translate is not None or self.rotate is not None

    def validate(self, G: AnyGenerator) -> None:
        """Raise ``InsetganError`` when the settings do not fit ``G``."""
        if self.noise_mode not in NOISE_MODES:
            raise InsetganError(f"unknown noise mode {self.noise_mode!r}; choose from {', '.join(NOISE_MODES)}")
        if self.truncation_cutoff is not None and not 0 <= self.truncation_cutoff <= G.num_ws:
            raise InsetganError(f"truncation cutoff must be in [0, {G.num_ws}], got {self.truncation_cutoff}")
        if G.c_dim == 0 and self.class_idx is not None:
            raise InsetganError("--class was given but the network is unconditional")
        if G.c_dim > 0:
            if self.class_idx is None:
                raise InsetganError(f"the network is conditional: give --class in [0, {G.c_dim - 1}]")
            if not 0 <= self.class_idx < G.c_dim:
                raise InsetganError(f"class {self.class_idx} is out of range [0, {G.c_dim - 1}]")
        if self.sets_transform and not is_stylegan3(G):
            raise InsetganError("--translate/--rotate set the input transform of a StyleGAN3 network; "
                                "this network is StyleGAN2, which has none")
        PSI_RANGE.check(self.truncation_psi, "truncation psi")
        for v in self.translate or ():
            TRANSLATE_RANGE.check(v, "translate")
        if self.rotate is not None:
            ROTATE_RANGE.check(self.rotate, "rotate")


@contextlib.contextmanager
def input_transform(G: AnyGenerator, cfg: SampleConfig) -> Iterator[None]:
    """While the block runs, ``G`` uses the transform of ``cfg`` (nothing changes when it sets none)."""
    if not cfg.sets_transform:
        yield
        return
    buf = G.synthesis.input.transform
    saved = buf.clone()
    G.set_transform(cfg.translate or (0.0, 0.0), cfg.rotate or 0.0)
    try:
        yield
    finally:
        buf.copy_(saved)


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """The official latent for ``seed``: ``np.random.RandomState(seed).randn(1, z_dim)`` as float32."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim).astype(np.float32))


def class_vector(G: AnyGenerator, class_idx: int | None, device: torch.device) -> torch.Tensor | None:
    """One-hot class labels [1, c_dim] (None for unconditional networks)."""
    if G.c_dim == 0:
        return None
    c = torch.zeros([1, G.c_dim], device=device)
    c[0, class_idx] = 1
    return c


@torch.no_grad()
def sample_seeds(G: AnyGenerator, seeds: list[int], cfg: SampleConfig) -> tuple[list[torch.Tensor], list[float]]:
    """Generate one image [C, H, W] per seed (batch 1 each, as the references do) and per-seed seconds.

    ``G`` is left as it was (a transform set by ``cfg`` is undone afterwards).
    """
    cfg.validate(G)
    device = next(G.parameters()).device
    c = class_vector(G, cfg.class_idx, device)
    images, seconds = [], []
    with input_transform(G, cfg):
        for seed in seeds:
            t0 = time.perf_counter()
            z = z_from_seed(seed, G.z_dim).to(device)
            img = G(z, c, truncation_psi=cfg.truncation_psi, truncation_cutoff=cfg.truncation_cutoff,
                    noise_mode=cfg.noise_mode)
            images.append(img[0].float().cpu())
            seconds.append(time.perf_counter() - t0)
    return images, seconds
