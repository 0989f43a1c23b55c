"""Malicious and malformed checkpoints are refused without executing anything."""
from __future__ import annotations

import argparse
import builtins
import os
import pickle
import subprocess

import pytest
import torch

from insetgan.networks.checkpoints import detect_format, load_checkpoint
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.errors import CheckpointError, UnsafePickleError
from insetgan.networks.generator import Generator
from tests.conftest import fixture_path
from tests.pickles import Reduce, nvidia_pickle_bytes, official_globals

SMALL = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8, mapping_layers=2)


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make_payload, global_name",
    [
        (lambda m: Reduce(os.system, f"touch {m}"), "posix.system"),
        (lambda m: Reduce(builtins.eval, f"open({str(m)!r}, 'w').write('x')"), "builtins.eval"),
        (lambda m: Reduce(builtins.exec, f"open({str(m)!r}, 'w').write('x')"), "builtins.exec"),
        (lambda m: Reduce(subprocess.Popen, ["touch", str(m)]), "subprocess.Popen"),
    ],
)
def test_malicious_globals_are_refused(tmp_path, make_payload, global_name):
    marker = tmp_path / "pwned"
    payload = {"G_ema": make_payload(marker)}
    path = _write(tmp_path, "evil.pkl", pickle.dumps(payload, protocol=4))
    with pytest.raises(UnsafePickleError, match=global_name.replace(".", r"\.")):
        load_checkpoint(path)
    assert not marker.exists()


def test_protocol0_text_pickle_attack_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    data = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    path = _write(tmp_path, "evil.pkl", b"\x80\x02" + data)
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_module_src_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    G = Generator(SMALL).eval()
    src = f"open({str(marker)!r}, 'w').write('executed')\nimport os\nos.system('touch {marker}')\n"
    path = _write(tmp_path, "snap.pkl", nvidia_pickle_bytes(G, module_src=src))
    G2 = load_checkpoint(path).generator  # loads the weights, ignores the source text
    assert not marker.exists()
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(G(z, None), G2(z, None))


def test_unknown_network_class_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    G = Generator(SMALL).eval()
    src = f"open({str(marker)!r}, 'w').write('executed')\n"
    path = _write(tmp_path, "snap.pkl", nvidia_pickle_bytes(G, module_src=src, class_name="Backdoor"))
    with pytest.raises(CheckpointError, match="Backdoor"):
        load_checkpoint(path)
    assert not marker.exists()


def test_malicious_storage_blob_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Reduce(os.system, f"touch {marker}"), protocol=2)
    with official_globals():
        evil = Reduce(torch.storage._load_from_bytes, blob)
        data = pickle.dumps({"G_ema": evil}, protocol=4)
    path = _write(tmp_path, "evil.pkl", data)
    with pytest.raises(UnsafePickleError):
        load_checkpoint(path)
    assert not marker.exists()


def test_malicious_torch_save_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "x": Reduce(os.system, f"touch {marker}")}, path)
    with pytest.raises(UnsafePickleError, match="weights-only"):
        load_checkpoint(path)
    assert not marker.exists()


def test_stylegan3_pickle_with_stylegan2_kwargs_is_refused(tmp_path):
    """A 'synthesis.input' layer makes a pickle StyleGAN3; StyleGAN2 options there are refused by name."""
    G = Generator(SMALL).eval()
    G.synthesis.input = torch.nn.Module()  # a StyleGAN3-style 'synthesis.input' layer
    G.synthesis.input.register_buffer("freqs", torch.randn(8, 2))
    path = _write(tmp_path, "sg3.pkl", nvidia_pickle_bytes(G))
    with pytest.raises(CheckpointError, match="unsupported StyleGAN3 generator option.*architecture='skip'"):
        load_checkpoint(path)


def test_format_detection_uses_content_not_extension(tmp_path):
    nv = fixture_path("sg2ada_face64.pkl")
    ros = fixture_path("rosinality_face64.pt")
    swapped_a = _write(tmp_path, "model.pt", nv.read_bytes())
    swapped_b = _write(tmp_path, "model.pkl", ros.read_bytes())
    assert load_checkpoint(swapped_a).format == "nvidia-pkl"
    assert load_checkpoint(swapped_b).format == "rosinality"
    assert detect_format(swapped_b) == "torch-zip"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "PNG image"),
        (b"hello world, not a model", "unrecognised"),
    ],
)
def test_bad_files(tmp_path, content, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(_write(tmp_path, "bad.pkl", content))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pkl")
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("name", ["sg2ada_face64.pkl", "rosinality_face64.pt"])
def test_truncated_file(tmp_path, name):
    data = fixture_path(name).read_bytes()
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(_write(tmp_path, name, data[: len(data) // 2]))


def test_pickle_without_g_ema(tmp_path):
    G = Generator(SMALL).eval()
    path = _write(tmp_path, "snap.pkl", nvidia_pickle_bytes(G, omit=("G_ema",)))
    with pytest.raises(CheckpointError, match="no 'G_ema'"):
        load_checkpoint(path)


def test_shapes_contradicting_config(tmp_path):
    G = Generator(SMALL).eval()
    from tests.pickles import official_init_kwargs

    kwargs = official_init_kwargs(G)
    kwargs["synthesis_kwargs"]["channel_max"] = 4  # the tensors were built with 8 channels
    path = _write(tmp_path, "snap.pkl", nvidia_pickle_bytes(G, init_kwargs=kwargs))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(path)


def test_rosinality_training_checkpoint(tmp_path):
    """A train.py checkpoint (no latent_avg, argparse args, optimiser states) loads; w_avg is estimated."""
    import numpy as np

    base = torch.load(fixture_path("rosinality_face64.pt"), weights_only=True)
    params = [torch.nn.Parameter(t.clone()) for t in list(base["g"].values())[:3]]
    opt = torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99))
    sum(p.sum() for p in params).backward()
    opt.step()
    ckpt = {
        "g": base["g"], "d": base["d"], "g_ema": base["g_ema"],
        "g_optim": opt.state_dict(), "d_optim": opt.state_dict(),
        "args": argparse.Namespace(size=64, batch=16, iter=800000, r1=10.0, path="lmdb"),
        "ada_aug_p": 0.12,
    }
    path = tmp_path / "100000.pt"
    torch.save(ckpt, path)
    loaded = load_checkpoint(path)
    assert any("estimated from 10000 samples" in n for n in loaded.notes)
    assert any("training checkpoint" in n for n in loaded.notes)
    G = loaded.generator
    ref = np.load(fixture_path("rosinality_face64_ref.npz"))
    with torch.no_grad():
        img = G(torch.tensor(ref["z"][:1]), None, noise_mode="const")
        np.testing.assert_allclose(img.numpy(), ref["img_psi1"][:1], rtol=1e-4, atol=1e-4)
        z = torch.randn(20000, 64, generator=torch.Generator().manual_seed(123))
        independent = G.mapping(z, None)[:, 0].mean(0)
    spread = G.mapping(z[:100], None)[:, 0].std(0).max()
    assert (G.w_avg - independent).abs().max() < 0.05 * spread + 1e-3


def test_namespace_with_dangerous_content_is_still_refused(tmp_path):
    marker = tmp_path / "pwned"
    base = torch.load(fixture_path("rosinality_face64.pt"), weights_only=True)
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": base["g_ema"], "args": argparse.Namespace(x=Reduce(os.system, f"touch {marker}"))}, path)
    with pytest.raises(UnsafePickleError):
        load_checkpoint(path)
    assert not marker.exists()
