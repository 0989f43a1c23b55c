"""Every op implementation reproduces the official op outputs and gradients in ops_ref.npz.

The compiled CPU kernels are requested explicitly (impl='cpp'), so a failed build fails these
tests instead of silently falling back to the reference. CUDA runs only with a GPU.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from insetgan.torch_utils.ops import bias_act, upfirdn2d
from tests.conftest import FIXTURES, fixture_path

TOL = dict(rtol=1e-5, atol=1e-5)
IMPLS = [
    "ref",
    "cpp",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]


@pytest.fixture(autouse=True)
def _poison_outputs(monkeypatch):
    """Kernels fill outputs with NaN before computing, so unwritten elements fail the checks."""
    monkeypatch.setenv("INSETGAN_OPS_POISON", "1")


def _load():
    return np.load(fixture_path("ops_ref.npz"), allow_pickle=False)


def _cases(group: str) -> list[str]:
    if not (FIXTURES / "ops_ref.npz").exists():
        return []  # the tests below are then not collected; test_fixtures_present reports it
    return json.loads(str(_load()[f"{group}/cases"]))


def test_fixtures_present():
    fixture_path("ops_ref.npz")


def _run_case(data, case: str, fn, impl: str = "ref"):
    device = "cuda" if impl == "cuda" else "cpu"
    x = torch.tensor(data[f"{case}/x"], dtype=torch.float32, device=device, requires_grad=True)
    extra = {}
    if f"{case}/b" in data.files:
        extra["b"] = torch.tensor(data[f"{case}/b"], device=device, requires_grad=True)
    y = fn(x, **extra)
    np.testing.assert_allclose(y.detach().cpu().numpy(), data[f"{case}/y"], **TOL, err_msg=f"{case} forward")
    inputs = [x] + list(extra.values())
    grads = torch.autograd.grad(y, inputs, torch.tensor(data[f"{case}/dy"], device=device))
    np.testing.assert_allclose(grads[0].cpu().numpy(), data[f"{case}/dx"], **TOL, err_msg=f"{case} dx")
    if "b" in extra:
        np.testing.assert_allclose(grads[1].cpu().numpy(), data[f"{case}/db"], **TOL, err_msg=f"{case} db")


def _resampling_case(case: str, impl: str):
    """(data, kwargs, filter on the impl's device) of one resampling case."""
    data = _load()
    kw = json.loads(str(data[f"{case}/kwargs"]))
    return data, kw, torch.tensor(data[f"{case}/f"], device="cuda" if impl == "cuda" else "cpu")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", _cases("upfirdn2d"))
def test_upfirdn2d_matches_reference(case, impl):
    data, kw, f = _resampling_case(case, impl)
    _run_case(
        data,
        case,
        lambda x: upfirdn2d.upfirdn2d(
            x, f, up=kw["up"], down=kw["down"], padding=kw["padding"], flip_filter=kw["flip_filter"], gain=kw["gain"],
            impl=impl,
        ),
        impl,
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", _cases("resample_wrappers"))
def test_resample_wrappers_match_reference(case, impl):
    data, kw, f = _resampling_case(case, impl)
    common = dict(padding=kw["padding"], flip_filter=kw["flip_filter"], gain=kw["gain"], impl=impl)
    op = kw["op"]
    if op == "upsample2d":
        fn = lambda x: upfirdn2d.upsample2d(x, f, up=kw.get("up", 2), **common)  # noqa: E731
    elif op == "downsample2d":
        fn = lambda x: upfirdn2d.downsample2d(x, f, down=kw.get("down", 2), **common)  # noqa: E731
    else:
        assert op == "filter2d"
        fn = lambda x: upfirdn2d.filter2d(x, f, **common)  # noqa: E731
    _run_case(data, case, fn, impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", _cases("bias_act"))
def test_bias_act_matches_reference(case, impl):
    data = _load()
    kw = json.loads(str(data[f"{case}/kwargs"]))
    assert kw["bias"] == (f"{case}/b" in data.files)
    _run_case(
        data,
        case,
        lambda x, b=None: bias_act.bias_act(
            x, b, dim=kw["dim"], act=kw["act"], alpha=kw["alpha"], gain=kw["gain"], clamp=kw["clamp"], impl=impl
        ),
        impl,
    )
    spec = bias_act.activation_spec(kw["act"])
    assert spec.def_alpha == pytest.approx(kw["def_alpha"])
    assert spec.def_gain == pytest.approx(kw["def_gain"])


def test_setup_filter_conventions():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and float(f.sum()) == pytest.approx(1.0)
    sep = upfirdn2d.setup_filter([1, 3, 3, 1], separable=True)
    assert sep.shape == (4,)
    torch.testing.assert_close(torch.outer(sep, sep), f)


def test_bad_op_arguments_raise():
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act.bias_act(x, act="gelu2")
    with pytest.raises(ValueError, match="padding"):
        upfirdn2d.upfirdn2d(x, None, padding=[1, 2, 3])
    with pytest.raises(ValueError, match="4-D"):
        upfirdn2d.upfirdn2d(x[0], None)
