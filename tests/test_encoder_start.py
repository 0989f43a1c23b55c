"""Inversion from an encoder's start: the choice of start, the shipped face encoder, the bars, the CLI."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from insetgan import io as iio
from insetgan.errors import InsetganError
from insetgan.inversion import invert as inv
from insetgan.inversion import photos
from insetgan.inversion.embedding import face_identity
from insetgan.inversion.encoder import StartConfig, choose_start, encode, find_encoder
from insetgan.inversion.identity import DLIB_SAME_PERSON, FaceDescriptor, load_mobilefacenet
from insetgan.inversion.perceptual import l1_ssim
from insetgan.models import models_dir, resolve_network
from insetgan.networks import native
from insetgan.networks.checkpoints import load_generator
from insetgan.networks.encoder import build_encoder, config_for
from insetgan.networks.encoder_files import network_sha256, save_encoder
from tests.cli_run import assert_one_line_error, run
from tests.conftest import REPO, SHARED, fixture_path
from tests.test_encoder import tiny_generator

SHIPPED = models_dir() / "face-encoder.safetensors"
ASTRONAUT = REPO / "tests" / "data" / "astronaut.jpg"
# Never seen in training: the astronaut, and two adults among the photos the encoder's run holds out.
AAF = SHARED / "data" / "aaf" / "faces"
PHOTOS = [ASTRONAUT, AAF / "01144A18.jpg", AAF / "01454A21.jpg"]


@pytest.fixture(scope="module")
def face():
    return load_generator(resolve_network("default-face"))


def test_the_shipped_face_encoder_belongs_to_the_built_in_face(face):
    assert SHIPPED.stat().st_size < 20 * 2**20
    assert find_encoder(face, resolve_network("default-face")) == SHIPPED
    with safe_open(str(SHIPPED), "pt") as f:
        assert f.metadata()["generator_sha256"] == network_sha256(face)
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    start = choose_start(StartConfig(), face, resolve_network("default-face"))
    assert start.path == SHIPPED and start.describe()["encoder_sha256"] == iio.sha256(SHIPPED)


def test_start_choices_and_their_errors(face, tmp_path):
    fixture = load_generator(fixture_path("sg2ada_face64.pkl"))
    assert choose_start(StartConfig("mean"), face).encoder is None
    assert choose_start(StartConfig("auto"), fixture).describe() == {"init": "mean"}  # no encoder for it
    with pytest.raises(InsetganError, match="no encoder was trained for this network"):
        choose_start(StartConfig("encoder"), fixture)
    with pytest.raises(InsetganError, match="another generator"):
        choose_start(StartConfig("encoder", str(SHIPPED)), fixture)
    # auto: a file for another network of the job is passed over; the network's own is used
    assert choose_start(StartConfig("auto", str(SHIPPED)), fixture).describe() == {"init": "mean"}
    assert choose_start(StartConfig("auto", str(SHIPPED)), face).path == SHIPPED
    with pytest.raises(InsetganError, match="exclude each other"):
        StartConfig("mean", str(SHIPPED))
    with pytest.raises(InsetganError, match="init must be one of"):
        StartConfig("zero")


def test_projection_starts_exactly_at_the_given_latent():
    G = tiny_generator()
    init = G.mapping(torch.randn(2, G.z_dim), None).detach()
    assert torch.equal(inv.start_latent(G, init, 2, "wplus", G.w_avg.reshape(1, 1, -1)), init)
    assert inv.start_latent(G, init, 2, "w", G.w_avg.reshape(1, 1, -1)).shape == (2, 1, G.w_dim)
    with pytest.raises(InsetganError, match="start latent must be"):
        inv.start_latent(G, init[:1], 2, "wplus", G.w_avg.reshape(1, 1, -1))
    with pytest.raises(InsetganError, match="NaN"):
        inv.start_latent(G, init * float("nan"), 2, "wplus", G.w_avg.reshape(1, 1, -1))
    target = torch.zeros(2, 3, 16, 16)
    proj = inv.project(G, target, inv.refine_config(steps=1, lr=1e-12, optimize_noise=False), init_ws=init)
    torch.testing.assert_close(proj.ws, init, atol=1e-6, rtol=0)


def _w_avg_psnr(G, target: torch.Tensor) -> float:
    with torch.no_grad():
        w_avg = G.w_avg.reshape(1, 1, -1).expand(target.shape[0], G.num_ws, -1).contiguous()
        return float(inv.psnr(inv.synthesize(G, w_avg, None), target).min())


def test_the_encoder_path_gains_10db_on_the_generators_own_faces(face):
    """The projector's bar (+10 dB over the w_avg start, as for the optimisation from w_avg) through the
    shipped encoder and the default refinement, on faces the built-in generator draws (random noise)."""
    encoder = choose_start(StartConfig("encoder"), face, resolve_network("default-face")).encoder
    torch.manual_seed(5)
    with torch.no_grad():
        target = face.synthesis(face.mapping(torch.randn(3, face.z_dim), None, truncation_psi=0.7),
                                noise_mode="random")
    init = encode(encoder, face, target)
    proj = inv.project(face, target, inv.refine_config(), l1_ssim, init_ws=init)
    with torch.no_grad():
        p_enc = inv.psnr(inv.synthesize(face, init, None), target)
        p_ref = inv.psnr(inv.synthesize(face, proj.ws, proj.noise), target)
    p_mean = _w_avg_psnr(face, target)
    assert float(p_enc.min()) > p_mean + 3 and float(p_ref.min()) >= p_mean + 10, (p_mean, p_enc, p_ref)


def test_the_encoder_path_keeps_real_photos_the_same_person(face):
    """Photos never seen in training, refined with the identity loss as compose does: the dlib identity
    threshold (< 0.6, the same person), and far above the w_avg start."""
    encoder = choose_start(StartConfig("encoder"), face, resolve_network("default-face")).encoder
    desc, net = FaceDescriptor(), load_mobilefacenet()
    for path in PHOTOS:
        if not path.is_file():
            pytest.skip(f"{path} not found")
        target, metric_imgs, _ = photos.load_targets([str(path)], face, True, torch.device("cpu"))
        identity, _ = face_identity(net, metric_imgs[0], 64, torch.device("cpu"))
        init = encode(encoder, face, target)
        proj = inv.project(face, target, inv.refine_config(identity_weight=0.5), l1_ssim, identity=identity,
                           init_ws=init)
        with torch.no_grad():
            recon = inv.synthesize(face, proj.ws, proj.noise)
        p_mean, p_ref = _w_avg_psnr(face, target), float(inv.psnr(recon, target))
        assert p_ref >= p_mean + 7, (path.name, p_mean, p_ref)
        img = Image.fromarray(iio.to_uint8(recon[0])).resize((256, 256), Image.LANCZOS)
        dist = desc.distance(metric_imgs[0], img)
        assert dist is not None and dist < DLIB_SAME_PERSON, (path.name, dist)


def test_invert_cli_reports_the_start_and_writes_projected_w(tmp_path):
    out = tmp_path / "inv"
    r = run("--quiet", "invert", str(ASTRONAUT), "--network", "default-face", "--steps", "5", "--outdir", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["start"]["init"] == "encoder" and rep["start"]["encoder"].endswith("face-encoder.safetensors")
    assert rep["config"]["steps"] == 5 and rep["config"]["lr"] == inv.REFINE_LR and rep["config"]["w_noise"] == 0
    assert rep["metrics"]["start"]["psnr"][0] > 12  # the encoder's start, not w_avg's (about 10 dB)
    out2 = tmp_path / "mean"
    r = run("--quiet", "invert", str(ASTRONAUT), "--network", "default-face", "--steps", "5", "--init", "mean",
            "--outdir", str(out2))
    assert r.returncode == 0, r.stderr
    rep2 = json.loads((out2 / "report.json").read_text())
    assert rep2["start"] == {"init": "mean"} and rep2["config"]["lr"] == inv.InvertConfig.lr
    assert rep2["metrics"]["start"]["psnr"][0] < rep["metrics"]["start"]["psnr"][0]


def test_start_options_are_refused_in_one_line(tmp_path):
    G = tiny_generator()
    other = tmp_path / "other-encoder.safetensors"
    save_encoder(build_encoder(config_for(G, width=16), G, pretrained=False), other, network_sha256(G))
    fixture = str(fixture_path("sg2ada_face64.pkl"))
    photo = str(ASTRONAUT)
    cases = [(["invert", photo, "--network", fixture, "--init", "encoder"], "no encoder was trained"),
             (["invert", photo, "--network", fixture, "--encoder", str(other)], "another generator"),
             (["invert", photo, "--network", fixture, "--encoder", str(tmp_path / "none.safetensors")],
              "encoder file not found"),
             (["compose", "--face", photo, "--encoder", str(other), "--init", "mean"], "exclude each other"),
             (["compose", "--face", photo, "--encoder", str(other), "--invert-steps", "1"],
              "no photo of this job is inverted into the network it was trained for"),
             (["refine-face", photo, "--encoder", str(SHIPPED)], "no photo of this job is inverted"),
             (["invert", photo, "--network", fixture, "--encoder", fixture], "not an encoder file")]
    for args, message in cases:
        r = run("--quiet", *args, "--outdir", str(tmp_path / "out"))
        assert_one_line_error(r, message)
    assert not (tmp_path / "out").exists()


def test_an_encoder_beside_a_users_generator_is_found(tmp_path):
    G = tiny_generator()
    gpath = tmp_path / "mine.safetensors"
    native.save(G, gpath)
    save_encoder(build_encoder(config_for(G, width=16), G, pretrained=False), tmp_path / "mine-encoder.safetensors",
                 network_sha256(G))
    start = choose_start(StartConfig(), load_generator(gpath), gpath)
    assert start.path == tmp_path / "mine-encoder.safetensors"
