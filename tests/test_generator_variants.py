"""Architectures, conditioning, channels, 2:1 canvases, truncation and config handling."""
from __future__ import annotations

import logging

import pytest
import torch

from insetgan.networks.checkpoints import load_checkpoint
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.generator import Generator
from tests.pickles import nvidia_pickle_bytes, official_init_kwargs

BASE = dict(z_dim=16, w_dim=16, img_resolution=16, channel_base=128, channel_max=16, mapping_layers=2)


def _randomise(G: Generator, seed: int = 0) -> Generator:
    """Give constant-initialised parameters random values (like the fixtures) so errors show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        G.mapping.w_avg.copy_(torch.randn(G.w_dim, generator=gen))
    return G.eval().requires_grad_(False)


VARIANTS = {
    "skip": {},
    "orig": {"architecture": "orig"},
    "resnet": {"architecture": "resnet"},
    "conditional": {"c_dim": 3},
    "grayscale": {"img_channels": 1},
    "portrait": {"square": False, "img_resolution": 32},
    "deep_mapping": {"mapping_layers": 5, "mapping_lr_multiplier": 0.05},
    "clamped_fp16cfg": {"conv_clamp": 0.5, "num_fp16_res": 2},
}


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("flat", [False, True])
def test_variant_round_trips_through_official_pickle(tmp_path, name, flat):
    cfg = GeneratorConfig(**{**BASE, **VARIANTS[name]})
    G = _randomise(Generator(cfg))
    path = tmp_path / "snap.pkl"
    path.write_bytes(nvidia_pickle_bytes(G, init_kwargs=official_init_kwargs(G, flat=flat)))
    G2 = load_checkpoint(path).generator
    assert G2.cfg == cfg
    z = torch.randn(3, cfg.z_dim)
    c = torch.eye(cfg.c_dim)[[0, 2, 1]] if cfg.c_dim else None
    a = G(z, c, truncation_psi=0.6)
    b = G2(z, c, truncation_psi=0.6)
    assert a.shape == (3, cfg.img_channels, cfg.img_height, cfg.img_width)
    assert torch.equal(a, b)
    # the fused and non-fused modulated convolutions agree
    torch.testing.assert_close(
        G.synthesis(G.mapping(z, c), fused_modconv=True), G.synthesis(G.mapping(z, c), fused_modconv=False),
        rtol=1e-4, atol=1e-4,
    )


def test_architectures_differ_and_have_expected_modules():
    mods = {}
    for arch in ("skip", "orig", "resnet"):
        G = Generator(GeneratorConfig(**BASE, architecture=arch))
        mods[arch] = {k for k, _ in G.named_modules()}
    assert "synthesis.b8.torgb" in mods["skip"] and "synthesis.b8.torgb" not in mods["orig"]
    assert "synthesis.b16.torgb" in mods["orig"]
    assert "synthesis.b8.skip" in mods["resnet"] and "synthesis.b8.skip" not in mods["skip"]


@pytest.mark.parametrize("res, square, num_ws", [(16, True, 6), (64, True, 10), (128, False, 12), (1024, True, 18)])
def test_num_ws_is_derived(res, square, num_ws):
    cfg = GeneratorConfig(z_dim=4, w_dim=4, img_resolution=res, square=square, channel_base=4096, channel_max=4)
    assert cfg.num_ws == num_ws
    assert Generator(cfg).num_ws == num_ws


def test_truncation_and_cutoff():
    G = _randomise(Generator(GeneratorConfig(**BASE)))
    z = torch.randn(2, 16)
    ws1 = G.mapping(z, None)
    ws_half = G.mapping(z, None, truncation_psi=0.5)
    torch.testing.assert_close(ws_half, G.w_avg + 0.5 * (ws1 - G.w_avg))
    ws_cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(ws_cut[:, :3], ws_half[:, :3])
    torch.testing.assert_close(ws_cut[:, 3:], ws1[:, 3:])
    assert torch.equal(G.mapping(z, None, truncation_psi=0.0)[0, 0], G.w_avg)


def test_noise_modes():
    G = _randomise(Generator(GeneratorConfig(**BASE)))
    ws = G.mapping(torch.randn(1, 16), None)
    const_a, const_b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(const_a, const_b)
    torch.manual_seed(0)
    rand_a = G.synthesis(ws, noise_mode="random")
    torch.manual_seed(1)
    rand_b = G.synthesis(ws, noise_mode="random")
    assert not torch.equal(rand_a, rand_b)
    none = G.synthesis(ws, noise_mode="none")
    assert not torch.equal(none, const_a)
    with torch.no_grad():
        for buf in G.noise_buffers().values():
            buf.zero_()
    torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), none)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="loud")


def test_conv_clamp_is_applied():
    G = _randomise(Generator(GeneratorConfig(**BASE, conv_clamp=0.05)))
    x = torch.randn(2, 16, 4, 4) * 10
    y = G.synthesis.b4.conv1(x, torch.randn(2, 16))
    assert y.abs().max() <= 0.05 + 1e-6
    rgb = G.synthesis.b4.torgb(x, torch.randn(2, 16))
    assert rgb.abs().max() <= 0.05 + 1e-6


def test_fp16_never_used_on_cpu():
    G = _randomise(Generator(GeneratorConfig(**BASE, num_fp16_res=4)))
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.dtype)) for m in G.synthesis.modules()
             if type(m).__name__ == "SynthesisLayer"]
    G(torch.randn(1, 16), None)
    for h in hooks:
        h.remove()
    assert seen and all(d == torch.float32 for d in seen)


def test_gradient_to_ws_is_identical_for_both_modconv_paths():
    G = _randomise(Generator(GeneratorConfig(**BASE)))
    ws = G.mapping(torch.randn(1, 16), None).detach()
    grads = []
    for fused in (True, False):
        w = ws.clone().requires_grad_(True)
        G.synthesis(w, fused_modconv=fused).square().mean().backward()
        grads.append(w.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_config_normalises_nested_and_flat_kwargs(caplog):
    nested = {"z_dim": 8, "w_dim": 8, "c_dim": 0, "img_resolution": 32, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 2}, "synthesis_kwargs": {"channel_base": 256, "channel_max": 8,
                                                                        "num_fp16_res": 1, "conv_clamp": 256}}
    flat = {"z_dim": 8, "w_dim": 8, "c_dim": 0, "img_resolution": 32, "img_channels": 3,
            "mapping_kwargs": {"num_layers": 2}, "channel_base": 256, "channel_max": 8, "num_fp16_res": 1,
            "conv_clamp": 256, "fused_modconv_default": "inference_only"}
    a = GeneratorConfig.from_init_kwargs(nested)
    b = GeneratorConfig.from_init_kwargs(flat)
    assert a == b and a.conv_clamp == 256.0 and a.mapping_layers == 2
    human = GeneratorConfig.from_init_kwargs({**nested, "square": False})
    assert (human.img_height, human.img_width) == (32, 16)
    with caplog.at_level(logging.WARNING):
        GeneratorConfig.from_init_kwargs({**nested, "mystery": 1})
    assert "mystery" in caplog.text
    assert GeneratorConfig.from_dict(a.to_dict()) == a


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"img_resolution": 48}, "power of two"),
        ({"architecture": "unet"}, "architecture"),
        ({"num_fp16_res": -1}, "num_fp16_res"),
        ({"channel_base": 8}, "zero channels"),
        ({"activation": "gelu9"}, "activation"),
    ],
)
def test_invalid_configs(bad, message):
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**{**BASE, **bad})
    with pytest.raises(ValueError, match="lack"):
        GeneratorConfig.from_init_kwargs({"z_dim": 8})


def test_input_shape_errors():
    G = Generator(GeneratorConfig(**BASE, c_dim=2))
    with pytest.raises(ValueError, match="z must have shape"):
        G.mapping(torch.randn(1, 5), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="conditional"):
        G.mapping(torch.randn(1, 16), None)
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesis(torch.randn(1, 3, 16))


def test_protocol3_pickle_with_ordered_dicts(tmp_path):
    """Released 2020/21 snapshots: protocol 3, GLOBAL opcodes, builtins.set for the buffer set."""
    G = _randomise(Generator(GeneratorConfig(**BASE)))
    path = tmp_path / "old.pkl"
    path.write_bytes(nvidia_pickle_bytes(G, protocol=3))
    assert b"builtins\nset" in path.read_bytes() or b"set" in path.read_bytes()
    G2 = load_checkpoint(path).generator
    z = torch.randn(1, 16)
    assert torch.equal(G(z, None), G2(z, None))


def test_numpy2_scalar_names_are_accepted(tmp_path):
    """Pickles written under numpy >= 2 name numpy._core.multiarray.scalar (fixtures use numpy.core)."""
    import numpy as np

    G = _randomise(Generator(GeneratorConfig(**BASE)))
    kwargs = official_init_kwargs(G)
    kwargs["mapping_kwargs"]["lr_multiplier"] = np.float64(0.01)
    data = nvidia_pickle_bytes(G, init_kwargs=kwargs)
    assert b"numpy._core.multiarray" in data or b"numpy._core" in data
    path = tmp_path / "np2.pkl"
    path.write_bytes(data)
    G2 = load_checkpoint(path).generator
    assert G2.cfg.mapping_lr_multiplier == 0.01
    z = torch.randn(1, 16)
    assert torch.equal(G(z, None), G2(z, None))
