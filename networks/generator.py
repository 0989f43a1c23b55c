"""The StyleGAN2 generator (mapping + synthesis) with NVIDIA stylegan2-ada-pytorch key names.

One implementation serves every supported checkpoint flavour; see :mod:`insetgan.networks.config`.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from insetgan.errors import InsetganError
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.layers import FullyConnectedLayer, float_dtype, modulated_conv2d, normalize_2nd_moment
from insetgan.networks.state_dicts import load_checked
from insetgan.torch_utils.ops import bias_act, conv2d_resample, upfirdn2d

NOISE_MODES = ("random", "const", "none")


class MappingNetwork(nn.Module):
    """z (+ class embedding) -> w, broadcast to ``num_ws`` layers, with truncation."""

    def __init__(self, cfg: GeneratorConfig, num_ws: int) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.c_dim, cfg.w_dim, num_ws
        self.w_avg_beta = cfg.w_avg_beta
        embed_features = (cfg.embed_features if cfg.embed_features is not None else cfg.w_dim) if cfg.c_dim else 0
        layer_features = cfg.layer_features if cfg.layer_features is not None else cfg.w_dim
        features = [cfg.z_dim + embed_features] + [layer_features] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        if cfg.c_dim > 0:
            self.embed = FullyConnectedLayer(cfg.c_dim, embed_features)
        for i in range(cfg.mapping_layers):
            layer = FullyConnectedLayer(
                features[i], features[i + 1], activation=cfg.mapping_activation, lr_multiplier=cfg.mapping_lr_multiplier
            )
            setattr(self, f"fc{i}", layer)
        self.num_layers = cfg.mapping_layers
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """Return ws [N, num_ws, w_dim]; truncation lerps towards ``w_avg`` (first ``cutoff`` layers)."""
        parts = []
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise InsetganError(f"z must have shape [N, {self.z_dim}], got {None if z is None else list(z.shape)}")
            parts.append(normalize_2nd_moment(z.to(float_dtype(self))))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise InsetganError(f"c must have shape [N, {self.c_dim}] for this conditional model")
            parts.append(normalize_2nd_moment(self.embed(c.to(float_dtype(self)))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_w_avg and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling) + noise + bias + activation."""

    def __init__(self, cfg: GeneratorConfig, in_channels: int, out_channels: int, resolution: int, up: int = 1) -> None:
        super().__init__()
        self.up, self.resolution, self.activation = up, resolution, cfg.activation
        self.conv_clamp = cfg.conv_clamp
        self.padding = cfg.kernel_size // 2
        self.act_gain = bias_act.activation_spec(cfg.activation).def_gain
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(list(cfg.resample_filter)))
        self.affine = FullyConnectedLayer(cfg.w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, cfg.kernel_size, cfg.kernel_size]))
        self.use_noise = cfg.use_noise
        if cfg.use_noise:
            width = resolution if cfg.square else resolution // 2
            self.register_buffer("noise_const", torch.randn([resolution, width]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused: bool = True, gain: float = 1.0,
        noise_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Apply the layer to ``x`` with style vector ``w`` [N, w_dim].

        ``noise_map`` ([H, W] or [N, 1, H, W]) replaces the stored noise map when given.
        """
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_map is not None:
            noise = noise_map * self.noise_strength
        elif self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, *self.noise_const.shape]
            noise = torch.randn(shape, device=x.device, dtype=torch.float32) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=self.up == 1,
            fused=fused,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels (no demodulation)."""

    def __init__(self, cfg: GeneratorConfig, in_channels: int) -> None:
        super().__init__()
        self.conv_clamp = cfg.conv_clamp
        self.affine = FullyConnectedLayer(cfg.w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([cfg.img_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([cfg.img_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        """Project features ``x`` to image channels with style ``w``."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """Plain equalised-lr convolution; used as the 1x1 upsampling skip of resnet blocks."""

    def __init__(self, cfg: GeneratorConfig, in_channels: int, out_channels: int, up: int = 1) -> None:
        super().__init__()
        self.up = up
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(list(cfg.resample_filter)))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """Convolve (and upsample) ``x``, scaled by ``gain``."""
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample.conv2d_resample(x, w, f=self.resample_filter, up=self.up, flip_weight=self.up == 1)
        return x * gain if gain != 1 else x


class SynthesisBlock(nn.Module):
    """One resolution level: (const or upsampling conv0) + conv1 + toRGB / skip connections."""

    def __init__(self, cfg: GeneratorConfig, in_channels: int, out_channels: int, resolution: int) -> None:
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.architecture = cfg.architecture
        self.is_last = resolution == cfg.img_resolution
        self.use_fp16 = resolution >= cfg.fp16_resolution and cfg.num_fp16_res > 0
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(list(cfg.resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            width = resolution if cfg.square else resolution // 2
            self.const = nn.Parameter(torch.randn([out_channels, resolution, width]))
        else:
            self.conv0 = SynthesisLayer(cfg, in_channels, out_channels, resolution, up=2)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(cfg, out_channels, out_channels, resolution)
        self.num_conv += 1
        if self.is_last or cfg.architecture == "skip":
            self.torgb = ToRGBLayer(cfg, out_channels)
            self.num_torgb += 1
        if in_channels != 0 and cfg.architecture == "resnet":
            self.skip = Conv2dLayer(cfg, in_channels, out_channels, up=2)

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str,
        fused: bool,
        force_fp32: bool,
        channels_last: bool | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the block on features ``x`` and the running image ``img``.

        ``noise``: optional noise maps for this block's layers (conv0 then conv1).

        ``channels_last=None`` picks the faster memory layout: NHWC on CPU (oneDNN convolutions
        and depthwise filters run about 1.5-2x faster there), NHWC for float16 blocks on CUDA
        (as the official code does), NCHW otherwise. The layout never changes the values.
        """
        w_iter = iter(ws.unbind(dim=1))
        n_iter = iter(noise if noise is not None else [None] * self.num_conv)
        use_fp16 = self.use_fp16 and not force_fp32 and ws.device.type == "cuda"
        dtype = torch.float16 if use_fp16 else float_dtype(self)
        if channels_last is None:
            channels_last = ws.device.type == "cpu" or use_fp16
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]).contiguous(memory_format=fmt)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused, noise_map=next(n_iter))
        elif self.architecture == "resnet":
            x = x.to(dtype).contiguous(memory_format=fmt)
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused=fused, noise_map=next(n_iter))
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused, gain=np.sqrt(0.5),
                           noise_map=next(n_iter))
            x = y + x
        else:
            x = x.to(dtype).contiguous(memory_format=fmt)
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused=fused, noise_map=next(n_iter))
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused, noise_map=next(n_iter))
        if img is not None:
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused=fused).to(float_dtype(self), memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, C, H, W]."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.block_resolutions = cfg.block_resolutions
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = cfg.channels(res // 2) if res > 4 else 0
            block = SynthesisBlock(cfg, in_channels, cfg.channels(res), res)
            self.num_ws += block.num_conv + (block.num_torgb if block.is_last else 0)
            setattr(self, f"b{res}", block)
        assert self.num_ws == cfg.num_ws

    def blocks(self) -> list[SynthesisBlock]:
        """The blocks from 4x4 to the output resolution."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def noise_buffers(self) -> "OrderedDict[str, torch.Tensor]":
        """The per-layer constant noise maps, in layer order (name -> [H, W] buffer)."""
        return OrderedDict((name, buf) for name, buf in self.named_buffers() if name.endswith("noise_const"))

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        fused_modconv: bool | None = None,
        force_fp32: bool = False,
        channels_last: bool | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Synthesise images from ``ws``.

        ``noise_mode``: 'random' (fresh noise), 'const' (the stored noise maps) or 'none'.
        ``noise``: explicit noise maps, one per layer in :meth:`noise_buffers` order, each [H, W]
        or [N, 1, H, W] (per-sample maps, as the projector optimises); overrides ``noise_mode``.
        ``fused_modconv=None`` picks the cheaper modulated-convolution path: activations are
        modulated (non-fused) whenever a backward pass may follow or the batch has several
        samples, weights are modulated (fused) for batch-1 inference. ``channels_last=None``
        picks the memory layout per block (see :meth:`SynthesisBlock.forward`).
        """
        if noise_mode not in NOISE_MODES:
            raise InsetganError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.cfg.w_dim:
            raise InsetganError(f"ws must have shape [N, {self.num_ws}, {self.cfg.w_dim}], got {list(ws.shape)}")
        n_layers = len(self.noise_buffers())
        if noise is not None and len(noise) != n_layers:
            raise InsetganError(f"noise must hold {n_layers} maps (one per layer), got {len(noise)}")
        noise_iter = iter(noise) if noise else None
        ws = ws.to(float_dtype(self))
        if fused_modconv is None:
            grad_possible = torch.is_grad_enabled() and (
                ws.requires_grad or any(p.requires_grad for p in self.parameters())
            )
            fused_modconv = not grad_possible and ws.shape[0] == 1
        x = img = None
        w_idx = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            block_noise = [next(noise_iter) for _ in range(block.num_conv)] if noise_iter is not None else None
            x, img = block(x, img, block_ws, noise_mode=noise_mode, fused=fused_modconv, force_fp32=force_fp32,
                           channels_last=channels_last, noise=block_noise)
        return img


class GeneratorBase(nn.Module):
    """What every generator architecture shares: ``G(z, c) = G.synthesis(G.mapping(z, c))``.

    ``cfg`` is the architecture's config, ``synthesis`` its synthesis network (with ``num_ws``
    and ``noise_buffers()``) and ``mapping_cfg`` the StyleGAN2 config its mapping network reads.
    """

    def __init__(self, cfg: Any, synthesis: nn.Module, mapping_cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = synthesis
        self.num_ws = synthesis.num_ws
        self.mapping = MappingNetwork(mapping_cfg, self.num_ws)

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked average w ([w_dim]), the truncation centre."""
        return self.mapping.w_avg

    @property
    def img_shape(self) -> tuple[int, int, int]:
        """Output image shape (C, H, W)."""
        return (self.cfg.img_channels, self.cfg.img_height, self.cfg.img_width)

    def noise_buffers(self) -> "OrderedDict[str, torch.Tensor]":
        """The per-layer constant noise maps (empty for architectures without noise inputs)."""
        return self.synthesis.noise_buffers()

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        fused_modconv: bool | None = None,
        force_fp32: bool = False,
    ) -> torch.Tensor:
        """Map ``z`` (and class ``c``) to ws and synthesise images [N, C, H, W]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv, force_fp32=force_fp32)


class Generator(GeneratorBase):
    """StyleGAN2 generator: ``G(z, c) = G.synthesis(G.mapping(z, c))``."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__(cfg, SynthesisNetwork(cfg), cfg)


def build_generator(cfg: GeneratorConfig, state_dict: Mapping[str, torch.Tensor], source: str) -> Generator:
    """Build a Generator from ``cfg`` and load ``state_dict``, cross-checking every key and shape."""
    return load_checked(Generator(cfg), state_dict, source)
