"""The StyleGAN3 generator (configs T and R) with the key names of official StyleGAN3 checkpoints.

Written from the paper (Karras et al. 2021, "Alias-Free Generative Adversarial Networks"): a
Fourier-feature input whose frequencies are rotated and translated per sample (a learned
affine of the first w) and by a user transform, then ``num_layers`` modulated convolutions, each
followed by the filtered leaky ReLU (:mod:`insetgan.torch_utils.ops.filtered_lrelu`) at twice
the layer's sampling rate, then a linear ToRGB layer and a fixed output scale. The layer
schedule comes from :class:`insetgan.networks.stylegan3_config.StyleGAN3Config`. The mapping
network is the StyleGAN2 one (:class:`insetgan.networks.generator.MappingNetwork`).

The public interface is that of :class:`insetgan.networks.generator.Generator` (``mapping``,
``synthesis``, ``num_ws``, ``w_avg``, ``img_shape``, ``noise_buffers()`` — empty: StyleGAN3 has
no noise inputs, so ``noise_mode`` is accepted and changes nothing). Layers flagged for float16
by ``num_fp16_res`` run in full precision here (the ``force_fp32=True`` numbers).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Union

import numpy as np
import torch
from torch import nn

from insetgan.errors import InsetganError
from insetgan.networks.generator import NOISE_MODES, Generator, GeneratorBase
from insetgan.networks.layers import FullyConnectedLayer, float_dtype, modulated_conv2d
from insetgan.networks.state_dicts import load_checked
from insetgan.networks.stylegan3_config import LayerSpec, StyleGAN3Config
from insetgan.torch_utils.ops.filtered_lrelu import filtered_lrelu


# Filters ----------------------------------------------------------------------------------------
def _kaiser_beta(numtaps: int, width: float, fs: float) -> float:
    """Kaiser window beta for a transition band ``width`` (Hz) at ``fs`` (Kaiser's empirical formulas)."""
    atten = 2.285 * (numtaps - 1) * np.pi * (width / (fs / 2)) + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
                          ) -> torch.Tensor | None:
    """A Kaiser-windowed low-pass FIR filter with unit DC gain (None for a single tap).

    Separable: a 1-D windowed sinc ``[numtaps]``. Radial: a 2-D jinc ``[numtaps, numtaps]``
    (radially symmetric ideal low-pass) windowed by the outer product of the Kaiser window.
    """
    if numtaps < 1:
        raise InsetganError(f"a filter needs at least one tap, got {numtaps}")
    if numtaps == 1:
        return None
    window = np.kaiser(numtaps, _kaiser_beta(numtaps, width, fs))
    t = np.arange(numtaps) - (numtaps - 1) / 2
    if not radial:
        rel = cutoff / (fs / 2)
        f = rel * np.sinc(rel * t) * window
    else:
        r = np.hypot(*np.meshgrid(t / fs, t / fs))
        arg = torch.from_numpy(2 * np.pi * cutoff * r)
        j1 = torch.special.bessel_j1(arg).numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(r > 0, j1 / (np.pi * r), cutoff)  # the limit at r = 0 is the cutoff
        f = f * np.outer(window, window)
    return torch.as_tensor(f / np.sum(f), dtype=torch.float32)


# Layers -----------------------------------------------------------------------------------------
def _rotation_translation(t: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] inverse rotation-then-translation from affine outputs ``t`` = (cos, sin, tx, ty)."""
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    c, s, tx, ty = t.unbind(dim=1)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rot = torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=1).reshape(-1, 3, 3)
    shift = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(-1, 3, 3)
    return rot @ shift


class SynthesisInput(nn.Module):
    """Fourier features: ``channels`` sinusoids sampled on a ``size`` grid, mixed by ``weight``."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, size
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth
        # Random frequencies inside the band (a fresh network's; checkpoints overwrite them).
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, bias_init=0.0)
        self.affine.weight.data.zero_()
        self.affine.bias.data.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))  # the user's inverse transform of the image
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Features [N, channels, size, size] for the first w vector ``w`` [N, w_dim]."""
        dtype = w.dtype
        # Rotate, then translate the image (learned, per sample), then the user transform.
        m = _rotation_translation(self.affine(w)) @ self.transform.to(dtype).unsqueeze(0)
        base = self.freqs.to(dtype)                                                    # [C, 2] as (fx, fy)
        freqs = base.unsqueeze(0) @ m[:, :2, :2]                                       # [N, C, 2]
        phases = self.phases.to(dtype).unsqueeze(0) + (base @ m[:, :2, 2:]).squeeze(2)  # [N, C]
        # Fade out frequencies the user transform pushed past the band (none without one).
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # Sample positions: pixel centres, in units of 1/sampling_rate, centred on the image.
        pos = (torch.arange(self.size, dtype=dtype, device=w.device) + 0.5 - self.size / 2) / self.sampling_rate
        grid = torch.stack(torch.meshgrid(pos, pos, indexing="xy"), dim=-1)          # [H, W, 2] as (x, y)
        x = torch.einsum("hwk,nck->nhwc", grid, freqs) + phases[:, None, None, :]
        x = torch.sin(x * (2 * np.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight.to(dtype) / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated convolution, then the filtered leaky ReLU (ToRGB: 1x1, linear, no demodulation)."""

    def __init__(self, cfg: StyleGAN3Config, spec: LayerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.conv_clamp = cfg.conv_clamp
        self.affine = FullyConnectedLayer(cfg.w_dim, spec.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([spec.out_channels, spec.in_channels, spec.conv_kernel,
                                                spec.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", design_lowpass_filter(
            spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, spec.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, spec.tmp_sampling_rate, radial=spec.down_radial))

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        """Apply the layer to ``x`` [N, in_channels, in_size, in_size] with the style vector ``w``."""
        spec = self.spec
        styles = self.affine(w)
        weight = self.weight.to(x.dtype)
        if spec.is_torgb:
            styles = styles / math.sqrt(spec.in_channels * spec.conv_kernel**2)
        else:
            # Unit mean square weights and styles first (demodulation makes both scale-free).
            weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
            styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
        # The input normalised by its tracked magnitude (a scalar, so applied to x directly).
        x = x * self.magnitude_ema.to(x.dtype).rsqrt()
        x = modulated_conv2d(x, weight, styles, padding=spec.conv_kernel - 1, demodulate=not spec.is_torgb,
                             fused=fused)
        gain, slope = (1.0, 1.0) if spec.is_torgb else (math.sqrt(2), 0.2)
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias.to(x.dtype), up=spec.up_factor,
                              down=spec.down_factor, padding=list(spec.padding), gain=gain, slope=slope,
                              clamp=self.conv_clamp)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, C, H, W]: the input, then the layers ``L0_…`` .. ToRGB."""

    def __init__(self, cfg: StyleGAN3Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_ws = cfg.num_ws
        inp = cfg.input_spec()
        self.input = SynthesisInput(cfg.w_dim, int(inp["channels"]), int(inp["size"]),
                                    float(inp["sampling_rate"]), float(inp["bandwidth"]))
        self.layer_names: list[str] = []
        for spec in cfg.layers():
            setattr(self, spec.name, SynthesisLayer(cfg, spec))
            self.layer_names.append(spec.name)

    def layers(self) -> list[SynthesisLayer]:
        """The synthesis layers in order (the last is ToRGB)."""
        return [getattr(self, name) for name in self.layer_names]

    def noise_buffers(self) -> "OrderedDict[str, torch.Tensor]":
        """StyleGAN3 has no noise inputs: always empty."""
        return OrderedDict()

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        fused_modconv: bool | None = None,
        force_fp32: bool = False,
        channels_last: bool | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Synthesise images from ``ws``; the arguments are those of the StyleGAN2 synthesis network.

        ``noise_mode`` is checked and ignored, ``noise`` must be None or empty (no noise inputs),
        ``force_fp32`` and ``channels_last`` change nothing (full precision, NCHW).
        ``fused_modconv=None`` picks the cheaper modulated convolution as StyleGAN2 does.
        """
        if noise_mode not in NOISE_MODES:
            raise InsetganError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.cfg.w_dim:
            raise InsetganError(f"ws must have shape [N, {self.num_ws}, {self.cfg.w_dim}], got {list(ws.shape)}")
        if noise is not None and len(noise) != 0:
            raise InsetganError(f"a StyleGAN3 network has no noise inputs, got {len(noise)} noise maps")
        ws = ws.to(float_dtype(self))
        if fused_modconv is None:
            grad_possible = torch.is_grad_enabled() and (
                ws.requires_grad or any(p.requires_grad for p in self.parameters())
            )
            fused_modconv = not grad_possible and ws.shape[0] == 1
        w_list = ws.unbind(dim=1)
        x = self.input(w_list[0])
        for layer, w in zip(self.layers(), w_list[1:]):
            x = layer(x, w, fused=fused_modconv)
        return x * self.cfg.output_scale if self.cfg.output_scale != 1 else x


class StyleGAN3Generator(GeneratorBase):
    """StyleGAN3 generator: ``G(z, c) = G.synthesis(G.mapping(z, c))``, a drop-in for the StyleGAN2 one."""

    def __init__(self, cfg: StyleGAN3Config) -> None:
        super().__init__(cfg, SynthesisNetwork(cfg), cfg.mapping_config())

    def set_transform(self, translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> None:
        """Translate and rotate (degrees) every image as the official tools do; see :func:`input_transform`."""
        m = input_transform(translate, rotate)
        self.synthesis.input.transform.copy_(m.to(self.synthesis.input.transform))


AnyGenerator = Union[Generator, StyleGAN3Generator]


def is_stylegan3(G: object) -> bool:
    """True for a StyleGAN3 generator (one with a Fourier-feature input and a user transform)."""
    return isinstance(G, StyleGAN3Generator)


def input_transform(translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor:
    """The ``synthesis.input.transform`` buffer for a user translation and rotation (degrees).

    The buffer holds the inverse of ``[[cos, sin, tx], [-sin, cos, ty], [0, 0, 1]]``, which is
    how the official image-generation tool sets it (computed in float64, returned as float32).
    """
    tx, ty = (float(v) for v in translate)
    angle = math.radians(float(rotate))
    if not all(math.isfinite(v) for v in (tx, ty, angle)):
        raise InsetganError(f"translate and rotate must be finite, got {translate!r}, {rotate!r}")
    c, s = math.cos(angle), math.sin(angle)
    m = np.array([[c, s, tx], [-s, c, ty], [0.0, 0.0, 1.0]])
    return torch.from_numpy(np.linalg.inv(m)).to(torch.float32)


def build_stylegan3(cfg: StyleGAN3Config, state_dict: Mapping[str, torch.Tensor], source: str) -> StyleGAN3Generator:
    """Build a StyleGAN3 generator from ``cfg`` and load ``state_dict``, cross-checking every key and shape.

    The stored ``up_filter``/``down_filter`` buffers are used as they are; their lengths (and
    whether they are 2-D, radial) must be those of the schedule.
    """
    return load_checked(StyleGAN3Generator(cfg), state_dict, source, "StyleGAN3 ")
