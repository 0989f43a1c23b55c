"""GAN inversion: projector, pivotal tuning, noise maps, photo front end and the `invert` command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from insetgan.inversion import invert as inv
from insetgan.inversion import photos
from insetgan.inversion.perceptual import l1_ssim
from insetgan.networks.checkpoints import load_generator
from tests.cli_run import assert_one_line_error, run, run_subprocess
from tests.conftest import REPO, fixture_path

ASTRONAUT = REPO / "tests" / "data" / "astronaut.jpg"


@pytest.fixture(scope="module")
def G():
    return load_generator(fixture_path("sg2ada_face64.pkl"))


def _target(G, seed: int = 3, n: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim), None, truncation_psi=0.7)
        return G.synthesis(ws, noise_mode="random")  # noise the projector cannot copy from the buffers


def test_explicit_noise_maps_match_const_and_are_per_sample(G):
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    bufs = list(G.noise_buffers().values())
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode="const")
        same = G.synthesis(ws, noise=[b.expand(2, 1, *b.shape) for b in bufs])
        other = G.synthesis(ws, noise=[torch.stack([b, torch.randn_like(b)])[:, None] for b in bufs])
    torch.testing.assert_close(same, const)
    torch.testing.assert_close(other[0], const[0])
    assert (other[1] - const[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="noise must hold"):
        G.synthesis(ws, noise=bufs[:2])


def test_projection_gains_10db_and_pti_improves(G):
    target = _target(G)
    w_avg, _ = inv.w_stats(G)
    with torch.no_grad():
        start = inv.synthesize(G, w_avg.expand(1, G.num_ws, -1).contiguous(), None)
    proj = inv.project(G, target, inv.InvertConfig(), l1_ssim)
    with torch.no_grad():
        recon = inv.synthesize(G, proj.ws, proj.noise)
    p_start, p_proj = float(inv.psnr(start, target)), float(inv.psnr(recon, target))
    assert p_proj >= p_start + 10, (p_start, p_proj)
    tuned, hist = inv.pivotal_tuning(G, proj.ws, proj.noise, target, inv.PTIConfig(steps=100), l1_ssim)
    with torch.no_grad():
        p_pti = float(inv.psnr(inv.synthesize(tuned, proj.ws, proj.noise), target))
    assert p_pti > p_proj + 0.5, (p_proj, p_pti)
    assert hist[-1]["total"] < hist[0]["total"]
    # The original generator is untouched; with_noise renders the projection with the stored-noise path.
    assert all(not p.requires_grad for p in tuned.parameters())
    with torch.no_grad():
        torch.testing.assert_close(inv.synthesize(inv.with_noise(G, proj.noise), proj.ws, None), recon)


def test_w_mode_keeps_one_latent_and_batch_is_independent(G):
    target = _target(G, n=2)
    cfg = inv.InvertConfig(mode="w", steps=15, w_avg_samples=500)
    both = inv.project(G, target, cfg, l1_ssim)
    assert torch.equal(both.ws[:, 0], both.ws[:, -1])
    one = inv.project(G, target[1:], cfg, l1_ssim)
    # Same per-image optimisation; only the projector's latent noise draws differ by batch size.
    assert float((one.ws[0] - both.ws[1]).abs().mean()) < float((both.ws[0] - both.ws[1]).abs().mean())


def test_mask_ignores_everything_outside(G):
    target = _target(G)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :, :32] = 1
    other = target.clone()
    other[..., :, 32:] = -target[..., :, 32:]
    cfg = inv.InvertConfig(steps=10, w_avg_samples=500)
    a = inv.project(G, target, cfg, l1_ssim, mask=mask)
    b = inv.project(G, other, cfg, l1_ssim, mask=mask)
    torch.testing.assert_close(a.ws, b.ws)
    with pytest.raises(ValueError, match="mask is empty"):
        inv.project(G, target, cfg, l1_ssim, mask=torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="targets must be"):
        inv.project(G, target[..., :32], cfg, l1_ssim)


def test_noise_regularizer_penalises_correlated_noise():
    torch.manual_seed(0)
    white = [torch.randn(1, 1, 32, 32)]
    smooth = [torch.nn.functional.interpolate(torch.randn(1, 1, 8, 8), size=32, mode="bilinear")]
    assert float(inv.noise_regularizer(smooth)) > 20 * float(inv.noise_regularizer(white))


def test_person_crop_aspect_mask_and_reflection():
    photo = Image.fromarray(np.arange(60 * 40 * 3, dtype=np.uint8).reshape(60, 40, 3))
    mask = np.zeros((60, 40), np.uint8)
    mask[10:50, 25:39] = 255  # a person near the right edge: the window leaves the photo
    crop, mcrop = photos.person_crop(photo, 32, 16, Image.fromarray(mask))
    assert crop.size == (16, 32) and mcrop.size == (16, 32)
    m = np.asarray(mcrop) > 127
    assert m[:, 8].mean() > 0.8  # the person is centred
    assert not m[:, -1].any()  # outside the photo the mask is empty
    idx = photos._reflect_index(-3, 5, 4)
    assert idx.tolist() == [2, 1, 0, 0, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="mask is empty"):
        photos.person_crop(photo, 32, 16, Image.fromarray(np.zeros((60, 40), np.uint8)))


def test_invert_cli_writes_outputs_and_pti_generator(tmp_path, G):
    if not ASTRONAUT.exists():
        pytest.skip("astronaut photo missing")
    out = tmp_path / "inv"
    r = run_subprocess(*["--quiet", "invert", str(ASTRONAUT), "--network", str(fixture_path("sg2ada_face64.pkl")),
                        "--mode", "pti", "--steps", "60", "--pti-steps", "30", "--outdir", str(out)])
    assert r.returncode == 0, r.stderr
    for name in ("latents.npz", "projected_w.npz", "target.png", "reconstruction.png", "compare.png", "report.json", "tuned.safetensors"):
        assert (out / name).is_file(), name
    rep = json.loads((out / "report.json").read_text())
    m = rep["metrics"]
    assert m["tuned"]["psnr"][0] > m["projected"]["psnr"][0] > m["start"]["psnr"][0]
    assert rep["perceptual"] in ("l1-ssim", "lpips-vgg") and "identity_dlib" in m
    data = np.load(out / "latents.npz")
    assert data["ws"].shape == (1, G.num_ws, G.w_dim)
    tuned = load_generator(out / "tuned.safetensors")
    noise = [torch.from_numpy(data[f"noise_{i:02d}"]) for i in range(len(G.noise_buffers()))]
    with torch.no_grad():
        img = inv.synthesize(tuned, torch.from_numpy(data["ws"]), noise)
    recon = np.asarray(Image.open(out / "reconstruction.png"), dtype=np.float32)
    assert np.abs(recon - (img[0].permute(1, 2, 0).numpy() * 127.5 + 128).clip(0, 255)).mean() < 1.0
    # projected_w.npz is the official projector's file (key w, [1, num_ws, w_dim]) and feeds every latent option.
    with np.load(out / "projected_w.npz") as official:
        assert list(official) == ["w"] and official["w"].dtype == np.float32
        np.testing.assert_array_equal(official["w"], data["ws"])
    r = run(*["--quiet", "compose", "--body", str(fixture_path("sghuman_body64x32.pkl")),
             "--face-net", str(fixture_path("sg2ada_face64.pkl")), "--face-latent", str(out / "projected_w.npz"),
             "--face-box", "8,2,16,16", "--steps", "2", "--outdir", str(tmp_path / "c")])
    assert r.returncode == 0, r.stderr


def _bad_images(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)  # small file, 400 MP when decoded
    small_face = tmp_path / "small_face.png"
    Image.open(ASTRONAUT).convert("RGB").resize((128, 128), Image.LANCZOS).save(small_face)
    return {"corrupt": (corrupt, "cannot read image"), "empty": (empty, "cannot read image"),
            "text": (text, "cannot read image"), "huge": (huge, "too large"),
            "small face": (small_face, "too small to align")}


def test_invert_bad_inputs_one_line_errors(tmp_path):
    if not ASTRONAUT.exists():
        pytest.skip("astronaut photo missing")
    net = str(fixture_path("sg2ada_face64.pkl"))
    for what, (path, msg) in _bad_images(tmp_path).items():
        out = tmp_path / f"out_{what.replace(' ', '_')}"
        r = run(*["--quiet", "invert", str(path), "--network", net, "--steps", "2", "--outdir", str(out)])
        assert_one_line_error(r, msg)
        assert not out.exists(), what
    r = run(*["invert", str(ASTRONAUT), "--network", str(fixture_path("sghuman_body64x32.pkl")), "--steps", "2",
             "--outdir", str(tmp_path / "o")])
    assert_one_line_error(r, "square face network")


def test_compose_with_selfie_end_to_end_and_cache(tmp_path):
    if not ASTRONAUT.exists():
        pytest.skip("astronaut photo missing")
    body, face = str(fixture_path("sghuman_body64x32.pkl")), str(fixture_path("sg2ada_face64.pkl"))
    out = tmp_path / "me"
    args = ["--quiet", "compose", "--body", body, "--face-net", face, "--face", str(ASTRONAUT),
            "--face-box", "8,2,16,16", "--invert-steps", "30", "--steps", "4", "--outdir", str(out)]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    info = rep["inputs"]["face_photo"]
    assert info["cache"]["hit"] is False and (out / "cache" / info["cache"]["file"]).is_file()
    assert info["metrics"]["inverted"]["psnr"][0] > info["metrics"]["start"]["psnr"][0]
    assert rep["latents"]["face"] == {"inverted": str(ASTRONAUT)}
    assert rep["identity"]["same_person_below"] == 0.6 and len(rep["identity"]["after"]) == 1
    assert any(k.endswith("face_identity") for k in rep["losses"][-1])
    assert rep["config"]["inset_weights"]["face_identity"] == 0.5
    r = run(*args)
    assert r.returncode == 0, r.stderr
    again = json.loads((out / "report.json").read_text())
    assert again["inputs"]["face_photo"]["cache"]["hit"] is True
    assert again["inputs"]["face_photo"]["metrics"] == info["metrics"]


def test_selfie_in_sample_bodies_refine_face_and_outfit(tmp_path):
    if not ASTRONAUT.exists():
        pytest.skip("astronaut photo missing")
    body, face = str(fixture_path("sghuman_body64x32.pkl")), str(fixture_path("sg2ada_face64.pkl"))
    common = ["--invert-steps", "10", "--steps", "2", "--face-box", "8,2,16,16"]
    r = run(*["--quiet", "sample-bodies", "--body", body, "--face-net", face, "--face", str(ASTRONAUT), "--num", "2",
             *common, "--outdir", str(tmp_path / "s")])
    assert r.returncode == 0, r.stderr
    assert len(json.loads((tmp_path / "s" / "report.json").read_text())["identity"]["after"]) == 2
    photo = tmp_path / "photo.png"
    Image.open(ASTRONAUT).convert("RGB").resize((64, 128)).save(photo)
    r = run(*["--quiet", "refine-face", str(photo), "--face-net", face, "--reference", str(ASTRONAUT), *common,
             "--outdir", str(tmp_path / "r")])
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["config"]["coarse_size"] == 16 and "identity" in rep
    mask = tmp_path / "mask.png"
    m = np.zeros((128, 64), np.uint8)
    m[10:120, 16:48] = 255
    Image.fromarray(m).save(mask)
    r = run(*["--quiet", "compose", "--body", body, "--face-net", face, "--outfit", str(photo), "--outfit-mask",
             str(mask), *common, "--outdir", str(tmp_path / "o")])
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["latents"]["body"] == [{"inverted": str(photo)}] and rep["inputs"]["outfit"]["mask"] == str(mask)


def test_photo_options_reject_misuse(tmp_path):
    body, face = str(fixture_path("sghuman_body64x32.pkl")), str(fixture_path("sg2ada_face64.pkl"))
    base = ["compose", "--body", body, "--face-net", face, "--outdir", str(tmp_path / "x")]
    assert_one_line_error(run(*base, *["--face", face]), "takes a photo, not a checkpoint")
    assert_one_line_error(run(*base, *["--face", str(tmp_path / "none.jpg")]), "photo not found")
    assert_one_line_error(run(*base, *["--face", str(ASTRONAUT), "--face-seed", "3"]), "not both")
    assert_one_line_error(run(*base, *["--outfit-mask", str(ASTRONAUT)]), "needs --outfit")
    assert_one_line_error(run(*base, *["--outfit", str(ASTRONAUT), "--body-seed", "2"]), "not both")
    small_mask = tmp_path / "mask.png"
    Image.new("L", (10, 10), 255).save(small_mask)
    assert_one_line_error(run(*base, *["--outfit", str(ASTRONAUT), "--outfit-mask", str(small_mask),
                                       "--invert-steps", "2"]), "the mask is 10x10")
    refine = ["refine-face", str(ASTRONAUT), "--face-net", face, "--outdir", str(tmp_path / "x")]
    assert_one_line_error(run(*refine, *["--reference", str(ASTRONAUT), "--face-seed", "3"]), "not both")
    inv = ["invert", str(ASTRONAUT), "--network", face, "--steps", "2", "--outdir", str(tmp_path / "x")]
    assert_one_line_error(run(*inv, *["--no-align", "--identity-weight", "0.5"]), "needs --align")
    assert_one_line_error(run(*inv, *["--mask", str(tmp_path / "none.png")]), "image not found")
    assert not (tmp_path / "x").exists()


def test_failure_after_inversion_writes_nothing(tmp_path):
    """The selfie is inverted, then the face box is rejected: no output and no cache entry is left."""
    out = tmp_path / "o"
    r = run("--quiet", "compose", "--body", fixture_path("sghuman_body64x32.pkl"), "--face-net",
            fixture_path("sg2ada_face64.pkl"), "--face", ASTRONAUT, "--invert-steps", "3", "--face-box", "30,2,16,16",
            "--outdir", out)
    assert_one_line_error(r, "outside")
    assert not out.exists()
