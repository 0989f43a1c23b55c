"""Fused bias + activation + gain + clamp (the StyleGAN2 ``bias_act`` op), reference path."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from insetgan.torch_utils.ops import dispatch


@dataclass(frozen=True)
class Activation:
    """An activation function with its default ``alpha`` and ``gain``."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def activation_spec(act: str) -> Activation:
    """Look up an activation by name; unknown names raise ``ValueError``."""
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; choose from {', '.join(ACTIVATIONS)}") from None


ACT_CODES = {name: i for i, name in enumerate(ACTIVATIONS)}  # order shared with the kernels' enum


@dataclass(frozen=True)
class BiasActParams:
    """Normalised arguments of one bias_act call."""

    act: str
    alpha: float
    gain: float
    clamp: float  # < 0: no clamping
    dim: int


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Compute ``clamp(act(x + b, alpha) * gain, -clamp, clamp)``.

    ``b`` is a 1-D bias broadcast along ``dim``; ``alpha``/``gain`` default to the activation's
    own values; ``clamp=None`` (or negative) disables clamping. ``impl``: 'auto', 'ref', 'cpp'
    or 'cuda' (see :mod:`insetgan.torch_utils.ops.dispatch`); all are differentiable twice or more.
    """
    spec = activation_spec(act)
    if x.ndim == 0:
        raise ValueError("bias_act expects at least a 1-D tensor")
    dim = dim % x.ndim
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias of shape {list(b.shape)} does not match dim {dim} of {list(x.shape)}")
    params = BiasActParams(
        act,
        float(alpha if alpha is not None else spec.def_alpha),
        float(gain if gain is not None else spec.def_gain),
        float(clamp if clamp is not None else -1),
        dim,
    )
    kind = dispatch.resolve(impl, x, "bias_act")
    if kind == "ref":
        return _bias_act_ref(x, b, params)
    return _BiasActCompiled.apply(x, b, params, kind)


def _bias_act_ref(x: torch.Tensor, b: torch.Tensor | None, p: BiasActParams) -> torch.Tensor:
    """Plain-PyTorch reference of :func:`bias_act`."""
    if b is not None:
        x = x + b.reshape([-1 if i == p.dim else 1 for i in range(x.ndim)])
    x = ACTIVATIONS[p.act].func(x, p.alpha)
    if p.gain != 1:
        x = x * p.gain
    if p.clamp >= 0:
        x = x.clamp(-p.clamp, p.clamp)
    return x


def _kernel(x, b, dy, p: BiasActParams, kind: str, grad: bool) -> torch.Tensor:
    empty = x.new_zeros([0])
    return dispatch.plugin(kind).bias_act(
        x, empty if b is None else b, empty if dy is None else dy, ACT_CODES[p.act], p.alpha, p.gain, p.clamp, p.dim,
        grad, dispatch.poison(),
    )


def _reduce_bias_grad(dx: torch.Tensor, dim: int) -> torch.Tensor:
    return dx.sum([i for i in range(dx.ndim) if i != dim])


class _BiasActCompiled(torch.autograd.Function):
    """bias_act through a compiled kernel; backward through :class:`_BiasActGradCompiled`."""

    @staticmethod
    def forward(ctx, x, b, params, kind):  # noqa: D102
        ctx.save_for_backward(x, b)
        ctx.params, ctx.kind = params, kind
        return _kernel(x, b, None, params, kind, grad=False)

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        x, b = ctx.saved_tensors
        dx = _BiasActGradCompiled.apply(dy, x, b, ctx.params, ctx.kind)
        db = _reduce_bias_grad(dx, ctx.params.dim) if b is not None and ctx.needs_input_grad[1] else None
        return dx, db, None, None


class _BiasActGradCompiled(torch.autograd.Function):
    """``dx = dy * d bias_act / dx`` by the kernel; higher orders through the reference's autograd."""

    @staticmethod
    def forward(ctx, dy, x, b, params, kind):  # noqa: D102
        ctx.save_for_backward(dy, x, b)
        ctx.params = params
        return _kernel(x, b, dy.contiguous(memory_format=_layout(x)), params, kind, grad=True)

    @staticmethod
    def backward(ctx, ddx):  # noqa: D102
        dy, x, b = ctx.saved_tensors
        p = ctx.params
        with torch.enable_grad():
            dy_ = dy.detach().requires_grad_(True)
            x_ = x.detach().requires_grad_(True)
            b_ = b.detach().requires_grad_(True) if b is not None else None
            y = _bias_act_ref(x_, b_, p)
            (dx_,) = torch.autograd.grad(y, x_, dy_, create_graph=True)
            inputs = [dy_, x_] + ([b_] if b_ is not None else [])
            grads = torch.autograd.grad(dx_, inputs, ddx, allow_unused=True, create_graph=torch.is_grad_enabled())
        grads = [g if g is not None else None for g in grads]
        return grads[0], grads[1], (grads[2] if b is not None else None), None, None


def _layout(x: torch.Tensor) -> torch.memory_format:
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
