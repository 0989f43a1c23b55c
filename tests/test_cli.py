"""The insetgan command line: outputs, reports, and one-line errors on bad input."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from insetgan.networks.config import GeneratorConfig
from insetgan.networks.generator import Generator
from tests.cli_run import assert_one_line_error, run, run_subprocess
from tests.conftest import fixture_path
from tests.pickles import nvidia_pickle_bytes, official_init_kwargs


def test_generate_writes_images_grid_report_and_raw(tmp_path):
    out = tmp_path / "out"
    proc = run_subprocess("generate", "--network", fixture_path("rosinality_face64.pt"), "--seeds", "0-1,3",
               "--trunc", "0.7", "--raw", "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["grid.png", "report.json", "seed0000.npy", "seed0000.png", "seed0001.npy", "seed0001.png",
                     "seed0003.npy", "seed0003.png"]
    ref = np.load(fixture_path("rosinality_face64_ref.npz"))
    for row, seed in ((0, 0), (1, 1), (3, 3)):
        raw = np.load(out / f"seed{seed:04d}.npy")
        np.testing.assert_allclose(raw, ref["img_psi07"][row], rtol=1e-4, atol=1e-4)
        png = np.asarray(Image.open(out / f"seed{seed:04d}.png"))
        expected = np.clip(ref["img_psi07"][row] * 127.5 + 128, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        assert png.shape == (64, 64, 3)
        assert np.abs(png.astype(int) - expected.astype(int)).max() <= 1
    report = json.loads((out / "report.json").read_text())
    assert report["seeds"] == [0, 1, 3] and report["inputs"]["format"] == "rosinality"
    assert report["settings"]["truncation_psi"] == 0.7 and len(report["timings_s"]["per_seed"]) == 3
    assert "torch" in report["versions"]
    grid = Image.open(out / "grid.png")
    assert grid.size == (2 * 64 + 2, 2 * 64 + 2)
    assert not list(out.glob(".*tmp"))


def test_generate_portrait_model(tmp_path):
    proc = run("generate", "--network", fixture_path("sghuman_body64x32.pkl"), "--seeds", "2",
               "--noise-mode", "none", "--outdir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "seed0002.png").size == (32, 64)


def test_inspect_json_and_text():
    proc = run_subprocess("inspect", fixture_path("sghuman_body64x32.pkl"), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["format"] == "nvidia-pkl" and info["resolution"] == {"height": 64, "width": 32}
    assert info["num_ws"] == 10 and info["mapping_layers"] == 8 and info["parameters"] == 374968
    assert info["channels"] == {"4": 64, "8": 64, "16": 64, "32": 64, "64": 32}
    assert info["conv_clamp"] == 256 and info["fp16_resolutions"] == [32, 64]
    text = run("inspect", fixture_path("rosinality_face64.pt")).stdout
    assert "rosinality" in text and "64x64" in text and "num_ws        10" in text


def test_convert_then_generate_same_pixels(tmp_path):
    dst = tmp_path / "face.safetensors"
    assert run_subprocess("convert", fixture_path("sg2ada_face64.pkl"), dst).returncode == 0
    assert json.loads(run("inspect", dst, "--json").stdout)["format"] == "insetgan-safetensors"
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("generate", "--network", fixture_path("sg2ada_face64.pkl"), "--seeds", "5", "--outdir", a).returncode == 0
    assert run("generate", "--network", dst, "--seeds", "5", "--outdir", b).returncode == 0
    assert (a / "seed0005.png").read_bytes() == (b / "seed0005.png").read_bytes()
    half = tmp_path / "half.safetensors"
    assert run("convert", "--fp16", fixture_path("sg2ada_face64.pkl"), half).returncode == 0
    assert half.stat().st_size < 0.6 * dst.stat().st_size


@pytest.fixture
def bad_files(tmp_path):
    files = {}
    files["empty"] = tmp_path / "empty.pkl"
    files["empty"].write_bytes(b"")
    data = fixture_path("sg2ada_face64.pkl").read_bytes()
    files["truncated"] = tmp_path / "trunc.pkl"
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["png"] = tmp_path / "photo.pkl"
    Image.new("RGB", (8, 8)).save(files["png"], format="PNG")
    G = Generator(GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8))
    files["no_gema"] = tmp_path / "nogema.pkl"
    files["no_gema"].write_bytes(nvidia_pickle_bytes(G, omit=("G_ema",)))
    kwargs = official_init_kwargs(G)
    kwargs["synthesis_kwargs"]["channel_max"] = 4
    files["shapes"] = tmp_path / "shapes.pkl"
    files["shapes"].write_bytes(nvidia_pickle_bytes(G, init_kwargs=kwargs))
    return files


@pytest.mark.parametrize(
    "case, pattern",
    [("empty", "empty"), ("truncated", "truncated"), ("png", "PNG image"), ("no_gema", "G_ema"), ("shapes", "shape"),
     ("missing", "no such file")],
)
def test_generate_bad_network_files(tmp_path, bad_files, case, pattern):
    path = bad_files.get(case, tmp_path / "missing.pkl")
    out = tmp_path / "out"
    assert_one_line_error(run("generate", "--network", path, "--seeds", "0", "--outdir", out), pattern)
    assert not out.exists()


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--seeds", "3-1"], "end before start"),
        (["--seeds", "a,b"], "invalid seed range"),
        (["--seeds", "0", "--noise-mode", "loud"], "noise-mode"),
        (["--seeds", "0", "--class", "2"], "unconditional"),
        (["--seeds", "0", "--trunc-cutoff", "99"], "cutoff"),
    ],
)
def test_generate_bad_arguments(tmp_path, args, pattern):
    out = tmp_path / "out"
    proc = run("generate", "--network", fixture_path("rosinality_face64.pt"), *args, "--outdir", out)
    assert_one_line_error(proc, pattern)
    assert not out.exists()


def test_malicious_pickle_via_cli(tmp_path):
    from tests.pickles import Reduce

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    import pickle

    evil.write_bytes(pickle.dumps({"G_ema": Reduce(os.system, f"touch {marker}")}))
    assert_one_line_error(run("inspect", evil), "posix.system")
    assert not marker.exists()


def test_debug_shows_traceback(tmp_path):
    proc = run_subprocess("--debug", "inspect", tmp_path / "missing.pkl")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_doctor_reports_active_paths(tmp_path):
    proc = run("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["devices"]["cpu"]["active"] == "cpp"
    assert info["devices"]["cpu"]["ops"] == {"upfirdn2d": "cpp", "bias_act": "cpp", "filtered_lrelu": "cpp"}
    assert info["reference_only_ops"] == []
    assert "filtered_lrelu=cpp" in run("doctor").stdout
    forced = run_subprocess("doctor", "--json", env={**os.environ, "INSETGAN_OPS": "ref"})
    assert json.loads(forced.stdout)["devices"]["cpu"]["active"] == "ref"
    assert json.loads(forced.stdout)["devices"]["cpu"]["ops"]["filtered_lrelu"] == "ref"


def test_models_lists_the_builtin_models_as_a_process():
    proc = run_subprocess("models", "--json")
    assert proc.returncode == 0, proc.stderr
    names = {m["name"] for m in json.loads(proc.stdout)}
    assert {"default-body", "default-face", "default-shoes"} <= names
