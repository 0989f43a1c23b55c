"""Compiled kernels: random cases against the reference, gradients, dispatch and the builder."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from insetgan.torch_utils import custom_ops
from insetgan.torch_utils.errors import OpArgumentError
from insetgan.torch_utils.ops import bias_act, dispatch, upfirdn2d
from insetgan.torch_utils.ops import filtered_lrelu as flrelu_mod
from insetgan.torch_utils.ops.bias_act import ACTIVATIONS
from insetgan.torch_utils.ops.filtered_lrelu import filtered_lrelu
from tests.conftest import REPO, fixture_path
from tests.filters import random_filter

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))


@pytest.fixture(autouse=True)
def _poison_outputs(monkeypatch):
    monkeypatch.setenv("INSETGAN_OPS_POISON", "1")


def _filters(gen):
    return {
        "sep4": upfirdn2d.setup_filter([1, 3, 3, 1], separable=True),
        "full4": upfirdn2d.setup_filter([1, 3, 3, 1]),
        "rand5x3": torch.randn(5, 3, generator=gen),
        "sep6": upfirdn2d.setup_filter([1, 5, 10, 10, 5, 1], separable=True),
    }


UFD_CASES = [
    # (up, down, padding)
    (1, 1, [1, 2, 2, 1]),
    (2, 1, [2, 1, 2, 1]),
    (1, 2, [1, 1, 1, 1]),
    (2, 2, [3, 0, 1, 2]),
    ([3, 1], [1, 2], [0, 2, -1, 3]),
    (1, [3, 2], [-1, 2, 2, -1]),
]


@pytest.mark.parametrize("impl", ["cpp", CUDA])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_upfirdn2d_random_against_reference(impl, layout, dtype):
    gen = torch.Generator().manual_seed(0)
    device = "cuda" if impl == "cuda" else "cpu"
    for fname, f in _filters(gen).items():
        for up, down, pad in UFD_CASES:
            for flip, gain in ((False, 1.0), (True, 2.5)):
                x = torch.randn(2, 5, 13, 11, generator=gen, dtype=dtype)
                if layout == "nhwc":
                    x = x.contiguous(memory_format=torch.channels_last)
                x = x.to(device).requires_grad_(True)
                kw = dict(up=up, down=down, padding=pad, flip_filter=flip, gain=gain)
                ref = upfirdn2d.upfirdn2d(x, f.to(device), impl="ref", **kw)
                out = upfirdn2d.upfirdn2d(x, f.to(device), impl=impl, **kw)
                msg = f"{fname} up={up} down={down} pad={pad} flip={flip}"
                torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5, msg=msg)
                dy = torch.randn_like(ref)
                (g_ref,) = torch.autograd.grad(ref, x, dy)
                (g_out,) = torch.autograd.grad(out, x, dy)
                torch.testing.assert_close(g_out, g_ref, rtol=1e-5, atol=1e-5, msg=msg)
                if layout == "nhwc":
                    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("impl", ["cpp", CUDA])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("layout", ["contiguous", "nhwc", "dim2"])
def test_bias_act_random_against_reference(impl, act, layout):
    gen = torch.Generator().manual_seed(1)
    device = "cuda" if impl == "cuda" else "cpu"
    x = 3 * torch.randn(3, 7, 5, 9, generator=gen)
    dim = 2 if layout == "dim2" else 1
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.to(device).requires_grad_(True)
    b = torch.randn(x.shape[dim], generator=gen).to(device).requires_grad_(True)
    for kw in (dict(), dict(alpha=0.3, gain=0.7, clamp=1.0), dict(clamp=0.5)):
        ref = bias_act.bias_act(x, b, dim=dim, act=act, impl="ref", **kw)
        out = bias_act.bias_act(x, b, dim=dim, act=act, impl=impl, **kw)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        dy = torch.randn_like(ref)
        g_ref = torch.autograd.grad(ref, [x, b], dy)
        g_out = torch.autograd.grad(out, [x, b], dy)
        torch.testing.assert_close(g_out[0], g_ref[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(g_out[1], g_ref[1], rtol=1e-4, atol=1e-4)
    nobias = bias_act.bias_act(x, None, act=act, impl=impl)
    torch.testing.assert_close(nobias, bias_act.bias_act(x, None, act=act, impl="ref"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("up, down, pad, fname", [(2, 1, [2, 1, 2, 1], "full4"), (1, 2, 1, "sep4"),
                                                   (1, 1, [1, 0, 2, 1], "rand5x3"), ([2, 1], [1, 2], 0, "full4")])
def test_upfirdn2d_gradcheck_and_gradgradcheck(up, down, pad, fname):
    f = _filters(torch.Generator().manual_seed(2))[fname].double()
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)

    def fn(t):
        return upfirdn2d.upfirdn2d(t, f, up=up, down=down, padding=pad, gain=1.5, impl="cpp")

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_bias_act_gradcheck_and_gradgradcheck(act):
    gen = torch.Generator().manual_seed(3)
    # keep samples away from the kinks (0 for relu-like, the clamp bound) where finite differences break
    x = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    x = (x + 0.2 * x.sign()).requires_grad_(True)
    b = (0.05 * torch.randn(3, generator=gen, dtype=torch.float64)).requires_grad_(True)

    def fn(t, bias):
        return bias_act.bias_act(t, bias, act=act, alpha=0.1, gain=1.3, clamp=2.5, impl="cpp")

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_auto_uses_compiled_kernel_on_cpu(monkeypatch):
    monkeypatch.delenv("INSETGAN_OPS", raising=False)
    x = torch.zeros(1, 2, 4, 4)
    assert dispatch.resolve("auto", x) == "cpp"  # CI builds the kernels: a failed build fails here
    assert dispatch.resolve("auto", x.half()) == "ref"  # no float16 CPU kernel
    assert dispatch.resolve("ref", x) == "ref"
    monkeypatch.setenv("INSETGAN_OPS", "ref")
    assert dispatch.resolve("auto", x) == "ref" and dispatch.resolve("cpp", x) == "ref"


def test_explicit_impl_errors():
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="impl must be one of"):
        bias_act.bias_act(x, impl="fast")
    with pytest.raises(ValueError, match="cannot run on a cpu tensor"):
        upfirdn2d.upfirdn2d(x, None, impl="cuda")
    with pytest.raises(ValueError, match="does not support"):
        bias_act.bias_act(x.half(), impl="cpp")
    with pytest.raises(ValueError, match="empty output"):
        upfirdn2d.upfirdn2d(x, torch.ones(6, 6), impl="cpp")


def test_generator_with_compiled_ops_matches_fixture(monkeypatch):
    from insetgan.networks.checkpoints import load_checkpoint

    monkeypatch.delenv("INSETGAN_OPS", raising=False)
    G = load_checkpoint(fixture_path("sg2ada_face64.pkl")).generator
    ref = np.load(fixture_path("sg2ada_face64_ref.npz"))
    z = torch.tensor(ref["z"])
    for channels_last in (False, True):
        with torch.no_grad():
            img = G(z, None, truncation_psi=0.7, noise_mode="const")
            ws = torch.tensor(ref["ws_psi1"]).requires_grad_(True)
            img2 = G.synthesis(ws, noise_mode="none", channels_last=channels_last, fused_modconv=False)
        np.testing.assert_allclose(img.numpy(), ref["img_psi07_const"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(img2.numpy(), ref["img_ws_psi1_none"], rtol=1e-4, atol=1e-4)
    # gradients to ws agree between compiled and reference ops
    ws = torch.tensor(ref["ws_psi1"][:1])
    grads = []
    for impl_env in ("", "ref"):
        monkeypatch.setenv("INSETGAN_OPS", impl_env)
        w = ws.clone().requires_grad_(True)
        G.synthesis(w, noise_mode="const").square().mean().backward()
        grads.append(w.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


# filtered_lrelu ---------------------------------------------------------------------------------
def _flrelu_cases() -> list[dict]:
    """StyleGAN3-like layers, then random odd-sized cases (up/down 1, 2, 4, paddings that also crop)."""
    cases = [
        dict(shape=[2, 3, 19, 19], fu=("sep", 12), fd=("sep", 12), up=2, down=2, padding=[11, 10, 11, 10]),
        dict(shape=[2, 3, 15, 15], fu=("sep", 12), fd=("radial", 12), up=2, down=2, padding=[11, 10, 11, 10]),
        dict(shape=[1, 3, 13, 13], fu=("sep", 24), fd=("sep", 12), up=4, down=2, padding=[-6, -9, -6, -9]),
        dict(shape=[1, 3, 13, 13], fu=("sep", 12), fd=("sep", 24), up=2, down=4, padding=[17, 16, 17, 16]),
        dict(shape=[2, 3, 9, 9], fu=("none", 1), fd=("none", 1), up=1, down=1, padding=0, gain=1.0, slope=1.0),
    ]
    gen = torch.Generator().manual_seed(11)
    rng = np.random.RandomState(11)
    kinds = ["none", "sep", "2d", "radial", "aniso"]
    while len(cases) < 24:
        up, down = (int(v) for v in rng.choice([1, 2, 4], 2))
        fu = (str(rng.choice(kinds)), int(rng.randint(1, 9)) * up)
        fd = (str(rng.choice(kinds)), int(rng.randint(1, 9)) * down)
        shape = [int(rng.randint(1, 3)), int(rng.randint(1, 5)), int(rng.randint(3, 9)) * 2 + 1,
                 int(rng.randint(3, 9)) * 2 + 1]
        padding = [int(v) for v in rng.randint(-3, 2 * fu[1] + 1, 4)]
        case = dict(shape=shape, fu=fu, fd=fd, up=up, down=down, padding=padding)
        probe = torch.zeros(shape)
        ffu, ffd = random_filter(*fu, gen), random_filter(*fd, gen)
        try:
            flrelu_mod.check_args(probe, ffu, ffd, None, up, down, padding, 1.0, 0.2, None, False)
        except OpArgumentError:
            continue  # empty output: draw again
        cases.append(case)
    return cases


FLRELU_CASES = _flrelu_cases()
FLRELU_SETTINGS = [  # (gain, slope, clamp, flip_filter)
    (math.sqrt(2), 0.2, None, False),
    (1.3, 0.05, 0.4, True),
    (0.8, 0.0, 2.0, False),
]


@pytest.mark.parametrize("impl", ["cpp", CUDA])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_filtered_lrelu_random_against_reference(impl, layout, dtype):
    gen = torch.Generator().manual_seed(5)
    device = "cuda" if impl == "cuda" else "cpu"
    tol = dict(rtol=1e-5, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for index, case in enumerate(FLRELU_CASES):
        fu, fd = random_filter(*case["fu"], gen), random_filter(*case["fd"], gen)
        fu, fd = (None if f is None else f.to(device) for f in (fu, fd))
        gain, slope, clamp, flip = FLRELU_SETTINGS[index % len(FLRELU_SETTINGS)]
        gain, slope = case.get("gain", gain), case.get("slope", slope)
        x = 2 * torch.randn(case["shape"], generator=gen, dtype=dtype)
        if layout == "nhwc":
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.to(device).requires_grad_(True)
        b = torch.randn(case["shape"][1], generator=gen, dtype=dtype).to(device).requires_grad_(True)
        kw = dict(up=case["up"], down=case["down"], padding=case["padding"], gain=gain, slope=slope, clamp=clamp,
                  flip_filter=flip)
        msg = f"case {index}: {case} gain={gain} slope={slope} clamp={clamp} flip={flip}"
        ref = filtered_lrelu(x, fu, fd, b, impl="ref", **kw)
        out = filtered_lrelu(x, fu, fd, b, impl=impl, **kw)
        torch.testing.assert_close(out, ref, **tol, msg=msg)
        if layout == "nhwc" and case["shape"][1] > 1:
            assert out.is_contiguous(memory_format=torch.channels_last), msg
        dy = torch.randn_like(ref)
        g_ref = torch.autograd.grad(ref, [x, b], dy)
        g_out = torch.autograd.grad(out, [x, b], dy)
        torch.testing.assert_close(g_out[0], g_ref[0], **tol, msg=f"dx, {msg}")
        torch.testing.assert_close(g_out[1], g_ref[1], rtol=tol["rtol"], atol=10 * tol["atol"], msg=f"db, {msg}")


@pytest.mark.parametrize("fu, fd, up, down, padding, clamp, flip", [
    (("sep", 4), ("sep", 4), 2, 2, [2, 1, 1, 2], 50.0, False),
    (("sep", 4), ("radial", 4), 2, 2, [2, 1, 1, 2], 0.3, True),
    (("aniso", 3), ("none", 1), 1, 1, [1, 1, 0, 2], None, False),
    (("sep", 8), ("2d", 2), 4, 2, [-1, 2, 3, 0], 0.5, False),
    (("2d", 3), ("sep", 8), 1, 4, [2, 3, 4, 1], None, True),
])
def test_filtered_lrelu_gradcheck_and_gradgradcheck(fu, fd, up, down, padding, clamp, flip):
    """Float64 gradients through the kernel (dx, db, and the double-backward product of the kernel)."""
    gen = torch.Generator().manual_seed(8)
    ffu = random_filter(*fu, gen)
    ffd = random_filter(*fd, gen)
    ffu, ffd = (None if f is None else f.double() for f in (ffu, ffd))
    x = torch.randn([1, 2, 5, 7], generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn([2], generator=gen, dtype=torch.float64, requires_grad=True)

    def fn(t, bias):
        return filtered_lrelu(t, ffu, ffd, bias, up=up, down=down, padding=padding, gain=1.4, slope=0.2,
                              clamp=clamp, flip_filter=flip, impl="cpp")

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_filtered_lrelu_second_order_matches_the_reference():
    gen = torch.Generator().manual_seed(9)
    fu = random_filter("sep", 8, gen).double()
    fd = random_filter("radial", 6, gen).double()
    x = torch.randn([2, 3, 9, 8], generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn([3], generator=gen, dtype=torch.float64, requires_grad=True)
    kw = dict(up=2, down=2, padding=[3, 2, 4, 1], clamp=0.6)
    grads = []
    for impl in ("ref", "cpp"):
        y = filtered_lrelu(x, fu, fd, b, impl=impl, **kw)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        grads.append(torch.autograd.grad(gx.sin().sum(), [x, b]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-9)


def test_filtered_lrelu_dispatch(monkeypatch):
    monkeypatch.delenv("INSETGAN_OPS", raising=False)
    x = torch.randn([1, 2, 8, 8])
    f4 = torch.ones([4]) / 4
    assert dispatch.resolve("auto", x, "filtered_lrelu") == "cpp"
    assert dispatch.resolve("auto", x.half(), "filtered_lrelu") == "ref"
    report = dispatch.ops_report()
    assert report["devices"]["cpu"]["ops"]["filtered_lrelu"] == "cpp" and not report["reference_only_ops"]
    calls = []
    real = flrelu_mod._run_kernel
    monkeypatch.setattr(flrelu_mod, "_run_kernel", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    filtered_lrelu(x, f4, f4, up=2, down=2, padding=2)
    assert calls == ["cpp"]
    with pytest.raises(OpArgumentError, match="does not support"):
        filtered_lrelu(x.half(), f4, f4, up=2, down=2, padding=2, impl="cpp")
    with pytest.raises(OpArgumentError, match="cannot run on a cpu tensor"):
        filtered_lrelu(x, f4, f4, up=2, down=2, padding=2, impl="cuda")
    # Filters longer than the kernels take: 'auto' runs the reference, 'cpp' refuses.
    f70 = torch.ones([70]) / 70
    big = torch.randn([1, 1, 40, 40])
    calls.clear()
    y = filtered_lrelu(big, f70, f4, up=2, down=2, padding=40)
    assert calls == [] and torch.equal(y, filtered_lrelu(big, f70, f4, up=2, down=2, padding=40, impl="ref"))
    with pytest.raises(OpArgumentError, match="at most 64 taps"):
        filtered_lrelu(big, f70, f4, up=2, down=2, padding=40, impl="cpp")
    monkeypatch.setenv("INSETGAN_OPS", "ref")
    calls.clear()
    filtered_lrelu(x, f4, f4, up=2, down=2, padding=2, impl="cpp")
    assert calls == []


def test_filtered_lrelu_poison_is_overwritten():
    """Under INSETGAN_OPS_POISON=1 (autouse) every output and gradient element is written: no NaN survives."""
    f = upfirdn2d.setup_filter([1.0] * 6, separable=True)
    x = torch.randn([2, 3, 11, 9], requires_grad=True)
    y = filtered_lrelu(x, f, f, torch.zeros(3), up=2, down=2, padding=[5, 4, 5, 4], impl="cpp")
    (dx,) = torch.autograd.grad(y, x, torch.randn_like(y))
    assert torch.isfinite(y).all() and torch.isfinite(dx).all()


@pytest.mark.parametrize("name", ["sg3t_face64", "sg3r_face32"])
def test_stylegan3_fixture_through_the_compiled_op(monkeypatch, name):
    """The fixtures reproduce the official outputs with filtered_lrelu on the C++ kernel ('auto')."""
    from insetgan.networks.checkpoints import load_checkpoint
    from tests.test_stylegan3 import check_reference

    monkeypatch.delenv("INSETGAN_OPS", raising=False)
    calls = []
    real = flrelu_mod._run_kernel
    monkeypatch.setattr(flrelu_mod, "_run_kernel", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    G = load_checkpoint(fixture_path(f"{name}.pkl")).generator
    ref = np.load(fixture_path(f"{name}_ref.npz"))
    with torch.no_grad():
        check_reference(G, ref)
    assert calls and set(calls) == {"cpp"}
    # gradients to ws agree between the compiled op and the reference
    ws = torch.tensor(ref["ws_psi1"][:2])
    grads = []
    for impl_env in ("", "ref"):
        monkeypatch.setenv("INSETGAN_OPS", impl_env)
        w = ws.clone().requires_grad_(True)
        G.synthesis(w).square().mean().backward()
        grads.append(w.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_failed_build_raises_and_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSETGAN_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.cpp").write_text("this is not C++;\n")
    spec = custom_ops.PluginSpec("insetgan_broken", ("broken.cpp",), source_dir=src)
    with pytest.raises(RuntimeError, match="building insetgan_broken failed"):
        custom_ops.build_plugin(spec)
    assert not [p for p in (tmp_path / "cache" / "ops").iterdir() if p.is_dir()]


TINY = textwrap.dedent("""
    #include <pybind11/pybind11.h>
    int answer() { return 42; }
    PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("answer", &answer); }
""")


def test_concurrent_builds_share_one_cache_entry(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.cpp").write_text(TINY)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from insetgan.torch_utils import custom_ops
        spec = custom_ops.PluginSpec("insetgan_tiny", ("tiny.cpp",), source_dir=Path({str(src)!r}))
        print(custom_ops.build_plugin(spec).answer())
    """)
    env = {**os.environ, "INSETGAN_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].strip() for o in outs] == ["42", "42"]
    built = [p for p in (tmp_path / "cache" / "ops").iterdir() if p.is_dir()]
    assert len(built) == 1 and built[0].name.startswith("insetgan_tiny_")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_sources_compile(tmp_path):
    """Without a GPU, at least compile the CUDA kernels and syntax-check their torch binding."""
    csrc = REPO / "torch_utils" / "ops" / "csrc"
    kernel_files = [s for s in custom_ops.PLUGINS["cuda"].sources if s.endswith(".cu")]
    assert sorted(kernel_files) == sorted(p.name for p in csrc.glob("*.cu"))  # every .cu is built and checked
    for name in kernel_files:
        proc = subprocess.run(["nvcc", "-c", "-std=c++17", "-O3", str(csrc / name), "-o", str(tmp_path / f"{name}.o")],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-2000:]}"
    candidates = [Path(os.environ.get("CUDA_HOME", "/nonexistent")) / "include", Path("/usr/local/cuda/include"),
                  Path(shutil.which("nvcc")).resolve().parents[1] / "include"]
    cuda_include = next((c for c in candidates if (c / "cuda_runtime_api.h").exists()), None)
    if cuda_include is None:
        pytest.skip("CUDA headers not found for the binding check")
    import sysconfig

    from torch.utils.cpp_extension import include_paths

    stub = tmp_path / "stub" / "c10" / "cuda" / "impl"
    stub.mkdir(parents=True)
    (stub / "cuda_cmake_macros.h").write_text("")  # generated at torch build time; absent in CPU wheels
    cmd = ["g++", "-fsyntax-only", "-std=c++20", "-DTORCH_EXTENSION_NAME=insetgan_check",
           *[f"-isystem{p}" for p in include_paths()], f"-isystem{sysconfig.get_paths()['include']}",
           f"-isystem{cuda_include}", f"-isystem{tmp_path / 'stub'}", str(csrc / "ops_cuda.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_cuda_float16_against_float32_reference(layout):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 8, 17, 15, generator=gen)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.cuda()
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device="cuda")
    for kw in (dict(up=2, padding=[2, 1, 2, 1]), dict(down=2, padding=1), dict(padding=[2, 1, 2, 1])):
        ref = upfirdn2d.upfirdn2d(x, f, impl="ref", **kw)
        out = upfirdn2d.upfirdn2d(x.half(), f, impl="cuda", **kw)
        assert out.dtype == torch.float16
        torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    b = torch.randn(8, generator=gen).cuda()
    ref = bias_act.bias_act(x, b, act="lrelu", clamp=1.5, impl="ref")
    out = bias_act.bias_act(x.half(), b.half(), act="lrelu", clamp=1.5, impl="cuda")
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)


@needs_cuda
def test_cuda_second_order_gradients():
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device="cuda").double()
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: upfirdn2d.upsample2d(t, f, impl="cuda"), (x,))
    assert torch.autograd.gradgradcheck(lambda t: upfirdn2d.downsample2d(t, f, impl="cuda"), (x,))
    xs = (x.detach() + 0.2 * x.detach().sign()).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t, c: bias_act.bias_act(t, c, act="lrelu", impl="cuda"), (xs, b))


@needs_cuda
def test_cuda_filtered_lrelu_float16_and_second_order():
    gen = torch.Generator().manual_seed(6)
    fu = upfirdn2d.setup_filter([1.0] * 12, separable=True, device="cuda")
    fd = random_filter("radial", 12, gen).cuda()
    x = torch.randn(2, 8, 21, 19, generator=gen).cuda()
    b = torch.randn(8, generator=gen).cuda()
    kw = dict(up=2, down=2, padding=[11, 10, 11, 10], clamp=1.5)
    ref = filtered_lrelu(x, fu, fd, b, impl="ref", **kw)
    out = filtered_lrelu(x.half(), fu, fd, b.half(), impl="cuda", **kw)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    xd = torch.randn(1, 2, 6, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    bd = torch.randn(2, dtype=torch.float64, device="cuda", requires_grad=True)
    f4 = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64, device="cuda") / 8
    fn = lambda t, c: filtered_lrelu(t, f4, f4, c, up=2, down=2, padding=[2, 1, 1, 2], clamp=0.4, impl="cuda")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (xd, bd))
    assert torch.autograd.gradgradcheck(fn, (xd, bd))


@needs_cuda
def test_cuda_filtered_lrelu_matches_the_cpu_kernel_on_a_stylegan3_layer():
    gen = torch.Generator().manual_seed(10)
    fu = upfirdn2d.setup_filter(torch.rand(24, generator=gen).tolist(), separable=True)
    fd = random_filter("sep", 12, gen)
    x = torch.randn(4, 16, 52, 52, generator=gen, requires_grad=True)
    b = torch.randn(16, generator=gen, requires_grad=True)
    kw = dict(up=4, down=2, padding=[-6, -9, -6, -9], clamp=256.0)
    y_cpu = filtered_lrelu(x, fu, fd, b, impl="cpp", **kw)
    xc, bc = x.detach().cuda().requires_grad_(True), b.detach().cuda().requires_grad_(True)
    y_gpu = filtered_lrelu(xc, fu.cuda(), fd.cuda(), bc, impl="cuda", **kw)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    dy = torch.randn_like(y_cpu)
    g_cpu = torch.autograd.grad(y_cpu, [x, b], dy)
    g_gpu = torch.autograd.grad(y_gpu, [xc, bc], dy.cuda())
    torch.testing.assert_close(g_gpu[0].cpu(), g_cpu[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_gpu[1].cpu(), g_cpu[1], rtol=1e-3, atol=1e-3)
