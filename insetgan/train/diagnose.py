"""Numbers that show a collapsing GAN run before the sample grids do.

A generator that collapses to one layout keeps varying in colour but its coarse layers stop
following the latent: the styles of those layers vary less and less across samples relative to
their mean (:func:`style_spread`). The discriminator's minibatch-std statistic, its only view of
diversity, can stay as high on such samples as on real images (:func:`minibatch_std_stats`).
``scripts/diagnose_run.py`` prints both for the snapshots of a run.
"""
from __future__ import annotations

import torch

from insetgan.errors import InsetganError
from insetgan.networks.discriminator import ConvDiscriminator, Discriminator
from insetgan.networks.generator import Generator


@torch.no_grad()
def style_spread(G: Generator, n: int = 256, seed: int = 0) -> dict[str, float]:
    """Per layer: the styles' standard deviation across ``n`` latents over their mean magnitude.

    Keys are the synthesis layer names (``b4.conv1``, ``b8.conv0``, ..., ``b64.torgb``) plus
    ``w`` for the mapping output itself. 0 means the layer ignores the latent.
    """
    if n < 2:
        raise InsetganError(f"style_spread needs at least 2 samples, got {n}")
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    w = G.mapping(z.to(G.w_avg.device), None)[:, 0]
    out = {"w": float(w.std(0).mean() / w.mean(0).abs().mean().clamp_min(1e-12))}
    for name, layer in G.synthesis.named_modules():
        affine = getattr(layer, "affine", None)
        if affine is not None:
            s = affine(w)
            out[name] = float(s.std(0).mean() / s.mean(0).abs().mean().clamp_min(1e-12))
    return out


@torch.no_grad()
def minibatch_std_stats(D: Discriminator | ConvDiscriminator, images: torch.Tensor) -> tuple[float, float]:
    """The discriminator's minibatch-std statistic and mean logit on ``images`` [N, C, H, W] in [-1, 1]."""
    seen: list[torch.Tensor] = []
    handle = D.b4.conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, -D.cfg.mbstd_channels:]))
    try:
        logits = D(images)
    finally:
        handle.remove()
    return float(seen[0].mean()), float(logits.mean())
