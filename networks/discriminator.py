"""Discriminators for training, square or 2:1 portrait: StyleGAN2's, a plain strided one and a projected one.

:class:`Discriminator` (``architecture="resnet"``) is the official stylegan2-ada-pytorch one: layer
layout and names ``b{res}.fromrgb``, ``conv0``, ``conv1``, ``skip``; ``b4.conv``, ``b4.fc``,
``b4.out``, with equalised learning rates, [1, 3, 3, 1] resampling filters and an optional
activation clamp; blocks at the top ``num_fp16_res`` resolutions run in float16 on CUDA.

:class:`ConvDiscriminator` (``architecture="conv"``) keeps the widths, the minibatch-std
statistic and the ``b4`` epilogue but each block is one plain 3×3 stride-2 convolution with
PyTorch's default initialisation (no equalised lr, no resampling filter). At the small widths of
the built-in models it tells generated from real images far sooner than the residual one and
runs several times faster on a CPU, but it does so by the exact pixel grid, which a generator
trained against it for long learns to exploit (MODEL_CARD.md).

:class:`~insetgan.networks.projected.ProjectedDiscriminator` (``architecture="projected"``) looks
at the image through a frozen ImageNet-pretrained network; it returns one logit per position of
several scales and trains with the hinge loss and no R1 (:data:`HINGE_ARCHITECTURES`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from insetgan.errors import InsetganError
from insetgan.networks.layers import FullyConnectedLayer, float_dtype
from insetgan.networks.projected import ProjectedDiscriminator
from insetgan.torch_utils.ops import bias_act, conv2d_resample, upfirdn2d

ARCHITECTURES = ("resnet", "conv", "projected")
HINGE_ARCHITECTURES = ("projected",)  # trained with the hinge loss and no R1 (the others: logistic loss + R1)


def check_architecture(name: str) -> None:
    """Raise a one-line error unless ``name`` is one of :data:`ARCHITECTURES`."""
    if name not in ARCHITECTURES:
        raise InsetganError(f"unknown discriminator architecture {name!r} (one of {', '.join(ARCHITECTURES)})")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Everything needed to build a :class:`Discriminator`."""

    img_resolution: int = 256
    img_channels: int = 3
    square: bool = True
    channel_base: int = 32768
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_channels: int = 1
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    architecture: str = "resnet"  # "resnet" (StyleGAN2's), "conv" (plain strided) or "projected"
    feature_res: int | None = None  # projected: the feature network's input, long side (None: the image's)
    head_width: float = 0.5  # projected: width multiplier of the fixed projections and the scale discriminators
    proj_seed: int = 0  # projected: seed of the fixed random projections

    def __post_init__(self) -> None:
        res = self.img_resolution
        if res < 8 or res & (res - 1):
            raise InsetganError(f"discriminator resolution must be a power of two >= 8, got {res}")
        check_architecture(self.architecture)
        fr = self.feature_res
        if fr is not None and (not isinstance(fr, int) or fr < 64 or fr > 1024 or fr & (fr - 1)):
            raise InsetganError(f"the feature network's input must be a power of two in [64, 1024], got {fr}")
        if not 0.0625 <= self.head_width <= 4:
            raise InsetganError(f"the projected discriminator's head width must be in [1/16, 4], got {self.head_width}")

    def channels(self, res: int) -> int:
        """Feature channels at resolution ``res``."""
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict:
        """JSON-able form."""
        return asdict(self)


class DiscConv(nn.Module):
    """Equalised-lr convolution with optional 2× downsampling, bias, activation and clamp."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True, activation: str = "linear",
                 down: int = 1, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.activation, self.down, self.conv_clamp, self.padding = activation, down, conv_clamp, kernel // 2
        self.register_buffer("resample_filter", upfirdn2d.setup_filter([1, 3, 3, 1]))
        self.weight = nn.Parameter(torch.randn([cout, cin, kernel, kernel]))
        self.bias = nn.Parameter(torch.zeros([cout])) if bias else None
        self.weight_gain = 1 / math.sqrt(cin * kernel * kernel)
        self.act_gain = bias_act.activation_spec(activation).def_gain

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """Convolve (and downsample) ``x``; ``gain`` scales the output (and the clamp)."""
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample.conv2d_resample(x, w, f=self.resample_filter, down=self.down, padding=self.padding)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class DiscBlock(nn.Module):
    """One residual block: (fromRGB at the top) conv0, strided conv1, 1×1 strided skip."""

    def __init__(self, cfg: DiscriminatorConfig, res: int, top: bool, use_fp16: bool) -> None:
        super().__init__()
        tmp, out = cfg.channels(res), cfg.channels(res // 2)
        self.use_fp16 = use_fp16
        clamp = cfg.conv_clamp
        if top:
            self.fromrgb = DiscConv(cfg.img_channels, tmp, 1, activation="lrelu", conv_clamp=clamp)
        self.conv0 = DiscConv(tmp, tmp, 3, activation="lrelu", conv_clamp=clamp)
        self.conv1 = DiscConv(tmp, out, 3, activation="lrelu", down=2, conv_clamp=clamp)
        self.skip = DiscConv(tmp, out, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None) -> torch.Tensor:
        """Features in, features at half the resolution out (the top block reads the image)."""
        dtype = torch.float16 if self.use_fp16 and (x if x is not None else img).device.type == "cuda" \
            else float_dtype(self)
        if x is None:
            x = self.fromrgb(img.to(dtype))
        x = x.to(dtype)
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=np.sqrt(0.5))
        return y.add_(x)


def minibatch_std(x: torch.Tensor, group: int, channels: int) -> torch.Tensor:
    """Append the standard deviation over groups of samples as ``channels`` extra feature maps."""
    N, C, H, W = x.shape
    G = max(g for g in range(1, min(group, N) + 1) if N % g == 0)
    y = x.reshape(G, -1, channels, C // channels, H, W).to(torch.promote_types(x.dtype, torch.float32))
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()
    y = y.mean(dim=(2, 3, 4)).reshape(-1, channels, 1, 1).repeat(G, 1, H, W)
    return torch.cat([x, y.to(x.dtype)], dim=1)


def _check_input(cfg: DiscriminatorConfig, img: torch.Tensor) -> None:
    want = (cfg.img_channels, cfg.img_resolution, cfg.img_resolution if cfg.square else cfg.img_resolution // 2)
    if img.ndim != 4 or tuple(img.shape[1:]) != want:
        raise InsetganError(f"the discriminator takes [N, {want[0]}, {want[1]}, {want[2]}] images, "
                            f"got {list(img.shape)}")


class Discriminator(nn.Module):
    """StyleGAN2's residual discriminator: image [N, C, H, W] in [-1, 1] → realness logit [N, 1]."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        log2 = int(math.log2(cfg.img_resolution))
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        fp16_res = max(2 ** (log2 + 1 - cfg.num_fp16_res), 8) if cfg.num_fp16_res else None
        for res in self.block_resolutions:
            setattr(self, f"b{res}", DiscBlock(cfg, res, res == cfg.img_resolution,
                                               fp16_res is not None and res >= fp16_res))
        c4 = cfg.channels(4)
        width4 = 4 if cfg.square else 2
        self.b4 = nn.Module()
        self.b4.conv = DiscConv(c4 + cfg.mbstd_channels, c4, 3, activation="lrelu", conv_clamp=cfg.conv_clamp)
        self.b4.fc = FullyConnectedLayer(c4 * 4 * width4, c4, activation="lrelu")
        self.b4.out = FullyConnectedLayer(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Realness logits [N, 1] (float32; float64 for a ``.double()`` discriminator, as gradient checks need)."""
        _check_input(self.cfg, img)
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        x = minibatch_std(x.to(float_dtype(self)), self.cfg.mbstd_group, self.cfg.mbstd_channels)
        x = self.b4.conv(x)
        x = self.b4.fc(x.flatten(1))
        return self.b4.out(x)


class ConvDiscriminator(nn.Module):
    """Plain strided discriminator: image [N, C, H, W] in [-1, 1] → realness logit [N, 1].

    Block ``b{res}`` is a 3×3 convolution with stride 2 from ``res`` to ``res // 2`` (LeakyReLU
    0.2) with ``cfg.channels(res // 2)`` outputs; then the minibatch-std statistic and the
    ``b4`` epilogue (3×3 convolution, fully connected, logit), all ``nn.Conv2d``/``nn.Linear``.
    """

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        log2 = int(math.log2(cfg.img_resolution))
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        cin = cfg.img_channels
        for res in self.block_resolutions:
            cout = cfg.channels(res // 2)
            setattr(self, f"b{res}", nn.Conv2d(cin, cout, 3, stride=2, padding=1))
            cin = cout
        width4 = 4 if cfg.square else 2
        self.b4 = nn.Module()
        self.b4.conv = nn.Conv2d(cin + cfg.mbstd_channels, cin, 3, padding=1)
        self.b4.fc = nn.Linear(cin * 4 * width4, cin)
        self.b4.out = nn.Linear(cin, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Realness logits [N, 1] in the network's dtype (float32, or float64 for gradient checks)."""
        _check_input(self.cfg, img)
        x = img.to(float_dtype(self))
        for res in self.block_resolutions:
            x = F.leaky_relu(getattr(self, f"b{res}")(x), 0.2)
        x = minibatch_std(x, self.cfg.mbstd_group, self.cfg.mbstd_channels)
        x = F.leaky_relu(self.b4.conv(x), 0.2)
        x = F.leaky_relu(self.b4.fc(x.flatten(1)), 0.2)
        return self.b4.out(x)


def build_discriminator(cfg: DiscriminatorConfig) -> Discriminator | ConvDiscriminator | ProjectedDiscriminator:
    """The discriminator of ``cfg.architecture``."""
    if cfg.architecture == "projected":
        return ProjectedDiscriminator(cfg)
    return ConvDiscriminator(cfg) if cfg.architecture == "conv" else Discriminator(cfg)
