"""The built-in default models shipped in insetgan/assets/models: format, size, priors, quality, demo."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from insetgan import models
from insetgan.eval import model_quality as quality
from insetgan.models import region_priors
from insetgan.networks.checkpoints import load_checkpoint
from tests.cli_run import run
from tests.conftest import REPO

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
    assert torch.isfinite(img).all() and img.std() > 0.1  # not a flat image
    assert (img[0] - img[1]).abs().mean() > 0.05  # two seeds give two different images


def test_body_carries_region_priors_in_the_head_and_feet(builtin):
    pri = region_priors(dict(builtin["body"].metadata))
    fx, fy, fw, fh = pri["face"]
    sx, sy, sw, sh = pri["shoes"]
    assert 0.3 < fx + fw / 2 < 0.7 and fy + fh < 0.3  # face: centred, top of the canvas
    assert 0.3 < sx + sw / 2 < 0.7 and sy > 0.7  # shoes: centred, bottom
    meta = json.loads(builtin["body"].metadata["training"])
    assert meta["kimg"] > 0 and meta["config"]["channel_base"] > 0


def test_face_model_learned_the_aligned_face_layout(builtin):
    """The face inset's mean sample has the FFHQ layout: skin in the centre brighter than the hair/top.

    (An untrained network gives ~0 here; the face-rate test below checks the faces themselves.)
    """
    G = builtin["face"].generator.float()
    z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean = G(z, None, truncation_psi=0.7, noise_mode="const").mean(dim=(0, 1))
    assert mean[24:44, 20:44].mean() - mean[:10].mean() > 0.15


class _TilesShuffled(torch.nn.Module):
    """A generator's samples cut into 4×4 tiles put back in a fixed shuffled order: the same pixels, no face layout."""

    def __init__(self, G: torch.nn.Module) -> None:
        super().__init__()
        self.G, self.z_dim = G, G.z_dim
        self.order = torch.randperm(16, generator=torch.Generator().manual_seed(0))

    def forward(self, z, c, **kwargs):
        img = self.G(z, c, **kwargs)
        n, ch, h, w = img.shape
        tiles = img.reshape(n, ch, 4, h // 4, 4, w // 4).permute(0, 1, 2, 4, 3, 5).reshape(n, ch, 16, h // 4, w // 4)
        tiles = tiles[:, :, self.order].reshape(n, ch, 4, 4, h // 4, w // 4)
        return tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, ch, h, w)


def test_face_model_passes_the_face_rate_bar(builtin):
    """Issue 14's bar on the shipped face model: dlib finds a face in >= 95 % of 64 samples (ψ 0.7, 4× upscaled).

    The same samples with their tiles shuffled (a negative control: the same pixels, no face layout)
    must mostly fail, so the rate measures faces and not the detector's leniency.
    """
    from insetgan.inversion.align import LandmarkDetector

    G = builtin["face"].generator.float()
    detector = LandmarkDetector()
    assert quality.face_rate(G, 64, 0.7, detector) >= 0.95
    assert quality.face_rate(_TilesShuffled(G), 64, 0.7, detector) <= 0.1


def test_body_model_draws_faces_in_the_head(builtin):
    """The shipped body has faces of its own: dlib finds one in the face-prior region of >= 10 % of 64 samples
    (ψ 0.7; 17 % measured, issue 14's bar is 30 %, the body shipped before it had 0 %) and in none of the same
    samples with their tiles shuffled (the control: the same pixels, no head where the prior expects it)."""
    from insetgan.inversion.align import LandmarkDetector

    G = builtin["body"].generator.float()
    prior = region_priors(dict(builtin["body"].metadata))["face"]
    detector = LandmarkDetector()
    assert quality.body_rate(G, 64, 0.7, prior, detector) >= 0.10
    assert quality.body_rate(_TilesShuffled(G), 64, 0.7, prior, detector) <= 0.02


def test_demo_compose_on_the_default_models(tmp_path):
    """`make demo`'s command on the defaults (fewer inversion steps): every output, seam below the naive paste's."""
    out = tmp_path / "demo"
    r = run("--quiet", "compose", "--face", SELFIE, "--invert-steps", "60", "--outdir", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["inputs"]["body"]["path"].endswith("body.safetensors")
    assert rep["inputs"]["face"]["path"].endswith("face.safetensors")
    assert rep["region_priors"]["face"] == [0.3709, 0.0411, 0.2687, 0.1343]  # the body network's prior
    assert rep["identity"]["same_person_below"] == 0.6 and len(rep["identity"]["after"]) == 1
    before, after = rep["metrics"]["before"][0]["face:seam"], rep["metrics"]["after"][0]["face:seam"]
    assert after < before
    with Image.open(out / "result.png") as im:
        assert im.size == (128, 256)
    assert (out / "compare.png").is_file() and (out / "latents.npz").is_file()
