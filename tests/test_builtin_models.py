"""The built-in default models shipped in insetgan/assets/models: format, size, priors, quality, demo."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from insetgan import models
from insetgan.jobs import region_priors
from networks.checkpoints import load_checkpoint
from tests.conftest import REPO
from tests.test_cli import run

SHAPES = {"body": (3, 256, 128), "face": (3, 64, 64), "shoes": (3, 32, 32)}
SELFIE = REPO / "examples" / "selfie.jpg"


@pytest.fixture(scope="module")
def builtin():
    """The three built-in checkpoints, loaded by name."""
    return {role: load_checkpoint(models.resolve_network("default", role)) for role in SHAPES}


@pytest.mark.parametrize("role", sorted(SHAPES))
def test_builtin_file_is_small_fp16_and_the_right_shape(role, builtin):
    path = models.models_dir() / models.BUILTIN[role]
    assert path.stat().st_size <= 15 * 2**20
    tensors = load_file(str(path))
    floats = [t for t in tensors.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    G = builtin[role].generator
    assert G.img_shape == SHAPES[role]
    with torch.no_grad():
        img = G(torch.randn(2, G.z_dim), None, truncation_psi=0.7, noise_mode="const")
    assert torch.isfinite(img).all() and img.std() > 0.05  # trained, not collapsed to a flat image


def test_body_carries_region_priors_in_the_head_and_feet(builtin):
    pri = region_priors(dict(builtin["body"].metadata))
    fx, fy, fw, fh = pri["face"]
    sx, sy, sw, sh = pri["shoes"]
    assert 0.3 < fx + fw / 2 < 0.7 and fy + fh < 0.3  # face: centred, top of the canvas
    assert 0.3 < sx + sw / 2 < 0.7 and sy > 0.7  # shoes: centred, bottom
    meta = json.loads(builtin["body"].metadata["training"])
    assert meta["kimg"] > 0 and meta["config"]["channel_base"] > 0


def test_face_model_makes_faces_dlib_finds(builtin):
    """The face inset's quality bar on a smaller sample: dlib finds a face in most ψ=0.7 samples."""
    from insetgan.align import LandmarkDetector
    from scripts.eval_models import face_rate

    assert face_rate(builtin["face"].generator, 24, 0.7, LandmarkDetector()) >= 0.7


def test_demo_compose_on_the_default_models(tmp_path):
    """`make demo`'s command with the defaults (fewer inversion steps): every output, seam below naive paste."""
    out = tmp_path / "demo"
    r = run("--quiet", "compose", "--face", SELFIE, "--invert-steps", "60", "--outdir", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["inputs"]["body"]["path"].endswith("body.safetensors")
    assert rep["inputs"]["face"]["path"].endswith("face.safetensors")
    assert rep["region_priors"]["face"] and rep["identity"]["after"][0] is not None  # dlib found the face
    before, after = rep["metrics"]["before"][0]["face:seam"], rep["metrics"]["after"][0]["face:seam"]
    assert after < before
    with Image.open(out / "result.png") as im:
        assert im.size == (128, 256)
    assert (out / "compare.png").is_file() and (out / "latents.npz").is_file()
