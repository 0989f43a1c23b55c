"""The image → W+ encoder: shapes, its file and generator hash, training, resume, the feature distance, CLI."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from insetgan.errors import InsetganError
from insetgan.inversion.encoder import encode, encoder_for, encoder_name, find_encoder
from insetgan.inversion.encoder_run import eval_set, evaluate, make_context
from insetgan.inversion.encoder_training import (EncoderTrainConfig, active_rows, load_state, new_state, save_state,
                                                 train_step)
from insetgan.inversion.perceptual import DeepFeatureDistance, l1_ssim, load_perceptual
from insetgan.networks import encoder_files, native
from insetgan.networks.checkpoints import load_generator
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.encoder import Encoder, EncoderConfig, build_encoder, config_for, default_groups
from insetgan.networks.encoder_files import MAX_ENCODER_BYTES, load_encoder, network_sha256, read_encoder, save_encoder
from insetgan.networks.generator import Generator
from insetgan.train.data import ImageSet
from tests.cli_run import assert_one_line_error, run
from tests.conftest import REPO

FACE = REPO / "insetgan" / "assets" / "models" / "face.safetensors"
CPU = torch.device("cpu")
# Fast settings: samples only unless a test adds photos, no feature distance, all rows from the start.
FAST = dict(batch_fake=4, batch_real=0, lr=1e-3, width=16, unlock_kimg=0, holdout=4, perceptual_weight=0)


def tiny_generator(seed: int = 0) -> Generator:
    """A random 16×16 StyleGAN2 generator (6 W+ rows of 32) with its w_avg estimated."""
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig(z_dim=32, w_dim=32, img_resolution=16, img_channels=3, mapping_layers=2,
                                  channel_base=256, channel_max=32, num_fp16_res=0)).eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(1000, 32), None)[:, 0].mean(0))
    return G


def tiny_data(n: int = 12, kind: str = "bodies") -> ImageSet:
    g = torch.Generator().manual_seed(1)
    return ImageSet((torch.rand(n, 3, 16, 16, generator=g) * 255).to(torch.uint8), {"kind": kind})


def data_folder(path: Path, n: int = 12, side: int = 16) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path / f"{i:05d}.png")
    (path / "dataset.json").write_text(json.dumps({"kind": "bodies"}))
    return path


@pytest.fixture(scope="module")
def G() -> Generator:
    return tiny_generator()


@pytest.fixture(scope="module")
def encoder(G) -> Encoder:
    enc = build_encoder(config_for(G, width=16), G).eval().requires_grad_(False)
    with torch.no_grad():  # as if trained: every head answers
        for head in enc.heads:
            head.fc.weight.normal_(0, 0.01, generator=torch.Generator().manual_seed(3))
    return enc


# ---------------------------------------------------------------------------- the network

def test_default_groups_split_rows_as_psp():
    assert default_groups(18) == ((32, 0, 3), (16, 3, 7), (8, 7, 18))  # pSp's split of the 1024 generator
    assert default_groups(10) == ((32, 0, 3), (16, 3, 7), (8, 7, 10))  # the 64x64 face
    assert default_groups(6) == ((32, 0, 3), (16, 3, 6))  # 16x16: no fine rows
    assert default_groups(1) == ((32, 0, 1),)


def test_config_checks_its_fields():
    for bad, message in ((dict(input_height=100), "multiple of 32"), (dict(width=10**9), "width"),
                         (dict(groups=((32, 0, 3), (16, 4, 10))), "cover the rows"),
                         (dict(groups=((64, 0, 10),)), "stride"), (dict(num_ws=0), "num_ws")):
        with pytest.raises(InsetganError, match=message):
            EncoderConfig(**bad)
    cfg = EncoderConfig(input_height=256, input_width=128, num_ws=14, w_dim=64)
    assert EncoderConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(InsetganError, match="unknown encoder config keys"):
        EncoderConfig.from_dict({**cfg.to_dict(), "depth": 3})


def test_shapes_offsets_from_w_avg_and_progressive_rows(G):
    encoder = build_encoder(config_for(G, width=16), G).eval().requires_grad_(False)
    assert (encoder.cfg.input_height, encoder.cfg.input_width) == (32, 32)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    ws, deltas = encoder.predict(x)
    assert ws.shape == (3, G.num_ws, G.w_dim) and deltas.shape == (3, G.num_ws - 1, G.w_dim)
    torch.testing.assert_close(ws, G.w_avg.expand_as(ws))  # a new encoder starts at w_avg
    with torch.no_grad():
        for head in encoder.heads:
            head.fc.weight.normal_(0, 0.01)
        ws, deltas = encoder.predict(x)
    ws2, deltas2 = encoder.predict(x, active_rows=2)
    torch.testing.assert_close(ws2[:, :2], ws[:, :2])
    assert bool((deltas2[:, 1:] == 0).all())
    torch.testing.assert_close(ws2[:, 2:], ws2[:, :1].expand(-1, G.num_ws - 2, -1))
    big = F.interpolate(x, size=(48, 48), mode="nearest")  # any input size is resized to the config's
    assert encoder(big).shape == ws.shape
    with pytest.raises(InsetganError, match="RGB images"):
        encoder(torch.zeros(1, 1, 16, 16))


def test_a_body_sized_config_runs():
    cfg = EncoderConfig(input_height=64, input_width=32, num_ws=8, w_dim=16, width=8)
    assert Encoder(cfg)(torch.zeros(2, 3, 64, 32)).shape == (2, 8, 16)


# ---------------------------------------------------------------------------- files and the generator hash

def test_file_round_trip_and_hash_of_converted_generator(G, encoder, tmp_path):
    path = tmp_path / "enc.safetensors"
    save_encoder(encoder, path, network_sha256(G), {"training": {"kimg": 1.5}})
    loaded, meta = load_encoder(path, G)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded(x), encoder(x))
    assert meta["format"] == "insetgan-encoder" and meta["format_version"] == "1"
    assert EncoderConfig.from_dict(json.loads(meta["config"])) == encoder.cfg
    assert json.loads(meta["training"]) == {"kimg": 1.5}
    # The same weights from another file (converted, renamed) have the same hash.
    native.save(G, tmp_path / "g.safetensors")
    shutil.copy(tmp_path / "g.safetensors", tmp_path / "renamed.safetensors")
    assert network_sha256(load_generator(tmp_path / "renamed.safetensors")) == network_sha256(G)
    load_encoder(path, load_generator(tmp_path / "renamed.safetensors"))


def test_a_mismatched_generator_is_refused_in_one_line(G, encoder, tmp_path):
    path = tmp_path / "enc.safetensors"
    save_encoder(encoder, path, network_sha256(G))
    other = tiny_generator(seed=1)
    with pytest.raises(InsetganError, match="belongs to another generator") as err:
        load_encoder(path, other)
    assert "\n" not in str(err.value)
    nudged = tiny_generator()
    with torch.no_grad():
        nudged.mapping.w_avg[0] += 1e-3  # one value differs: another generator
    with pytest.raises(InsetganError, match="another generator"):
        load_encoder(path, nudged)


def good_parts(encoder: Encoder, G: Generator, folder: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a good encoder file for ``G``."""
    path = folder / "good.safetensors"
    save_encoder(encoder, path, network_sha256(G))
    return load_file(str(path)), native.read_metadata(path)


CRAFTED = {
    "generator_file": (None, "is a generator, not an insetgan encoder"),
    "text": (b"hello, I am not a network", "not an encoder file"),
    "empty": (b"", "not an encoder file"),
    "newer": ({"format_version": "7"}, "newer than this insetgan"),
    "version_text": ({"format_version": "1.5"}, "format_version must be a whole number"),
    "huge_width": ({"config": json.dumps({**EncoderConfig().to_dict(), "width": 2**40})}, "width"),
    "deep_config": ({"config": "[" * 30_000 + "]" * 30_000}, "nests too deeply"),
    "bad_groups": ({"config": json.dumps({**EncoderConfig(num_ws=6, w_dim=32).to_dict(), "groups": [[32, 0, 9]]})},
                   "cover"),
    "bad_hash": ({"generator_sha256": "abc"}, "not a SHA-256"),
    "no_hash": ({"generator_sha256": None}, "not a SHA-256"),
    "nan_weight": ("nan", "NaN or infinite"),
    "missing_tensor": ("missing", "missing 1 tensors"),
    "wrong_shape": ("shape", "has shape"),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_encoder_files_are_one_line_errors(name, G, encoder, tmp_path):
    change, message = CRAFTED[name]
    path = tmp_path / f"{name}.safetensors"
    tensors, meta = good_parts(encoder, G, tmp_path)
    if name == "generator_file":
        native.save(G, path)
    elif isinstance(change, bytes):
        path.write_bytes(change)
    elif isinstance(change, dict):
        meta = {k: v for k, v in {**meta, **change}.items() if v is not None}
        path.write_bytes(save_safetensors(tensors, metadata=meta))
    else:
        key = "heads.0.fc.weight"
        if change == "nan":
            tensors[key] = torch.full_like(tensors[key], math.nan)
        elif change == "missing":
            del tensors[key]
        else:
            tensors[key] = torch.zeros(3, 3)
        path.write_bytes(save_safetensors(tensors, metadata=meta))
    with pytest.raises(InsetganError, match=message) as err:
        load_encoder(path, G)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_an_oversized_file_is_refused_before_reading(G, encoder, tmp_path, monkeypatch):
    path = tmp_path / "e.safetensors"
    save_encoder(encoder, path, network_sha256(G))
    monkeypatch.setattr(encoder_files, "MAX_ENCODER_BYTES", 1000)
    with pytest.raises(InsetganError, match="larger than the 1,000 bytes"):
        read_encoder(path)
    assert MAX_ENCODER_BYTES > path.stat().st_size


def test_find_encoder_by_name_and_hash_and_encode(G, encoder, tmp_path):
    gpath = tmp_path / "face.safetensors"
    native.save(G, gpath)
    assert encoder_name(gpath) == tmp_path / "face-encoder.safetensors"
    assert find_encoder(G, gpath, folders=(tmp_path,)) is None
    save_encoder(encoder, tmp_path / "other-encoder.safetensors", network_sha256(tiny_generator(seed=1)))
    assert find_encoder(G, gpath, folders=(tmp_path,)) is None  # another generator's encoder
    save_encoder(encoder, tmp_path / "mine-encoder.safetensors", network_sha256(G))
    assert find_encoder(G, gpath, folders=(tmp_path,)) == tmp_path / "mine-encoder.safetensors"
    (tmp_path / "face-encoder.safetensors").write_bytes(b"junk")  # unreadable: skipped
    assert find_encoder(G, gpath, folders=(tmp_path,)) == tmp_path / "mine-encoder.safetensors"
    found = encoder_for(G, generator_path=gpath)
    assert found is None or found[1].name.endswith("-encoder.safetensors")
    enc, path = encoder_for(G, tmp_path / "mine-encoder.safetensors")
    ws = encode(enc, G, torch.zeros(2, 3, 16, 16))
    assert ws.shape == (2, G.num_ws, G.w_dim) and not ws.requires_grad
    with pytest.raises(InsetganError, match=r"images \[N, 3, 16, 16\]"):
        encode(enc, G, torch.zeros(2, 3, 32, 32))
    with pytest.raises(InsetganError, match="another generator"):
        encoder_for(tiny_generator(seed=1), tmp_path / "mine-encoder.safetensors")


# ---------------------------------------------------------------------------- training and resume

def test_training_steps_lower_the_latent_error(G):
    cfg = EncoderTrainConfig(**{**FAST, "batch_fake": 8, "lr": 1e-4, "pixel_weight": 0, "delta_weight": 0})
    ctx = make_context(G, tiny_data(), cfg, CPU)
    ev = eval_set(ctx, tiny_data(), cfg, count=16)
    state = new_state(cfg, G, CPU)
    before = evaluate(state, ctx, ev)[0]
    for _ in range(40):
        losses = train_step(state, cfg, ctx)
    after = evaluate(state, ctx, ev)[0]
    assert state.step == 40 and state.nimg == 320 and set(losses) >= {"latent", "pixel", "delta", "total"}
    # A new encoder answers w_avg (the best constant); the trained one is closer on held-out samples.
    assert before["psnr_fake"] == before["psnr_fake_w_avg"]
    assert after["latent_mse"] < 0.95 * before["latent_mse"], (before, after)


def test_photos_and_the_feature_distance_enter_the_loss(G):
    cfg = EncoderTrainConfig(**{**FAST, "batch_real": 2, "perceptual_weight": 0.2, "perceptual_size": 32})
    ctx = make_context(G, tiny_data(), cfg, CPU)
    assert ctx.reals.shape[0] == 12 - cfg.holdout and ctx.identity_net is None  # not a face dataset
    losses = train_step(new_state(cfg, G, CPU), cfg, ctx)
    assert losses["perceptual"] > 0 and "identity" not in losses


def test_face_datasets_train_with_the_identity_loss_at_the_five_points(faces):
    face = load_generator(FACE)
    data = ImageSet(((faces * 127.5 + 128).clamp(0, 255)).to(torch.uint8).repeat(2, 1, 1, 1), {"kind": "faces"})
    cfg = EncoderTrainConfig(batch_fake=1, batch_real=2, width=16, holdout=2, perceptual_weight=0)
    ctx = make_context(face, data, cfg, CPU)
    assert ctx.identity_net is not None and ctx.face_points.shape == (5, 2)
    left_eye, right_eye, nose = ctx.face_points[:3]
    assert 10 < left_eye[0] < nose[0] < right_eye[0] < 54 and left_eye[1] < nose[1]  # an upright face
    losses = train_step(new_state(cfg, face, CPU), cfg, ctx)
    assert 0 < losses["identity"] <= 2
    numbers = evaluate(new_state(cfg, face, CPU), ctx, eval_set(ctx, data, cfg, count=2))[0]
    assert -1 <= numbers["identity_cos_real"] <= 1 and numbers["psnr_real"] == numbers["psnr_real_w_avg"]


def test_rows_unlock_one_by_one():
    cfg = EncoderTrainConfig(unlock_kimg=2)
    assert [active_rows(cfg, n, 10) for n in (0, 1999, 2000, 9000, 10**6)] == [1, 1, 2, 5, 10]
    assert active_rows(EncoderTrainConfig(unlock_kimg=0), 0, 10) == 10


def test_resume_continues_from_the_saved_step(G, tmp_path):
    cfg = EncoderTrainConfig(**FAST)
    ctx = make_context(G, tiny_data(), cfg, CPU)
    state = new_state(cfg, G, CPU)
    for _ in range(2):
        train_step(state, cfg, ctx)
    save_state(state, cfg, tmp_path / "state.pt")
    resumed = load_state(tmp_path / "state.pt", cfg, G, CPU)
    assert (resumed.step, resumed.nimg) == (2, 8)
    train_step(state, cfg, ctx)
    train_step(resumed, cfg, ctx)
    for a, b in zip(state.encoder.parameters(), resumed.encoder.parameters()):
        torch.testing.assert_close(a, b)
    with pytest.raises(InsetganError, match="different batch_fake"):
        load_state(tmp_path / "state.pt", EncoderTrainConfig(**{**FAST, "batch_fake": 2}), G, CPU)
    with pytest.raises(InsetganError, match="another generator"):
        load_state(tmp_path / "state.pt", cfg, tiny_generator(seed=1), CPU)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InsetganError, match="junk.pt"):
        load_state(tmp_path / "junk.pt", cfg, G, CPU)


def test_config_ranges():
    with pytest.raises(InsetganError, match="psi_min"):
        EncoderTrainConfig(psi_min=0.9, psi_max=0.5)
    with pytest.raises(InsetganError, match="at least 1"):
        EncoderTrainConfig(batch_fake=0, batch_real=0)
    with pytest.raises(InsetganError, match="lr must be a number in"):
        EncoderTrainConfig(lr=0)


# ---------------------------------------------------------------------------- the deep feature distance

@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    face = load_generator(FACE)
    with torch.no_grad():
        return face(torch.randn(4, face.z_dim, generator=torch.Generator().manual_seed(1)), None,
                    truncation_psi=0.7, noise_mode="const")


def test_feature_distance_zero_positive_and_perceptual_ordering(faces):
    d = DeepFeatureDistance()
    x = faces
    k = torch.tensor([1.0, 4, 6, 4, 1])
    k = (k[:, None] * k[None] / 256).expand(3, 1, 5, 5)
    blurred = F.conv2d(F.pad(x, [2] * 4, mode="replicate"), k, groups=3)
    brighter = (x + 0.1).clamp(-1, 1)
    torch.testing.assert_close(d(x, x), torch.zeros(4))
    assert bool((d(x, brighter) > 0).all())
    # A 5x5 blur changes the pixels less than a brightness shift, yet it is the larger perceptual change.
    assert bool(((x - blurred).abs().mean((1, 2, 3)) < (x - brighter).abs().mean((1, 2, 3))).all())
    assert bool((d(x, blurred) > 2 * d(x, brighter)).all())
    more = F.conv2d(F.pad(blurred, [2] * 4, mode="replicate"), k, groups=3)
    assert bool((d(x, more) > d(x, blurred)).all())
    torch.testing.assert_close(d(x, blurred), d(blurred, x))
    y = x.clone().requires_grad_(True)
    d(y, blurred).sum().backward()
    assert y.grad is not None and float(y.grad.abs().sum()) > 0


def test_the_feature_distance_is_chosen_by_name_not_by_auto(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("INSETGAN_WEIGHTS", raising=False)
    choice = load_perceptual("effnet-lite0")
    assert choice.name == "effnet-lite0" and isinstance(choice.fn, DeepFeatureDistance) and choice.notice is None
    assert load_perceptual("auto", warn=False).fn is l1_ssim  # measured: l1-ssim inverts faces better


# ---------------------------------------------------------------------------- the command line

TINY_RUN = ["--batch-fake", "2", "--batch-real", "2", "--width", "16", "--holdout", "4", "--unlock-kimg", "0",
            "--perceptual-weight", "0", "--device", "cpu", "--progress", "off"]


def test_train_encoder_cli_writes_a_run_and_resumes(G, tmp_path):
    gpath = tmp_path / "g.safetensors"
    native.save(G, gpath)
    data = data_folder(tmp_path / "ds")
    out = tmp_path / "run"
    res = run("train-encoder", "--network", gpath, "--data", data, "--outdir", out, "--kimg", "0.008",
              "--snapshot-kimg", "0.004", *TINY_RUN)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["kimg"] for line in lines] == [0, 0.004, 0.008]
    assert {"psnr_real", "psnr_fake", "latent_mse", "seconds_per_image"} <= set(lines[-1])
    assert Image.open(out / "recon-000000.png").size[0] > 16
    load_encoder(out / "encoder-latest.safetensors", load_generator(gpath))
    res = run("train-encoder", "--network", gpath, "--data", data, "--outdir", out, "--kimg", "0.012",
              "--snapshot-kimg", "0.004", "--resume", *TINY_RUN)
    assert res.returncode == 0, res.stderr
    assert_one_line_error(run("train-encoder", "--network", gpath, "--data", data, "--outdir", out, *TINY_RUN),
                          "already holds a run")
    report = json.loads((out / "report.json").read_text())
    assert report["resumed_from"].endswith("state-000000.pt") and report["steps"] == 3
    assert [json.loads(line)["kimg"] for line in (out / "metrics.jsonl").read_text().splitlines()][-1] == 0.012


def test_train_encoder_cli_errors(G, encoder, tmp_path):
    gpath = tmp_path / "g.safetensors"
    native.save(G, gpath)
    data = data_folder(tmp_path / "ds")
    epath = tmp_path / "e.safetensors"
    save_encoder(encoder, epath, network_sha256(G))
    base = ["train-encoder", "--outdir", tmp_path / "o", *TINY_RUN]
    assert_one_line_error(run(*base, "--network", tmp_path / "none.pkl", "--data", data), "not found")
    assert_one_line_error(run(*base, "--network", epath, "--data", data), "without insetgan generator metadata")
    assert_one_line_error(run(*base, "--network", gpath, "--data", tmp_path / "nodata"), "no such dataset")
    assert_one_line_error(run(*base, "--network", gpath, "--data", data_folder(tmp_path / "big", side=32)),
                          "prepare the photos at the generator's size")
    assert_one_line_error(run(*base, "--network", gpath, "--data", data, "--resume"), "no state-*.pt")
    assert_one_line_error(run(*base, "--network", gpath, "--data", data, "--psi-min", "1", "--psi-max", "0.5"),
                          "psi_min")
    assert_one_line_error(run(*base, "--network", gpath, "--data", data, "--holdout", "100"), "more than --holdout")
    for option, value in (("--lr", "0"), ("--kimg", "1e9"), ("--width", "4"), ("--seed", "-1"),
                          ("--input-scale", "nan")):
        res = run(*base, "--network", gpath, "--data", data, option, value)
        assert res.returncode == 2 and option in res.stderr
    assert not (tmp_path / "o").exists()
