"""compose / sample-bodies / refine-face end to end through the CLI, and the dlib face box."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from insetgan.jobs.sources import load_image, load_latent
from insetgan.method.boxes import DlibFaceBox
from insetgan.method.regions import box_mask
from insetgan.networks import native
from insetgan.networks.checkpoints import load_generator
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.generator import Generator
from tests.cli_run import assert_one_line_error, run, run_subprocess
from tests.conftest import REPO, SHARED, fixture_path

BODY, FACE = fixture_path("sghuman_body64x32.pkl"), fixture_path("sg2ada_face64.pkl")
PHOTO = SHARED / "data" / "ccp" / "photos" / "0001.jpg"
ASTRO = REPO / "tests" / "data" / "astronaut.jpg"
STANDARD = {"result.png", "canvas.png", "naive.png", "face.png", "face_start.png", "compare.png", "latents.npz",
            "report.json"}


def _png(path):
    return np.asarray(Image.open(path))


def test_compose_writes_everything_and_resumes_from_latents(tmp_path):
    out = tmp_path / "c"
    proc = run_subprocess("--quiet", "compose", "--body", BODY, "--face-net", FACE, "--body-seed", 1, "--face-seed", 2,
               "--face-box", "8,2,16,16", "--steps", 30, "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --quiet: no progress bar, no log
    assert STANDARD <= {p.name for p in out.iterdir()}
    rep = json.loads((out / "report.json").read_text())
    assert rep["steps"] == 30 and rep["config"]["name"] == "default"
    assert rep["perceptual"] == "l1-ssim"
    before, after = rep["metrics"]["before"][0], rep["metrics"]["after"][0]
    assert after["face:coarse_l1"] < before["face:coarse_l1"] and after["face:seam"] < before["face:seam"]
    assert rep["latents"]["body"] == [{"seed": 1}] and rep["inputs"]["body"]["format"] == "nvidia-pkl"
    assert rep["timings_s"]["per_step"] > 0 and rep["versions"]["torch"]
    assert _png(out / "result.png").shape == (64, 32, 3) and _png(out / "face.png").shape == (64, 64, 3)
    assert _png(out / "compare.png").shape[1] > 3 * 32
    lat = np.load(out / "latents.npz")
    assert lat["canvas"].shape == (1, 10, 64) and lat["face"].shape[0] == 1
    # The saved latents re-render the written face exactly (same constant noise).
    G = load_generator(FACE)
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(lat["face"]), noise_mode="const")
    from insetgan.io import to_uint8
    assert np.abs(to_uint8(img[0]).astype(int) - _png(out / "face.png").astype(int)).max() <= 1
    # Resume: a 0-step-like continuation from latents.npz starts where the last run ended.
    out2 = tmp_path / "c2"
    proc = run("--quiet", "compose", "--body", BODY, "--face-net", FACE, "--body-latent", out / "latents.npz",
               "--face-latent", out / "latents.npz", "--face-box", "8,2,16,16", "--steps", 1, "--outdir", out2)
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(_png(out2 / "canvas.png"), _png(out / "canvas.png")) is False
    rep2 = json.loads((out2 / "report.json").read_text())
    assert rep2["metrics"]["before"][0]["face:coarse_l1"] == pytest.approx(after["face:coarse_l1"], abs=2e-3)


def test_compose_with_shoes_and_fixed_prior(tmp_path):
    out = tmp_path / "s"
    proc = run("--quiet", "compose", "--body", BODY, "--face-net", FACE, "--shoes-net", FACE, "--detector", "fixed",
               "--steps", 10, "--preset", "paper", "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    assert {"shoes.png", "shoes_start.png"} <= {p.name for p in out.iterdir()}
    rep = json.loads((out / "report.json").read_text())
    for name in ("face", "shoes"):
        x, y, w, h, _ = rep["boxes"]["final"][name][0]
        assert x >= 0 and y >= 0 and x + w <= 32 + 1e-6 and y + h <= 64 + 1e-6
    assert any("local search" in n for n in rep["box_notes"])
    assert rep["config"]["name"] == "paper" and rep["steps"] == 10


def test_sample_bodies_batch(tmp_path):
    out = tmp_path / "b"
    proc = run_subprocess("--quiet", "sample-bodies", "--body", BODY, "--face-net", FACE, "--face-seed", 3, "--num", 3,
               "--face-box", "8,2,16,16", "--steps", 12, "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    assert {"result_000.png", "result_001.png", "result_002.png"} <= names and STANDARD <= names
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["metrics"]["after"]) == 3 and rep["latents"]["body"] == [{"seed": s} for s in range(3)]
    assert rep["config"]["inset_weights"]["face_l1"] > 0  # faces are kept close to the given face
    bodies = [_png(out / f"result_{i:03d}.png") for i in range(3)]
    assert not np.array_equal(bodies[0], bodies[1])


def test_refine_face_on_a_photo_leaves_the_outside_untouched(tmp_path):
    out = tmp_path / "r"
    box = "170,20,80,80"
    proc = run_subprocess("--quiet", "refine-face", PHOTO, "--face-net", FACE, "--face-box", box, "--steps", 8, "--search", 4,
               "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    original = np.asarray(Image.open(PHOTO).convert("RGB"))
    result = _png(out / "result.png")
    assert result.shape == original.shape
    from insetgan.method.regions import Box
    inside = box_mask(*original.shape[:2], Box.parse(box))[0, 0].numpy() > 0
    assert np.array_equal(result[~inside], original[~inside])
    assert not np.array_equal(result[inside], original[inside])
    rep = json.loads((out / "report.json").read_text())
    assert rep["face_start"]["chosen_seed"] in range(4) and len(rep["face_start"]["coarse_l1"]) == 4
    assert rep["config"]["inset_weights"]["face_l1"] == 0


def test_dlib_finds_the_face_in_a_small_full_body_photo():
    det = DlibFaceBox()
    img = load_image(str(PHOTO), torch.device("cpu"))
    box = det(img)
    assert box is not None
    cx, cy = box.center
    # The head of this standing person is in the upper fifth, centred horizontally.
    assert 150 < cx < 260 and 20 < cy < 110 and 30 < box.w < 120
    noise = torch.rand(1, 3, 64, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert det(noise) is None


def test_refine_face_detects_with_dlib(tmp_path):
    out = tmp_path / "d"
    proc = run("--quiet", "refine-face", PHOTO, "--face-net", FACE, "--steps", 3, "--search", 2, "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["box_notes"] == ["face box detected with dlib"]


def test_image_round_trip_and_latent_shapes(tmp_path):
    arr = np.random.RandomState(0).randint(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    from insetgan.io import to_uint8
    assert np.array_equal(to_uint8(load_image(str(tmp_path / "x.png"), torch.device("cpu"))[0]), arr)
    G = load_generator(FACE)
    np.save(tmp_path / "w.npy", np.zeros(G.w_dim, np.float32))
    assert load_latent(str(tmp_path / "w.npy"), G, "face").shape == (1, G.num_ws, G.w_dim)
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="shape"):
        load_latent(str(tmp_path / "bad.npy"), G, "face")


def _small_net(path, **kw):
    cfg = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, channel_base=128, channel_max=16,
                          mapping_layers=2, **kw)
    native.save(Generator(cfg).eval().requires_grad_(False), path)
    return path


@pytest.fixture(scope="module")
def gray_face(tmp_path_factory):
    return _small_net(tmp_path_factory.mktemp("g") / "gray.safetensors", img_channels=1)


@pytest.fixture(scope="module")
def cond_face(tmp_path_factory):
    return _small_net(tmp_path_factory.mktemp("c") / "cond.safetensors", c_dim=3)


def test_bad_inputs_give_one_line_errors(tmp_path, gray_face, cond_face):
    (tmp_path / "junk.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tiny.png")
    noise = np.random.RandomState(0).randint(0, 256, (96, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    G, Gb = load_generator(FACE), load_generator(BODY)
    np.savez(tmp_path / "other.npz", a=np.zeros(G.w_dim, np.float32), b=np.zeros(G.w_dim, np.float32))
    np.save(tmp_path / "nan.npy", np.full(G.w_dim, np.nan, np.float32))
    np.savez(tmp_path / "two.npz", canvas=np.zeros((2, Gb.num_ws, Gb.w_dim), np.float32),
             face=np.zeros((3, G.num_ws, G.w_dim), np.float32))
    common = ["--steps", 1, "--outdir", tmp_path / "o"]
    cases = [
        (["refine-face", tmp_path / "missing.png", "--face-net", FACE, "--face-box", "1,1,8,8"], "image not found"),
        (["refine-face", tmp_path / "junk.png", "--face-net", FACE, "--face-box", "1,1,8,8"], "cannot read image"),
        (["refine-face", PHOTO, "--face-net", FACE, "--face-box", "300,10,80,80"], "outside"),
        (["refine-face", PHOTO, "--face-net", gray_face, "--face-box", "170,20,80,80"], "channel"),
        (["compose", "--body", BODY, "--face-net", gray_face, "--face-box", "8,2,16,16"], "channel"),
        (["compose", "--body", BODY, "--face-net", FACE, "--face-box", "30,2,16,16"], "outside"),
        (["compose", "--body", BODY, "--face-net", FACE, "--face-box", "1,2,x,4"], "--face-box"),
        (["compose", "--body", BODY, "--face-net", FACE, "--face-seed", 1, "--face-latent", "x.npy"], "either"),
        (["compose", "--body", BODY, "--face-net", FACE, "--preset", "fastest"], "unknown preset"),
        (["compose", "--body", tmp_path / "nope.pkl", "--face-net", FACE], "not found"),
        (["compose", "--body", BODY, "--face-net", FACE, "--body-latent", tmp_path / "junk.png"], "latent"),
        (["refine-face", tmp_path / "tiny.png", "--face-net", FACE, "--face-box", "1,1,4,4"], "too small"),
        (["refine-face", tmp_path / "noise.png", "--face-net", FACE], "no face found"),
        (["compose", "--body", BODY, "--face-net", FACE, "--face-latent", tmp_path / "other.npz"], "no array 'face'"),
        (["compose", "--body", BODY, "--face-net", FACE, "--face-latent", tmp_path / "nan.npy"], "NaN"),
        (["compose", "--body", BODY, "--face-net", FACE, "--body-latent", tmp_path / "two.npz",
          "--face-latent", tmp_path / "two.npz", "--face-box", "8,2,16,16"], "3 candidates but 2"),
        (["compose", "--body", BODY, "--face-net", FACE, "--face-seed", str(2**32)], "face-seed"),
        (["compose", "--body", BODY, "--face-net", cond_face], "conditional"),
        (["compose", "--body", BODY, "--face-net", FACE, "--shoes-box", "1,1,8,8"], "need --shoes"),
        (["compose", "--body", BODY, "--face-net", FACE, "--device", "cuda"] if not torch.cuda.is_available()
         else ["compose", "--body", BODY, "--face-net", FACE, "--steps", "0"], "cuda" if not torch.cuda.is_available()
         else "steps"),
    ]
    for args, pattern in cases:
        proc = run(*args, *common)
        assert_one_line_error(proc, pattern)
    assert not (tmp_path / "o").exists()  # nothing written on failure
    assert_one_line_error(run("align", ASTRO, "--out", tmp_path / "nodir" / "a.png"), "existing folder")
