"""The layers the StyleGAN2 and StyleGAN3 generators and the discriminators share: the modulated
convolution, the equalised-learning-rate fully connected layer, and their small helpers.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from insetgan.torch_utils.ops import bias_act, conv2d_resample


def float_dtype(module: nn.Module) -> torch.dtype:
    """Full-precision compute dtype of ``module``: float64 for a ``.double()`` network, else float32."""
    return torch.float64 if next(module.parameters()).dtype == torch.float64 else torch.float32


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit mean square along ``dim``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution of ``x`` [N, I, H, W] by ``weight`` [O, I, k, k].

    ``fused=True`` folds the per-sample styles into the weights (a grouped convolution);
    ``fused=False`` modulates the activations instead, which gives the same result and, when
    the weights need no gradient, skips the weight-gradient convolutions in the backward pass.
    """
    batch = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise to avoid float16 overflow (scale-invariant thanks to demodulation).
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    if not fused:
        dcoefs = None
        if demodulate:
            # sum_{i,k} (W[o,i,k] s[i])^2 == s^2 @ sum_k W[o,i,k]^2
            dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(
            x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding, flip_weight=flip_weight
        )
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample.conv2d_resample(
        x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=batch, flip_weight=flip_weight
    )
    x = x.reshape(batch, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate and optional activation."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer to ``x`` [N, in_features]."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)
