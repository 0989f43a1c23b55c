"""The filtered leaky ReLU op: output shapes, the composition it stands for, gradients, bad arguments."""
from __future__ import annotations

import math

import click
import pytest
import torch

from insetgan.cli.common import handle_errors
from insetgan.torch_utils.errors import OpArgumentError
from insetgan.torch_utils.ops import bias_act, dispatch, upfirdn2d
from insetgan.torch_utils.ops.filtered_lrelu import filtered_lrelu
from tests.filters import random_filter


def _composition(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter=False):
    """The op written out: bias, upsample (gain up**2), lrelu * gain, clamp, downsample."""
    x = bias_act.bias_act(x, b, impl="ref")
    x = upfirdn2d.upfirdn2d(x, fu, up=up, padding=padding, gain=up**2, flip_filter=flip_filter, impl="ref")
    x = bias_act.bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp, impl="ref")
    return upfirdn2d.upfirdn2d(x, fd, down=down, flip_filter=flip_filter, impl="ref")


CASES = [
    # fu kind, fu taps, fd kind, fd taps, up, down, padding, gain, slope, clamp
    ("sep", 12, "sep", 12, 2, 2, [11, 10, 11, 10], math.sqrt(2), 0.2, None),   # a StyleGAN3-T layer
    ("sep", 24, "sep", 12, 4, 2, [2, 1, 3, 0], math.sqrt(2), 0.2, 256.0),  # 4x up, 2x down (a rate change)
    ("sep", 12, "2d", 12, 2, 2, [11, 10, 11, 10], math.sqrt(2), 0.2, 0.5),     # a StyleGAN3-R radial layer
    ("none", 1, "none", 1, 1, 1, 0, 1.0, 1.0, None),                           # ToRGB: linear, no filters
    ("2d", 4, "aniso", 3, 2, 1, [1, 2, 0, 3], 1.7, 0.1, 1.0),
    ("aniso", 5, "sep", 4, 1, 3, [-1, 2, 1, -2], 0.8, 0.0, None),
    ("sep", 6, "none", 1, 3, 1, 2, 1.0, 0.3, None),
]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"case{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("flip_filter", [False, True])
def test_equals_the_composition_and_its_shape(index, flip_filter):
    fu_kind, fu_taps, fd_kind, fd_taps, up, down, padding, gain, slope, clamp = CASES[index]
    gen = torch.Generator().manual_seed(index)
    x = torch.randn([2, 5, 13, 11], generator=gen) * 2
    b = torch.randn([5], generator=gen)
    fu, fd = random_filter(fu_kind, fu_taps, gen), random_filter(fd_kind, fd_taps, gen)
    kw = dict(up=up, down=down, padding=padding, gain=gain, slope=slope, clamp=clamp, flip_filter=flip_filter)
    expected = _composition(x, fu, fd, b, **kw)
    for impl in ("ref", "auto", "cpp"):
        y = filtered_lrelu(x, fu, fd, b, impl=impl, **kw)
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    # Output size: (in*up + pads - (fu taps - 1) - (fd taps - 1) + down - 1) // down per axis.
    fu_w, fu_h = upfirdn2d.filter_size(fu)
    fd_w, fd_h = upfirdn2d.filter_size(fd)
    px0, px1, py0, py1 = upfirdn2d.parse_padding(padding)
    h = (13 * up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + down - 1) // down
    w = (11 * up + px0 + px1 - (fu_w - 1) - (fd_w - 1) + down - 1) // down
    assert y.shape == (2, 5, h, w)
    if clamp is not None:
        assert y.abs().max() <= clamp * (1 + 1e-6) * (fd.abs().sum() if fd is not None else 1)


def test_stylegan3_layer_shapes():
    """Sizes of StyleGAN3-T 64 px layers: 36 -> conv 38 -> 36 (L0), 52 -> conv 54 -> 84 (L8, negative padding)."""
    fu = upfirdn2d.setup_filter([1.0] * 12, separable=True)
    x = torch.randn([1, 4, 38, 38])
    assert filtered_lrelu(x, fu, fu, up=2, down=2, padding=[9, 8, 9, 8]).shape == (1, 4, 36, 36)
    fu24 = upfirdn2d.setup_filter([1.0] * 24, separable=True)
    y = filtered_lrelu(torch.randn([1, 4, 54, 54]), fu24, fu, up=4, down=2, padding=[-6, -9, -6, -9])
    assert y.shape == (1, 4, 84, 84)


def test_defaults_are_a_plain_leaky_relu():
    x = torch.randn([2, 3, 6, 7])
    torch.testing.assert_close(filtered_lrelu(x), torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2))


def test_flipped_filter_equals_flip_filter():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn([1, 2, 9, 8], generator=gen)
    fu, fd = random_filter("aniso", 4, gen), random_filter("2d", 3, gen)
    a = filtered_lrelu(x, fu, fd, up=2, down=2, padding=3, flip_filter=True)
    b = filtered_lrelu(x, fu.flip([0, 1]), fd.flip([0, 1]), up=2, down=2, padding=3)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("impl", ["ref", "cpp"])
@pytest.mark.parametrize("fd_kind", ["sep", "2d"])
def test_gradcheck_float64(fd_kind, impl):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn([1, 2, 5, 6], generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn([2], generator=gen, dtype=torch.float64, requires_grad=True)
    fu, fd = random_filter("sep", 4, gen, torch.float64), random_filter(fd_kind, 4, gen, torch.float64)
    fn = lambda x, b: filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=[2, 1, 1, 2], clamp=50.0,  # noqa: E731
                                     impl=impl)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_float64_stays_float64():
    x = torch.randn([1, 2, 6, 6], dtype=torch.float64)
    fu = upfirdn2d.setup_filter([1, 3, 3, 1], separable=True)  # float32 filter: follows x
    assert filtered_lrelu(x, fu, fu, up=2, down=2, padding=2).dtype == torch.float64


def test_auto_resolves_to_the_compiled_kernel(monkeypatch):
    """A compiled kernel is registered: 'auto' uses it on CPU (the build is required here), INSETGAN_OPS=ref not."""
    monkeypatch.delenv("INSETGAN_OPS", raising=False)
    x = torch.randn([1, 1, 4, 4])
    assert dispatch.OP_KERNELS["filtered_lrelu"] == ("cpp", "cuda")
    assert dispatch.resolve("auto", x, "filtered_lrelu") == "cpp"
    assert "filtered_lrelu" not in dispatch.ops_report()["reference_only_ops"]
    monkeypatch.setenv("INSETGAN_OPS", "ref")
    assert dispatch.resolve("auto", x, "filtered_lrelu") == "ref"
    assert dispatch.resolve("cpp", x, "filtered_lrelu") == "ref"


X = torch.zeros([1, 3, 8, 8])
F4 = torch.ones([4]) / 4


@pytest.mark.parametrize("kwargs, message", [
    (dict(x=torch.zeros([3, 8, 8])), "x must be"),
    (dict(x=torch.zeros([1, 3, 8, 8], dtype=torch.int64)), "x must be"),
    (dict(fu=torch.ones([2, 2, 2])), "fu must be"),
    (dict(fd=[0.25, 0.25]), "fd must be"),
    (dict(b=torch.zeros([4])), "b must be"),
    (dict(up=0), "up must be"),
    (dict(down=1.5), "down must be"),
    (dict(up=True), "up must be"),
    (dict(padding=[1, 2, 3]), "bad padding"),
    (dict(gain=0), "gain must be"),
    (dict(gain=float("nan")), "gain must be"),
    (dict(slope=-0.1), "slope must be"),
    (dict(clamp=-1.0), "clamp must be"),
    (dict(clamp=float("inf")), "clamp must be"),
    (dict(fu=torch.ones([12]), padding=-4), "empty output"),
    (dict(impl="cuda"), "cannot run on a cpu tensor"),
    (dict(x=torch.zeros([1, 3, 8, 8], dtype=torch.float16), impl="cpp"), "does not support"),
    (dict(fu=torch.ones([65]), padding=40, impl="cpp"), "at most 64 taps"),
    (dict(impl="fast"), "impl must be"),
])
def test_bad_arguments_raise_op_argument_errors(kwargs, message):
    args = dict(x=X, fu=F4, fd=F4, padding=2)
    args.update(kwargs)
    with pytest.raises(OpArgumentError, match=message):
        filtered_lrelu(**args)


def test_the_command_line_turns_bad_op_arguments_into_one_line():
    @handle_errors
    def command() -> None:
        filtered_lrelu(X, F4, F4, up=0, padding=2)

    with click.Context(click.Command("op")):
        with pytest.raises(click.ClickException, match=r"^filtered_lrelu: up must be an integer >= 1, got 0$"):
            command()

