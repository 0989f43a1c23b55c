"""StyleGAN3 (configs T and R): our network reproduces the official outputs of the fixtures, loads
and converts safely, honours the user transform, and refuses contradictory or unknown inputs."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from insetgan.errors import InsetganError
from insetgan.inversion.invert import InvertConfig, project, synthesize
from insetgan.io import to_uint8
from insetgan.networks import native
from insetgan.networks.checkpoints import load_checkpoint
from insetgan.networks.errors import CheckpointError, UnsafePickleError
from insetgan.networks.safe_pickle import safe_load_pickle
from insetgan.networks.stylegan3 import StyleGAN3Generator, build_stylegan3, design_lowpass_filter, input_transform
from insetgan.networks.stylegan3_config import StyleGAN3Config
from insetgan.networks.stylegan3_pickle import stylegan3_from_record
from tests.cli_run import assert_one_line_error, run
from tests.conftest import fixture_path
from tests.pickles import nvidia_pickle_bytes

IMG_TOL = dict(rtol=1e-4, atol=1e-4)
WS_TOL = dict(rtol=1e-5, atol=1e-5)
SG3 = ["sg3t_face64", "sg3r_face32"]


def _load(name: str) -> StyleGAN3Generator:
    G = load_checkpoint(fixture_path(f"{name}.pkl")).generator
    assert isinstance(G, StyleGAN3Generator)
    return G


def _ref(name: str):
    return np.load(fixture_path(f"{name}_ref.npz"))


def _how_made(name: str) -> dict:
    return json.loads(fixture_path(f"{name}_info.json").read_text())["how_made"]


def _record(name: str):
    return safe_load_pickle(fixture_path(f"{name}.pkl").read_bytes())["G_ema"]


def check_reference(G, ref, fused=None) -> None:
    """Every reference array, one seed at a time as they were made."""
    meta = json.loads(str(ref["meta"]))
    assert meta["stylegan3"] and G.num_ws == meta["num_ws"] and list(G.img_shape) == meta["image_shape"]
    for i in range(len(ref["seeds"])):
        z = torch.tensor(ref["z"][i: i + 1])
        np.testing.assert_allclose(G.mapping(z, None).numpy(), ref["ws_psi1"][i: i + 1], **WS_TOL)
        np.testing.assert_allclose(G.mapping(z, None, truncation_psi=0.7).numpy(), ref["ws_psi07"][i: i + 1],
                                   **WS_TOL)
        img = G(z, None, truncation_psi=1, noise_mode="const", fused_modconv=fused)
        np.testing.assert_allclose(img.numpy(), ref["img_psi1_const"][i: i + 1], **IMG_TOL)
        img = G(z, None, truncation_psi=0.7, noise_mode="const", fused_modconv=fused)
        np.testing.assert_allclose(img.numpy(), ref["img_psi07_const"][i: i + 1], **IMG_TOL)
        img = G.synthesis(torch.tensor(ref["ws_psi1"][i: i + 1]), noise_mode="none", fused_modconv=fused)
        np.testing.assert_allclose(img.numpy(), ref["img_ws_psi1_none"][i: i + 1], **IMG_TOL)


# Reproduction -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False, None])
@pytest.mark.parametrize("name", SG3)
def test_pickle_matches_reference(name, fused):
    ckpt = load_checkpoint(fixture_path(f"{name}.pkl"))
    assert ckpt.format == "nvidia-pkl" and isinstance(ckpt.generator, StyleGAN3Generator)
    with torch.no_grad():
        check_reference(ckpt.generator, _ref(name), fused)


@pytest.mark.parametrize("name", SG3)
def test_batched_call_matches_reference(name):
    G, ref = _load(name), _ref(name)
    with torch.no_grad():
        img = G(torch.tensor(ref["z"]), None, truncation_psi=0.7, noise_mode="const")
    np.testing.assert_allclose(img.numpy(), ref["img_psi07_const"], **IMG_TOL)


@pytest.mark.parametrize("name", SG3)
def test_safetensors_round_trip_reproduces_reference(tmp_path, name):
    G = _load(name)
    native.save(G, tmp_path / "g.safetensors", extra={"source": name})
    ckpt = load_checkpoint(tmp_path / "g.safetensors")
    assert ckpt.format == "insetgan-safetensors" and isinstance(ckpt.generator, StyleGAN3Generator)
    assert ckpt.metadata["architecture"] == "stylegan3" and ckpt.metadata["format_version"] == "2"
    assert ckpt.generator.cfg == G.cfg
    torch.testing.assert_close(ckpt.generator.synthesis.input.transform, G.synthesis.input.transform)
    with torch.no_grad():
        check_reference(ckpt.generator, _ref(name))


def test_safetensors_fp16_storage(tmp_path):
    G = _load("sg3r_face32")
    native.save(G, tmp_path / "half.safetensors", dtype=torch.float16)
    G2 = load_checkpoint(tmp_path / "half.safetensors").generator
    z = torch.tensor(_ref("sg3r_face32")["z"])
    with torch.no_grad():
        a, b = G(z, None), G2(z, None)
    assert (a - b).abs().max() < 0.05 * a.abs().max()


def test_noise_modes_are_accepted_and_change_nothing():
    G, ref = _load("sg3t_face64"), _ref("sg3t_face64")
    ws = torch.tensor(ref["ws_psi1"][:1])
    with torch.no_grad():
        images = [G.synthesis(ws, noise_mode=mode) for mode in ("const", "none", "random")]
    assert torch.equal(images[0], images[1]) and torch.equal(images[0], images[2])
    assert len(G.noise_buffers()) == 0
    with pytest.raises(InsetganError, match="noise_mode"):
        G.synthesis(ws, noise_mode="loud")
    with pytest.raises(InsetganError, match="no noise inputs"):
        G.synthesis(ws, noise=[torch.zeros(4, 4)])
    with pytest.raises(InsetganError, match="ws must have shape"):
        G.synthesis(ws[:, :10])


def test_gradients_reach_ws_and_float64():
    G = _load("sg3r_face32")
    ws = G.mapping(torch.tensor(_ref("sg3r_face32")["z"][:2]), None).requires_grad_(True)
    img = G.synthesis(ws)
    img.square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0
    G64 = _load("sg3r_face32").double()
    with torch.no_grad():
        out = G64.synthesis(ws.detach().double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), img.detach(), rtol=1e-4, atol=1e-4)


# Schedule, filters and the user transform -------------------------------------------------------
@pytest.mark.parametrize("name", SG3)
def test_schedule_and_designed_filters_match_the_pickle(name):
    rec = _record(name)
    cfg = StyleGAN3Config.from_init_kwargs(rec.init_kwargs(), rec.init_args())
    assert cfg.name == {"sg3t_face64": "stylegan3-t", "sg3r_face32": "stylegan3-r"}[name]
    assert [s.name for s in cfg.layers()] == rec.children()["synthesis"].state["layer_names"]
    stored = rec.state_dict()
    fresh = StyleGAN3Generator(cfg).state_dict()  # filters designed by us from the schedule
    for key, value in fresh.items():
        if key.endswith("_filter"):
            torch.testing.assert_close(value, stored[key], rtol=0, atol=1e-6)
    assert StyleGAN3Config.from_dict(json.loads(cfg.to_json())) == cfg


def test_radial_filter_has_unit_gain_and_symmetry():
    f = design_lowpass_filter(12, cutoff=2.5, width=7.0, fs=32, radial=True)
    assert f.shape == (12, 12) and abs(float(f.sum()) - 1) < 1e-6
    torch.testing.assert_close(f, f.t()) and torch.testing.assert_close(f, f.flip([0, 1]))
    assert design_lowpass_filter(1, 2.0, 1.0, 16) is None


@pytest.mark.parametrize("name", SG3)
def test_stored_transform_is_the_inverse_of_the_user_translate_rotate(name):
    how = _how_made(name)
    G = _load(name)
    expected = input_transform(how["translate"], how["rotate_deg"])
    torch.testing.assert_close(G.synthesis.input.transform, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(expected, torch.eye(3), atol=1e-3)


@pytest.mark.parametrize("name", SG3)
def test_identity_transform_gives_another_image(name):
    """The references were made with a non-identity transform: ours honours it."""
    G, ref = _load(name), _ref(name)
    ws = torch.tensor(ref["ws_psi1"][:1])
    with torch.no_grad():
        G.set_transform((0.0, 0.0), 0.0)
        torch.testing.assert_close(G.synthesis.input.transform, torch.eye(3))
        plain = G.synthesis(ws).numpy()
        how = _how_made(name)
        G.set_transform(how["translate"], how["rotate_deg"])
        again = G.synthesis(ws).numpy()
    assert np.abs(plain - ref["img_ws_psi1_none"][:1]).max() > 1e-2
    np.testing.assert_allclose(again, ref["img_ws_psi1_none"][:1], **IMG_TOL)


# Bad input --------------------------------------------------------------------------------------
def _pickle_with_kwargs(tmp_path, name: str, **changes) -> str:
    G = _load(name)
    kwargs = {**_record(name).init_kwargs(), **changes}
    path = tmp_path / f"{name}_bad.pkl"
    path.write_bytes(nvidia_pickle_bytes(G, init_kwargs=kwargs, class_name="Generator"))
    return str(path)


def test_our_pickle_writer_round_trips(tmp_path):
    """The official-format pickle written by the test helper loads back (so the bad cases below test one thing)."""
    G = load_checkpoint(_pickle_with_kwargs(tmp_path, "sg3r_face32")).generator
    with torch.no_grad():
        check_reference(G, _ref("sg3r_face32"))


@pytest.mark.parametrize("changes, message", [
    ({"channel_max": 32}, "does not match its config: missing 98 tensors (e.g. synthesis.L0_36_32.weight"),
    ({"conv_kernel": 3}, "has shape"),
    ({"use_radial_filters": False}, "filter synthesis.L0_36_128.down_filter has shape [12, 12]"),
    ({"img_resolution": 64}, "does not match its config"),
    ({"some_new_option": 1}, "unsupported StyleGAN3 generator option(s): some_new_option=1"),
    ({"mapping_kwargs": {"num_layers": 2, "embed_features": 8}}, "mapping_kwargs.embed_features"),
    ({"num_critical": 20}, "num_critical"),
])
def test_contradictory_or_unknown_kwargs_are_one_line_errors(tmp_path, changes, message):
    path = _pickle_with_kwargs(tmp_path, "sg3r_face32", **changes)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert_one_line_error(run("inspect", path), message.split("(")[0])


@pytest.mark.parametrize("attr, value", [("padding", [10, 10, 10, 10]), ("up_taps", 24), ("out_size", [40, 40])])
def test_recorded_attributes_must_match_the_schedule(attr, value):
    rec = _record("sg3t_face64")
    layer = rec.children()["synthesis"].children()["L0_36_64"]
    layer.state[attr] = value
    with pytest.raises(CheckpointError, match=f"synthesis.L0_36_64.{attr} is"):
        stylegan3_from_record(rec, "sg3t_face64.pkl")


def test_truncated_pickle(tmp_path):
    data = fixture_path("sg3t_face64.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    assert_one_line_error(run("inspect", path), "truncated")


def test_bad_safetensors_metadata(tmp_path):
    G = _load("sg3r_face32")
    data = native.to_bytes(G)
    good = tmp_path / "g.safetensors"
    good.write_bytes(data)
    tensors, meta = load_file(str(good)), native.read_metadata(good)
    save_file(tensors, str(tmp_path / "arch.safetensors"), metadata={**meta, "architecture": "stylegan9"})
    with pytest.raises(CheckpointError, match="unknown architecture 'stylegan9'"):
        load_checkpoint(tmp_path / "arch.safetensors")
    cfg = json.loads(meta["config"])
    cfg["margin_size"] = 12  # another schedule: the stored tensors no longer fit
    save_file(tensors, str(tmp_path / "cfg.safetensors"), metadata={**meta, "config": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_checkpoint(tmp_path / "cfg.safetensors")


def test_config_checks():
    with pytest.raises(InsetganError, match="unknown StyleGAN3 config keys: bogus"):
        StyleGAN3Config.from_dict({"bogus": 1})
    with pytest.raises(InsetganError, match="power of two"):
        StyleGAN3Config(img_resolution=48)
    with pytest.raises(InsetganError, match="zero channels"):
        StyleGAN3Config(img_resolution=64, channel_base=8, channel_max=8)
    cfg = StyleGAN3Config(z_dim=8, w_dim=8, img_resolution=16, channel_base=256, channel_max=16)
    G = build_stylegan3(cfg, StyleGAN3Generator(cfg).state_dict(), "fresh")
    assert G(torch.randn(2, 8), None).shape == (2, 3, 16, 16)


# generate ---------------------------------------------------------------------------------------
def test_generate_cli_reproduces_reference(tmp_path):
    out = tmp_path / "out"
    proc = run("generate", "--network", fixture_path("sg3t_face64.pkl"), "--seeds", "0-3", "--raw", "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    ref = _ref("sg3t_face64")
    for seed in range(4):
        np.testing.assert_allclose(np.load(out / f"seed{seed:04d}.npy"), ref["img_psi1_const"][seed], **IMG_TOL)
    report = json.loads((out / "report.json").read_text())
    assert report["architecture"] == "stylegan3" and report["num_ws"] == 16
    assert "translate" not in report["settings"]


def test_generate_translate_rotate(tmp_path):
    how = _how_made("sg3r_face32")
    net = fixture_path("sg3r_face32.pkl")
    same, plain = tmp_path / "same", tmp_path / "plain"
    shift = f"{how['translate'][0]!r},{how['translate'][1]!r}"
    proc = run("generate", "--network", net, "--seeds", "1", "--trunc", "0.7", "--translate", shift,
               "--rotate", repr(how["rotate_deg"]), "--raw", "--outdir", same)
    assert proc.returncode == 0, proc.stderr
    ref = _ref("sg3r_face32")
    np.testing.assert_allclose(np.load(same / "seed0001.npy"), ref["img_psi07_const"][1], **IMG_TOL)
    report = json.loads((same / "report.json").read_text())
    assert report["settings"]["translate"] == list(how["translate"])
    assert report["settings"]["rotate"] == how["rotate_deg"]
    assert run("generate", "--network", net, "--seeds", "1", "--trunc", "0.7", "--translate", "0,0", "--raw",
               "--outdir", plain).returncode == 0
    assert np.abs(np.load(plain / "seed0001.npy") - ref["img_psi07_const"][1]).max() > 1e-2


def test_generate_transform_options_errors(tmp_path):
    assert_one_line_error(run("generate", "--network", fixture_path("sg2ada_face64.pkl"), "--seeds", "0",
                              "--rotate", "10", "--outdir", tmp_path / "a"), "StyleGAN2")
    assert_one_line_error(run("generate", "--network", fixture_path("sg3r_face32.pkl"), "--seeds", "0",
                              "--translate", "0.1", "--outdir", tmp_path / "b"), "--translate takes two")
    assert_one_line_error(run("generate", "--network", fixture_path("sg3r_face32.pkl"), "--seeds", "0",
                              "--translate", "nan,0", "--outdir", tmp_path / "c"), "--translate takes two")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_convert_and_inspect_cli(tmp_path):
    dst = tmp_path / "sg3t.safetensors"
    proc = run("convert", fixture_path("sg3t_face64.pkl"), dst)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(run("inspect", dst, "--json").stdout)
    assert info["format"] == "insetgan-safetensors" and info["architecture"] == "stylegan3-t"
    assert info["parameters"] == 506517 and info["num_ws"] == 16 and len(info["layers"]) == 15
    assert info["layers"][-1]["name"] == "L14_64_3"
    text = run("inspect", fixture_path("sg3r_face32.pkl")).stdout
    assert "stylegan3-r" in text and "transform" in text
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("generate", "--network", dst, "--seeds", "2", "--outdir", a).returncode == 0
    assert run("generate", "--network", fixture_path("sg3t_face64.pkl"), "--seeds", "2", "--outdir", b).returncode == 0
    assert (a / "seed0002.png").read_bytes() == (b / "seed0002.png").read_bytes()


# The InsetGAN engine with a StyleGAN3 inset -----------------------------------------------------
def test_compose_with_a_stylegan3_face_inset(tmp_path):
    """A StyleGAN3 face on the StyleGAN2 body canvas: W+ has 16 rows, no noise maps, and the joint
    optimisation lowers L_coarse, L_border and the seam score."""
    out = tmp_path / "c"
    proc = run("--quiet", "compose", "--body", fixture_path("sghuman_body64x32.pkl"), "--face-net",
               fixture_path("sg3t_face64.pkl"), "--body-seed", 1, "--face-seed", 2, "--face-box", "8,2,16,16",
               "--steps", 20, "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((out / "report.json").read_text())
    before, after = rep["metrics"]["before"][0], rep["metrics"]["after"][0]
    assert after["face:coarse_l1"] < before["face:coarse_l1"]
    assert after["face:border"] < before["face:border"]
    assert after["face:seam"] < before["face:seam"]
    lat = np.load(out / "latents.npz")
    assert lat["canvas"].shape == (1, 10, 64) and lat["face"].shape == (1, 16, 64)
    with torch.no_grad():
        face = _load("sg3t_face64").synthesis(torch.from_numpy(lat["face"]))
    written = np.asarray(Image.open(out / "face.png")).astype(int)
    assert np.abs(to_uint8(face[0]).astype(int) - written).max() <= 1
    # The saved W+ resumes the run.
    proc = run("--quiet", "compose", "--body", fixture_path("sghuman_body64x32.pkl"), "--face-net",
               fixture_path("sg3t_face64.pkl"), "--body-latent", out / "latents.npz", "--face-latent",
               out / "latents.npz", "--face-box", "8,2,16,16", "--steps", 1, "--outdir", tmp_path / "c2")
    assert proc.returncode == 0, proc.stderr
    rep2 = json.loads((tmp_path / "c2" / "report.json").read_text())
    assert rep2["metrics"]["before"][0]["face:coarse_l1"] == pytest.approx(after["face:coarse_l1"], abs=2e-3)


def test_projection_into_a_stylegan3_network():
    """The projector runs without noise maps (StyleGAN3 has none) and moves towards the target."""
    G, ref = _load("sg3r_face32"), _ref("sg3r_face32")
    target = torch.tensor(ref["img_psi07_const"][:1])
    proj = project(G, target, InvertConfig(steps=8, w_avg_samples=500))
    assert proj.noise == [] and proj.ws.shape == (1, 16, 48)
    with torch.no_grad():
        err = (synthesize(G, proj.ws, proj.noise) - target).abs().mean()
        start = (G.synthesis(G.w_avg.reshape(1, 1, -1).expand(1, 16, -1)) - target).abs().mean()
    assert err < start


def test_numpy_arrays_in_pickles_both_spellings():
    """StyleGAN3 modules pickle numpy arrays: numpy 1 writes numpy.core.*, numpy 2 numpy._core.*; both load,
    object arrays do not."""
    rec = _record("sg3t_face64")  # written under numpy 1: numpy.core.multiarray._reconstruct
    assert rec.children()["synthesis"].children()["input"].state["size"].tolist() == [36, 36]
    data = pickle.dumps({"size": np.array([36, 36]), "rate": np.float64(16.0)}, protocol=4)
    assert (b"numpy._core" if np.__version__ >= "2" else b"numpy.core") in data
    out = safe_load_pickle(data)
    assert out["size"].tolist() == [36, 36] and out["rate"] == 16.0
    with pytest.raises(UnsafePickleError):
        safe_load_pickle(pickle.dumps(np.array([1, "x"], dtype=object), protocol=4))


def test_conditional_network_through_an_official_format_pickle(tmp_path):
    """A fresh conditional StyleGAN3-R network written as an official pickle loads back to the same outputs."""
    cfg = StyleGAN3Config(z_dim=8, w_dim=8, c_dim=3, img_resolution=16, channel_base=512, channel_max=16,
                          conv_kernel=1, use_radial_filters=True, num_fp16_res=0, conv_clamp=None)
    torch.manual_seed(0)
    G = StyleGAN3Generator(cfg).eval()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        G.synthesis.input.affine.bias.add_(torch.randn(4) * 0.1)
    kwargs = {"z_dim": 8, "w_dim": 8, "mapping_kwargs": {"num_layers": 2}, "channel_base": 512, "channel_max": 16,
              "conv_kernel": 1, "use_radial_filters": True, "num_fp16_res": 0, "conv_clamp": None, "c_dim": 3,
              "img_resolution": 16, "img_channels": 3}
    path = tmp_path / "cond.pkl"
    path.write_bytes(nvidia_pickle_bytes(G, init_kwargs=kwargs, class_name="Generator"))
    G2 = load_checkpoint(path).generator
    assert G2.cfg == cfg and "mapping.embed.weight" in G2.state_dict()
    z, c = torch.randn(2, 8), torch.eye(3)[[0, 2]]
    with torch.no_grad():
        torch.testing.assert_close(G2(z, c, truncation_psi=0.5), G(z, c, truncation_psi=0.5), rtol=0, atol=0)
    out = tmp_path / "gen"
    assert run("generate", "--network", path, "--seeds", "0", "--class", "2", "--outdir", out).returncode == 0
    assert_one_line_error(run("generate", "--network", path, "--seeds", "0", "--outdir", out), "--class")


@pytest.mark.parametrize("name", ["sg3r_face32"])
def test_projection_gains_10db_like_stylegan2(name):
    """The inversion bar of the StyleGAN2 fixtures: the default projector gains >= 10 dB PSNR over the w_avg start."""
    from insetgan.inversion import invert as inv
    from insetgan.inversion.perceptual import l1_ssim

    G = _load(name)
    torch.manual_seed(3)
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(1, G.z_dim), None, truncation_psi=0.7))
        w_avg, _ = inv.w_stats(G)
        start = inv.synthesize(G, w_avg.expand(1, G.num_ws, -1).contiguous(), None)
    proj = inv.project(G, target, inv.InvertConfig(), l1_ssim)
    with torch.no_grad():
        recon = inv.synthesize(G, proj.ws, proj.noise)
    p_start, p_proj = float(inv.psnr(start, target)), float(inv.psnr(recon, target))
    assert p_proj >= p_start + 10, (p_start, p_proj)
