"""Face identity: MobileFaceNet weights and embeddings, differentiable 5-point warp, identity loss, dlib metric."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from insetgan.images import open_rgb
from insetgan.inversion import align as al
from insetgan.inversion import identity as idt
from tests.conftest import SHARED

WEIGHTS = SHARED / "weights" / "mobilefacenet.pt"
FACES = SHARED / "data" / "aaf" / "faces"
SHA256 = "90a00ba1d8b0b688af3deb731ed53dca582e6106805d1bc3cfdef55f570493f4"
# Different people (one photo per person in All-Age-Faces), ages 4 to 70.
PEOPLE = ["00211A04", "00843A14", "02737A27", "04001A33", "05895A45", "07158A70", "09053A27", "11579A45"]

pytestmark = pytest.mark.skipif(not WEIGHTS.is_file() or not FACES.is_dir(), reason=f"{SHARED} not found")


def _tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, np.float32) / 127.5 - 1).permute(2, 0, 1)[None]


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum())


@pytest.fixture(scope="module")
def net():
    return idt.load_mobilefacenet()


@pytest.fixture(scope="module")
def det():
    return al.LandmarkDetector()


@pytest.fixture(scope="module")
def faces(det):
    """Per person: (photo, its mirror image, 5 points of each)."""
    out = []
    for name in PEOPLE:
        img = open_rgb(FACES / f"{name}.jpg")
        flip = ImageOps.mirror(img)
        p, q = idt.detect_five(img, detector=det), idt.detect_five(flip, detector=det)
        assert p is not None and q is not None, name
        out.append((img, flip, p, q))
    return out


def test_weights_packaged_load_strictly_and_embed(net):
    packaged = idt.default_weights()
    assert hashlib.sha256(packaged.read_bytes()).hexdigest() == SHA256
    assert packaged.read_bytes() == WEIGHTS.read_bytes()
    assert (packaged.parent / "LICENSE-mobilefacenet.txt").is_file()
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert set(state) == set(idt.MobileFaceNet().state_dict()) and len(state) == 307
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    emb = idt.embed(net, torch.rand(3, 3, 112, 112) * 2 - 1)
    assert emb.shape == (3, 128) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


def test_bad_weights_are_one_line_value_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        idt.load_mobilefacenet(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError) as exc:
        idt.load_mobilefacenet(tmp_path / "junk.pt")
    assert "\n" not in str(exc.value)


def test_flip_consistency_and_separation_of_people(net, faces):
    a = torch.cat([idt.embed(net, _tensor(al.align_five(img, p))) for img, _, p, _ in faces])
    b = torch.cat([idt.embed(net, _tensor(al.align_five(flip, q))) for _, flip, _, q in faces])
    flip_cos = (a * b).sum(1)
    others = (a @ a.T)[~torch.eye(len(a), dtype=torch.bool)]
    assert flip_cos.min() > 0.9, flip_cos
    assert others.mean() < flip_cos.mean() - 0.3 and others.max() < flip_cos.min()


def test_warp_five_matches_align_five(faces):
    for img, _, p, _ in faces[:3]:
        warped = ((idt.warp_five(_tensor(img), p)[0].permute(1, 2, 0) + 1) * 127.5).numpy()
        pil = np.asarray(al.align_five(img, p), np.float32)
        inside = np.asarray(al.align_five(Image.new("RGB", img.size, (255, 255, 255)), p))[..., 0] == 255
        diff = np.abs(warped - pil)[inside]
        assert inside.mean() > 0.7 and diff.mean() < 2.5 and np.median(diff) < 2.0, diff.mean()
    # A batch [B, 5, 2] of points and a high-resolution image (pooled before warping) agree too.
    img, _, p, _ = faces[0]
    big = img.resize((img.width * 5, img.height * 5), Image.BICUBIC)
    pb = idt.points_for_size(p, (img.height, img.width), (big.height, big.width))
    crops = idt.warp_five(torch.cat([_tensor(big)] * 2), np.stack([pb, pb]), size=112)
    assert crops.shape == (2, 3, 112, 112)
    assert (crops[0] - idt.warp_five(_tensor(img), p)[0]).abs().mean() < 0.03


def test_identity_loss_on_ffhq_aligned_faces(net, det, faces):
    size = 64
    (a, _, _, _), (b, _, _, _) = faces[3], faces[6]
    fa, fb = (al.align_ffhq(im, det.largest(im).landmarks, size) for im in (a, b))
    target = idt.identity_target(net, _tensor(fa), idt.detect_five(fa, detector=det))
    assert target.embedding.shape == (1, 128) and target.points.shape == (5, 2)
    x = torch.cat([_tensor(fa), _tensor(fb)]).requires_grad_(True)
    loss = idt.identity_loss(net, x, target)
    assert loss.shape == (2,) and loss[0] < 1e-4 and loss[1] > 0.5
    loss.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[1].abs().sum() > 0


def test_dlib_descriptor_metric(det, faces):
    fd = idt.FaceDescriptor(det)
    flips = [fd.distance(img, flip) for img, flip, _, _ in faces]
    desc = np.stack([fd.describe(img) for img, _, _, _ in faces])
    assert desc.shape == (len(faces), 128)
    others = np.linalg.norm(desc[:, None] - desc[None], axis=-1)[~np.eye(len(faces), dtype=bool)]
    assert max(flips) < idt.DLIB_SAME_PERSON and others.mean() > np.mean(flips) + 0.2
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (180, 160, 3), dtype=np.uint8))
    assert fd.describe(noise) is None and fd.distance(noise, faces[0][0]) is None
