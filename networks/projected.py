"""A projected discriminator (Sauer et al., "Projected GANs Converge Faster", NeurIPS 2021).

The image is resized to the feature network's input size (``feature_res`` on the long side),
passed through the frozen ImageNet-pretrained EfficientNet-Lite0 (features at strides 4, 8, 16
and 32), and projected by fixed random layers: a 1×1 convolution per scale (cross-channel
mixing, CCM) and a top-down path that adds each coarser projection, upsampled and passed through
its own fixed 1×1 convolution, to the next finer one (cross-scale mixing, CSM). Only the small
discriminator of each scale trains: 4×4 stride-2 convolutions with spectral normalisation and
LeakyReLU 0.2 down to a long side of 8, then a 3×3 convolution to one logit per position.

Spectral normalisation divides each weight by its largest singular value, estimated by power
iteration. The iteration steps once per optimiser step (:meth:`ProjectedDiscriminator.power_iteration`,
called by the trainer), not once per forward pass: so the weights a sample sees do not depend on
how a batch is split into chunks or over processes.

The forward pass returns the logits of all positions of all scales, [N, K]; the trainer uses the
hinge loss on them and no R1 penalty (the paper's choices). There is no batch normalisation, so a
sample's logits do not depend on the other samples of its batch and a data-parallel run equals a
single-process one. The feature network's weights are non-persistent buffers: they are neither
trained nor stored in state dicts (they come from the installed package each time); the fixed
random projections are persistent buffers drawn from ``cfg.proj_seed``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from insetgan.errors import InsetganError
from insetgan.networks.efficientnet_lite import FEATURE_CHANNELS, EfficientNetLite0, load_efficientnet_lite0

if TYPE_CHECKING:
    from insetgan.networks.discriminator import DiscriminatorConfig

PROJ_CHANNELS = (64, 128, 256, 512)  # the projections' widths per scale, before ``head_width``


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a non-persistent buffer (frozen, moved by ``.to()``, not saved)."""
    for sub in module.modules():
        for name, p in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, p.detach(), persistent=False)
    return module


class SNConv2d(nn.Conv2d):
    """A convolution whose weight is divided by its spectral norm (power-iteration estimate, vector ``u``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=padding)
        self.register_buffer("u", F.normalize(torch.randn(cout), dim=0))
        for _ in range(50):  # start from a converged estimate
            self.power_iteration()

    @torch.no_grad()
    def power_iteration(self) -> None:
        """One step of the power iteration on the current weight (updates ``u``)."""
        w = self.weight.flatten(1)
        v = F.normalize(w.t() @ self.u, dim=0)
        self.u.copy_(F.normalize(w @ v, dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve with ``weight / σ``, σ = uᵀ W v (u and v held fixed, the gradient flows through W)."""
        w = self.weight.flatten(1)
        v = F.normalize(w.t() @ self.u, dim=0).detach()
        sigma = self.u @ (w @ v)
        return F.conv2d(x, self.weight / sigma, self.bias, self.stride, self.padding)


def head_channels(size: int, width: float) -> int:
    """Channels of a scale discriminator's layer at a long side of ``size`` pixels."""
    return max(16, int(width * min(4096 // size, 512)))


class ScaleDiscriminator(nn.Module):
    """The trained discriminator of one scale: projected features [N, C, h, w] → logits [N, h'·w']."""

    def __init__(self, cin: int, size: int, width: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [SNConv2d(cin, head_channels(size, width), 3, padding=1), nn.LeakyReLU(0.2)]
        while size > 8:
            layers += [SNConv2d(head_channels(size, width), head_channels(size // 2, width), 4, stride=2, padding=1),
                       nn.LeakyReLU(0.2)]
            size //= 2
        layers.append(SNConv2d(head_channels(size, width), 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One logit per position of the last map, flattened."""
        return self.net(x).flatten(1)


class ProjectedDiscriminator(nn.Module):
    """Image [N, C, H, W] in [-1, 1] → logits [N, K] through frozen pretrained features (see the module doc)."""

    def __init__(self, cfg: DiscriminatorConfig, features: EfficientNetLite0 | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        H = cfg.img_resolution
        W = H if cfg.square else H // 2
        long_side = cfg.feature_res or max(H, 64)  # 64: the coarsest features (stride 32) keep a pixel
        self.feature_size = (long_side, long_side if cfg.square else long_side // 2)
        self.features = freeze_as_buffers(features if features is not None else load_efficientnet_lite0())
        gen = torch.Generator().manual_seed(cfg.proj_seed)
        widths = [max(8, int(c * cfg.head_width)) for c in PROJ_CHANNELS]
        for i, (cin, cout) in enumerate(zip(FEATURE_CHANNELS, widths)):
            self.register_buffer(f"ccm{i}", _random_1x1(cin, cout, gen))
            if i < len(widths) - 1:
                self.register_buffer(f"csm{i}", _random_1x1(widths[i + 1], cout, gen))
        sizes = [self.feature_size[0] // s for s in (4, 8, 16, 32)]
        self.heads = nn.ModuleList(ScaleDiscriminator(c, max(s, 1), cfg.head_width) for c, s in zip(widths, sizes))
        self.img_shape = (cfg.img_channels, H, W)

    def project(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The fixed random projections (CCM, then CSM top-down) of the image's pretrained features."""
        x = img.to(self.ccm0.dtype)
        if tuple(x.shape[-2:]) != self.feature_size:
            shrink = self.feature_size[0] < x.shape[-2]
            x = F.interpolate(x, size=self.feature_size, mode="area" if shrink else "bilinear",
                              **({} if shrink else {"align_corners": False}))
        feats = self.features.features(x)
        proj = [F.conv2d(f, getattr(self, f"ccm{i}")) for i, f in enumerate(feats)]
        for i in range(len(proj) - 2, -1, -1):
            up = F.interpolate(proj[i + 1], size=proj[i].shape[-2:], mode="bilinear", align_corners=False)
            proj[i] = proj[i] + F.conv2d(up, getattr(self, f"csm{i}"))
        return proj

    def power_iteration(self) -> None:
        """Step every spectral norm estimate once (after each optimiser step)."""
        for m in self.heads.modules():
            if isinstance(m, SNConv2d):
                m.power_iteration()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Logits [N, K] of every position of every scale."""
        if img.ndim != 4 or tuple(img.shape[1:]) != self.img_shape:
            raise InsetganError(f"the discriminator takes [N, {', '.join(map(str, self.img_shape))}] images, "
                                f"got {list(img.shape)}")
        return torch.cat([head(p) for head, p in zip(self.heads, self.project(img))], dim=1)


def _random_1x1(cin: int, cout: int, gen: torch.Generator) -> torch.Tensor:
    """A fixed random 1×1 convolution weight [cout, cin, 1, 1] (Kaiming-uniform scale, as nn.Conv2d draws it)."""
    bound = 1.0 / cin ** 0.5
    return (torch.rand(cout, cin, 1, 1, generator=gen) * 2 - 1) * bound
