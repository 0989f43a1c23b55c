"""Training: discriminator, augmentation, the training step, resume, export and data parallelism."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from insetgan.networks.checkpoints import load_generator
from insetgan.networks.discriminator import (ConvDiscriminator, Discriminator, DiscriminatorConfig, build_discriminator,
                                             minibatch_std)
from insetgan.networks.native import read_metadata
from insetgan.train.augment import augment, draw_params, parse_policy
from insetgan.train.checkpoint import load_state, save_state
from insetgan.train.config import TrainConfig
from insetgan.train.data import ImageSet, load_dataset
from insetgan.train.face_window import FaceWindow, dataset_face_window, face_window, window_gamma
from insetgan.train.state import build_state, warm_start
from insetgan.train.step import train_step
from tests.cli_run import assert_one_line_error, run
from tests.conftest import REPO

TINY = dict(z_dim=32, w_dim=32, map_layers=2, channel_base=256, channel_max=32)
TINY_ARGS = ["--z-dim", "32", "--map-layers", "2", "--channel-base", "256", "--channel-max", "32", "--device", "cpu"]


def _data(n: int = 10, h: int = 16, w: int = 8, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet((torch.rand(n, 3, h, w, generator=g) * 255).to(torch.uint8), {})


def _folder(path: Path, n: int = 10, h: int = 16, w: int = 8) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path / f"{i:05d}.png")
    (path / "dataset.json").write_text(json.dumps({"kind": "bodies", "priors": {"face": [0.3, 0.05, 0.4, 0.2]}}))
    return path


@pytest.mark.parametrize("arch", ["resnet", "conv"])
@pytest.mark.parametrize("square", [True, False])
def test_discriminator_shapes_and_double_backward(square, arch):
    D = build_discriminator(DiscriminatorConfig(img_resolution=32, square=square, channel_base=512, channel_max=64,
                                                architecture=arch))
    assert isinstance(D, ConvDiscriminator if arch == "conv" else Discriminator)
    x = torch.randn(6, 3, 32, 32 if square else 16, requires_grad=True)
    logits = D(x)
    assert logits.shape == (6, 1) and torch.isfinite(logits).all()
    (g,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    g.square().sum().backward()  # the R1 penalty needs the gradient of a gradient
    grads = {n: p.grad for n, p in D.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for n, g in grads.items() if n.endswith("weight"))
    with pytest.raises(ValueError, match="discriminator takes"):
        D(torch.randn(2, 3, 16, 16))


def _first_entry_fd(loss: Callable[[], torch.Tensor], param: torch.nn.Parameter, eps: float = 1e-6) -> float:
    """Central finite difference of ``loss()`` in the first entry of ``param``."""
    entry = param.data.view(-1)
    entry[0] += eps
    up = float(loss().detach())
    entry[0] -= 2 * eps
    down = float(loss().detach())
    entry[0] += eps
    return (up - down) / (2 * eps)


@pytest.mark.parametrize("arch", ["resnet", "conv"])
def test_r1_penalty_gradient_matches_finite_differences(arch):
    """The R1 step differentiates a gradient: its parameter gradients must be the true ones (float64)."""
    torch.manual_seed(0)
    D = build_discriminator(DiscriminatorConfig(img_resolution=16, channel_base=256, channel_max=16,
                                                architecture=arch)).double()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    params = draw_params(torch.Generator().manual_seed(1), 4)

    def penalty() -> torch.Tensor:
        real = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(augment(real, params, ("color", "translation"))).sum(), real, create_graph=True)
        return g.square().sum()

    penalty().backward()
    checked = 0
    for name, p in D.named_parameters():
        if name.endswith("weight"):
            fd = _first_entry_fd(penalty, p)
            assert p.grad.view(-1)[0].item() == pytest.approx(fd, rel=1e-4, abs=1e-9), name
            checked += 1
    assert checked >= 5


def test_generator_gradient_matches_finite_differences():
    """Every generator parameter that training updates gets its true gradient (float64)."""
    from insetgan.networks.config import GeneratorConfig
    from insetgan.networks.generator import Generator

    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=8, w_dim=8, img_resolution=16, mapping_layers=2, channel_base=128,
                                  channel_max=16, num_fp16_res=0, conv_clamp=None)).double()
    z = torch.randn(3, 8, dtype=torch.float64)
    target = torch.randn(3, 3, 16, 16, dtype=torch.float64)

    def loss() -> torch.Tensor:
        return (G(z, None, noise_mode="none") * target).sum()

    loss().backward()
    for name, p in G.named_parameters():
        if p.grad is None:
            assert name.endswith("noise_strength")  # unused with noise_mode='none'
            continue
        fd = _first_entry_fd(loss, p)
        assert p.grad.view(-1)[0].item() == pytest.approx(fd, rel=1e-4, abs=1e-7), name
    assert G.float()(z, None).dtype == torch.float32  # float64 latents alone do not switch a network to float64


@pytest.mark.parametrize("arch", ["resnet", "conv"])
def test_minibatch_std_channel_groups_feed_the_discriminator(arch):
    """--mbstd-channels F: F statistics, one per group of C/F channels, each its own input map of b4.conv."""
    x = torch.randn(8, 4, 2, 2)
    x[:, 2:] *= 10  # the second channel group varies ten times as much
    y = minibatch_std(x, 4, 2)
    assert y.shape == (8, 6, 2, 2) and (y[:, 5] > 5 * y[:, 4]).all()
    st = build_state(TrainConfig(batch=4, mbstd_channels=4, d_arch=arch, **TINY), _data(), torch.device("cpu"))
    assert st.D.b4.conv.weight.shape[1] == 32 + 4
    with pytest.raises(ValueError, match="must divide"):
        TrainConfig(mbstd_channels=5, **TINY)
    with pytest.raises(ValueError, match="discriminator's lr must be > 0"):
        TrainConfig(lr_d=0.0, **TINY)


def _sharp_and_blurred(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel noise (sharp) and the same noise box-blurred 4x4 (what a generator's samples lack or have)."""
    x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    blurred = F.interpolate(F.avg_pool2d(x, 4), scale_factor=4.0, mode="nearest")
    return x, blurred * (x.std() / blurred.std())  # same contrast: only the texture differs


def test_conv_discriminator_tells_texture_apart_within_a_few_steps():
    """The plain strided discriminator learns sharp vs blurred in 60 steps of Adam at lr 0.001 (held-out images)."""
    torch.manual_seed(0)
    D = build_discriminator(DiscriminatorConfig(img_resolution=32, channel_base=256, channel_max=32, architecture="conv"))
    opt = torch.optim.Adam(D.parameters(), lr=0.001, betas=(0.0, 0.99))
    sharp, blurred = _sharp_and_blurred(64, 0)
    for step in range(60):
        i = torch.arange(8) + 8 * (step % 8)
        loss = F.softplus(D(blurred[i])).mean() + F.softplus(-D(sharp[i])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    test_sharp, test_blurred = _sharp_and_blurred(32, 1)
    with torch.no_grad():
        acc = ((D(test_sharp) > 0).float().mean() + (D(test_blurred) < 0).float().mean()) / 2
    assert acc >= 0.9


def test_discriminator_architecture_is_checked_and_kept_by_a_resume(tmp_path):
    data, dev = _data(), torch.device("cpu")
    with pytest.raises(ValueError, match="unknown discriminator architecture 'mlp'"):
        TrainConfig(d_arch="mlp", **TINY)
    with pytest.raises(ValueError, match="unknown discriminator architecture"):
        DiscriminatorConfig(architecture="mlp")
    cfg = TrainConfig(batch=4, r1_interval=2, d_arch="conv", **TINY)
    st = build_state(cfg, data, dev)
    assert isinstance(st.D, ConvDiscriminator)
    for _ in range(2):  # step 0 is an R1 step
        losses = train_step(st, data, cfg, dev)
        assert all(math.isfinite(v) for v in losses.values())
    save_state(st, cfg, tmp_path / "s.pt")
    back = load_state(tmp_path / "s.pt", cfg, data, dev)
    assert all(torch.equal(a, b) for a, b in zip(back.D.parameters(), st.D.parameters()))
    with pytest.raises(ValueError, match="different d_arch \\(d_arch=conv\\)"):
        load_state(tmp_path / "s.pt", TrainConfig(batch=4, r1_interval=2, **TINY), data, dev)


def test_collapse_diagnostics(tmp_path):
    """style_spread is 0 for a generator that ignores w; the script prints one row per state (face logits with --face-d)."""
    from insetgan.train.diagnose import minibatch_std_stats, style_spread

    st = build_state(TrainConfig(batch=4, **TINY), _data(), torch.device("cpu"))
    fresh = style_spread(st.G, 64)
    assert set(fresh) >= {"w", "b4.conv1", "b8.conv0", "b16.torgb"} and min(fresh.values()) > 0.1
    for name, m in st.G.synthesis.named_modules():
        if hasattr(m, "affine"):
            m.affine.weight.data.zero_()  # styles = the bias alone: every latent gives the same layout
    assert all(v == 0 for k, v in style_spread(st.G, 64).items() if k != "w")
    with pytest.raises(ValueError, match="at least 2"):
        style_spread(st.G, 1)
    same = torch.zeros(4, 3, 16, 8)
    assert minibatch_std_stats(st.D, same)[0] < 1e-3 < minibatch_std_stats(st.D, torch.randn(4, 3, 16, 8))[0]

    folder = _folder(tmp_path / "ds")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for step in (1, 2):
        cfg = TrainConfig(batch=4, face_d=float(step - 1), **TINY)  # the second one with a face discriminator
        st = build_state(cfg, load_dataset(folder), torch.device("cpu"))
        st.nimg = step * 1000
        save_state(st, cfg, run_dir / f"state-{step:06d}.pt")
    script = [sys.executable, str(REPO / "scripts" / "diagnose_run.py")]
    r = subprocess.run([*script, str(run_dir), "--data", str(folder), "--samples", "4"], capture_output=True,
                       text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["state-000001.pt", "state-000002.pt"] and rows[1][1] == "2.0"
    assert all(float(v) > 0 for v in rows[0][2:6])
    assert rows[0][10:] == ["-", "-"] and all(math.isfinite(float(v)) for v in rows[1][10:12])
    r = subprocess.run([*script, str(tmp_path / "none"), "--data", str(folder)], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.strip().count("\n") == 0 and "not a training" in r.stderr


@pytest.mark.parametrize("arch", ["resnet", "conv"])
def test_probe_discriminator_script(tmp_path, arch):
    """scripts/probe_discriminator.py: a held-out accuracy row every 25 steps; a mismatched dataset is refused."""
    from insetgan.networks import native

    folder = _folder(tmp_path / "ds", n=100)
    st = build_state(TrainConfig(batch=4, **TINY), load_dataset(folder), torch.device("cpu"))
    native.save(st.G_ema, tmp_path / "g.safetensors")
    script = [sys.executable, str(REPO / "scripts" / "probe_discriminator.py"), str(tmp_path / "g.safetensors"),
              "--channel-base", "256", "--channel-max", "32", "--arch", arch]
    r = subprocess.run([*script, "--data", str(folder), "--samples", "90", "--steps", "50", "--aug", "color"],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["0", "25", "50"] and rows[2][1] == "0.80"
    assert all(0 <= float(row[2]) <= 1 for row in rows)
    wrong = _folder(tmp_path / "square", n=100, h=16, w=16)
    r = subprocess.run([*script, "--data", str(wrong), "--samples", "90", "--steps", "5"], capture_output=True,
                       text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "the dataset holds [3, 16, 16]" in r.stderr
    r = subprocess.run([*script, "--data", str(folder), "--aug", "blur"], capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    assert r.returncode == 2 and "unknown augmentation blur" in r.stderr


def test_minibatch_std_groups():
    x = torch.randn(8, 4, 2, 2)
    y = minibatch_std(x, 4, 1)
    assert y.shape == (8, 5, 2, 2)
    groups = x.reshape(4, 2, 4, 2, 2)  # sample i is grouped with i + 2k
    expected = groups.std(0, unbiased=False).mean(dim=(1, 2, 3))
    torch.testing.assert_close(y[:2, 4, 0, 0], expected, rtol=1e-4, atol=1e-5)
    assert minibatch_std(torch.randn(3, 4, 2, 2), 4, 1).shape == (3, 5, 2, 2)  # group falls back to 3


def test_augment_policies():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 16, 8, requires_grad=True)
    p = draw_params(g, 4)
    assert torch.equal(augment(x, p, ()), x)
    y = augment(x, p, ("color", "translation", "cutout"))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.abs().sum() > 0
    # Translation by a known shift: params chosen for +1 row, -1 column.
    q = torch.full((1, 7), 0.5)
    sy, sx = 2, 1
    q[0, 3] = (sy + 1 + 0.5) / (2 * sy + 1)
    q[0, 4] = (sx - 1 + 0.5) / (2 * sx + 1)
    t = augment(x[:1].detach(), q, ("translation",))
    torch.testing.assert_close(t[0, :, 1:, :-1], x[0, :, :-1, 1:].detach())
    assert (t[0, :, 0] == 0).all() and (t[0, :, :, -1] == 0).all()
    c = augment(torch.ones(4, 3, 16, 8), p, ("cutout",))
    frac = (c == 0).float().mean(dim=(1, 2, 3))  # a half-size rectangle, clipped at the image border
    assert ((frac > 0) & (frac <= 0.25)).all() and (frac == 0.25).any()
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_policy("color,blur")


def test_training_steps_are_finite_r1_positive_ema_differs():
    data = _data()
    cfg = TrainConfig(batch=4, r1_interval=2, **TINY)
    st = build_state(cfg, data, torch.device("cpu"))
    logs = [train_step(st, data, cfg, torch.device("cpu")) for _ in range(3)]
    assert all(np.isfinite(v) for log in logs for v in log.values())
    assert logs[0]["r1"] > 0 and logs[2]["r1"] > 0 and "r1" not in logs[1]
    assert any(not torch.equal(p, q) for p, q in zip(st.G.parameters(), st.G_ema.parameters()))
    assert st.step == 3 and st.nimg == 12


def test_no_noise_training_keeps_noise_strengths_zero():
    data, dev = _data(), torch.device("cpu")
    strengths = {}
    for noise in (True, False):
        cfg = TrainConfig(batch=4, r1_interval=2, noise=noise, **TINY)
        st = build_state(cfg, data, dev)
        for _ in range(3):
            train_step(st, data, cfg, dev)
        strengths[noise] = torch.stack([p.detach() for n, p in st.G_ema.named_parameters() if "noise_strength" in n])
        if not noise:
            z = torch.randn(2, st.G_ema.z_dim)
            with torch.no_grad():
                assert torch.equal(st.G_ema(z, None, noise_mode="const"), st.G_ema(z, None, noise_mode="random"))
    assert strengths[True].abs().max() > 0 and torch.equal(strengths[False], torch.zeros_like(strengths[False]))


def test_resume_is_bit_identical(tmp_path):
    data, dev = _data(), torch.device("cpu")
    cfg = TrainConfig(batch=4, r1_interval=2, **TINY)
    st = build_state(cfg, data, dev)
    for _ in range(2):
        train_step(st, data, cfg, dev)
    save_state(st, cfg, tmp_path / "s.pt")
    straight = [train_step(st, data, cfg, dev) for _ in range(2)]
    resumed = load_state(tmp_path / "s.pt", cfg, data, dev)
    again = [train_step(resumed, data, cfg, dev) for _ in range(2)]
    assert straight == again
    for name in ("G", "D", "G_ema"):
        for a, b in zip(getattr(st, name).state_dict().values(), getattr(resumed, name).state_dict().values()):
            assert torch.equal(a, b), name
    torch.load(tmp_path / "s.pt", weights_only=True)  # tensors, numbers and strings only
    with pytest.raises(ValueError, match="different"):
        load_state(tmp_path / "s.pt", TrainConfig(batch=8, **TINY), data, dev)
    slower = load_state(tmp_path / "s.pt", TrainConfig(batch=4, r1_interval=2, lr=0.001, **TINY), data, dev)
    assert slower.opt_G.param_groups[0]["lr"] == 0.001 and slower.opt_D.param_groups[0]["lr"] == pytest.approx(
        0.001 * 2 / 3)  # a resumed run takes the new --lr (D's with the lazy-R1 ratio)
    ttur = load_state(tmp_path / "s.pt", TrainConfig(batch=4, r1_interval=2, lr=0.001, lr_d=0.003, **TINY), data, dev)
    assert ttur.opt_G.param_groups[0]["lr"] == 0.001
    assert ttur.opt_D.param_groups[0]["lr"] == pytest.approx(0.003 * 2 / 3)  # --lr-d, with the lazy-R1 ratio
    assert slower.opt_G.state_dict()["state"].keys() == st.opt_G.state_dict()["state"].keys()
    with pytest.raises(ValueError, match="different noise"):
        load_state(tmp_path / "s.pt", TrainConfig(batch=4, r1_interval=2, noise=False, **TINY), data, dev)


def test_discriminator_width_is_its_own_and_a_resume_keeps_it(tmp_path):
    data, dev = _data(), torch.device("cpu")
    narrow = build_state(TrainConfig(batch=4, **TINY), data, dev)
    cfg = TrainConfig(batch=4, r1_interval=2, d_channel_base=512, d_channel_max=64, **TINY)
    wide = build_state(cfg, data, dev)
    assert [wide.D.cfg.channels(r) for r in (4, 8, 16)] == [64, 64, 32]  # 512 / res, at most 64
    assert [narrow.D.cfg.channels(r) for r in (4, 8, 16)] == [32, 32, 16]
    assert all(torch.equal(a, b) for a, b in zip(wide.G.state_dict().values(), narrow.G.state_dict().values()))
    losses = [train_step(wide, data, cfg, dev) for _ in range(2)]
    assert all(math.isfinite(v) for step in losses for v in step.values())
    save_state(wide, cfg, tmp_path / "s.pt")
    resumed = load_state(tmp_path / "s.pt", cfg, data, dev)
    assert all(torch.equal(a, b) for a, b in zip(wide.D.state_dict().values(), resumed.D.state_dict().values()))
    with pytest.raises(ValueError, match="different d_channel_base, d_channel_max"):
        load_state(tmp_path / "s.pt", TrainConfig(batch=4, r1_interval=2, **TINY), data, dev)
    with pytest.raises(ValueError, match="must divide the discriminator's 64 channels"):
        TrainConfig(batch=4, mbstd_channels=3, d_channel_base=512, d_channel_max=64, **TINY)


def test_lr_drop_halves_both_learning_rates_from_its_kimg_on(tmp_path):
    data, dev = _data(), torch.device("cpu")
    cfg = TrainConfig(batch=4, r1_interval=2, lr=0.002, lr_d=0.003, lr_drop_kimg=0.008, **TINY)
    st = build_state(cfg, data, dev)
    seen = []
    for _ in range(3):
        train_step(st, data, cfg, dev)  # sets the lrs for the images shown before the step (0, 4, 8)
        seen.append((st.opt_G.param_groups[0]["lr"], st.opt_D.param_groups[0]["lr"]))
    assert seen[:2] == [(0.002, pytest.approx(0.003 * 2 / 3))] * 2
    assert seen[2] == (0.001, pytest.approx(0.0015 * 2 / 3))
    save_state(st, cfg, tmp_path / "s.pt")  # at 12 images: a resumed run is past the drop at once
    resumed = load_state(tmp_path / "s.pt", cfg, data, dev)
    assert resumed.opt_G.param_groups[0]["lr"] == 0.001
    never = load_state(tmp_path / "s.pt", TrainConfig(batch=4, r1_interval=2, lr=0.002, **TINY), data, dev)
    assert never.opt_G.param_groups[0]["lr"] == 0.002
    with pytest.raises(ValueError, match="lr drop"):
        TrainConfig(lr_drop_kimg=-1.0, **TINY)


def test_warm_start_continues_a_snapshot_with_a_discriminator_warm_up(tmp_path):
    from insetgan.networks import native

    data, dev = _data(), torch.device("cpu")
    cfg = TrainConfig(batch=4, r1_interval=2, **TINY)
    src = build_state(cfg, data, dev)
    for _ in range(3):
        train_step(src, data, cfg, dev)
    extra = {"training": {"kimg": src.nimg / 1000, "step": src.step}}
    native.save(src.G_ema, tmp_path / "net.safetensors", extra=extra, dtype=torch.float16)  # as shipped
    warm_cfg = TrainConfig(batch=4, r1_interval=2, d_warmup_kimg=0.008, seed=1, **TINY)
    st = build_state(warm_cfg, data, dev)
    d_before = [p.clone() for p in st.D.parameters()]
    warm_start(st, tmp_path / "net.safetensors", dev)
    assert (st.nimg, st.step, st.start_nimg) == (12, 3, 12)  # continues at the snapshot's progress
    shipped = load_generator(tmp_path / "net.safetensors").state_dict()
    for G in (st.G, st.G_ema):
        for k, v in G.state_dict().items():
            assert v.dtype == torch.float32 and torch.equal(v, shipped[k]), k
    g_start = {k: v.clone() for k, v in st.G.state_dict().items()}
    for _ in range(2):  # 8 images of D warm-up: G and G_ema stay put, D learns
        assert st.g_frozen(warm_cfg)
        losses = train_step(st, data, warm_cfg, dev)
        assert "loss_G" not in losses and math.isfinite(losses["loss_D"])
        assert "r1" not in losses  # no R1 while G is frozen (step 4 is an R1 step otherwise)
    assert not st.g_frozen(warm_cfg) and st.nimg == 20
    for G in (st.G, st.G_ema):
        assert all(torch.equal(v, g_start[k]) for k, v in G.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(d_before, st.D.parameters()))
    assert "loss_G" in train_step(st, data, warm_cfg, dev)  # then both train
    assert "r1" in train_step(st, data, warm_cfg, dev)  # and R1 is back at step 6
    assert any(not torch.equal(v, g_start[k]) for k, v in st.G.state_dict().items())
    save_state(st, warm_cfg, tmp_path / "s.pt")
    assert load_state(tmp_path / "s.pt", warm_cfg, data, dev).start_nimg == 12  # a resume keeps the warm-up point
    wide = build_state(TrainConfig(batch=4, **{**TINY, "channel_max": 64}), data, dev)
    with pytest.raises(ValueError, match="different channel_max 32 \\(this run: 64\\)"):
        warm_start(wide, tmp_path / "net.safetensors", dev)


def test_train_cli_init_from_a_snapshot(tmp_path):
    data = _folder(tmp_path / "ds")
    first, second = tmp_path / "a", tmp_path / "b"
    common = ["--data", data, "--batch", "4", "--snapshot-kimg", "0.004", *TINY_ARGS]
    assert run("--quiet", "train", "--outdir", first, "--kimg", "0.008", *common).returncode == 0
    r = run("--quiet", "train", "--outdir", second, "--kimg", "0.02", "--init", first / "network-000000.safetensors",
            "--d-warmup-kimg", "0.004", "--d-channel-base", "512", "--d-arch", "conv", *common)  # a new, wider one
    assert r.returncode == 0, r.stderr
    rep = json.loads((second / "report.json").read_text())
    assert rep["config"]["d_channel_base"] == 512 and rep["config"]["d_channel_max"] is None
    assert rep["config"]["d_arch"] == "conv"
    state = torch.load(sorted(second.glob("state-*.pt"))[-1], weights_only=True)
    assert "b16.weight" in state["D"] and "b16.conv0.weight" not in state["D"]  # the plain strided one was trained
    assert rep["steps"] == 5 and rep["kimg"] == 0.02 and rep["initialised_from"].endswith("network-000000.safetensors")
    assert rep["config"]["d_warmup_kimg"] == 0.004
    base = ["train", "--outdir", tmp_path / "c", *common]
    net = first / "network-latest.safetensors"
    assert_one_line_error(run(*base, "--kimg", "0.008", "--init", net), "already at 0.008 kimg")
    assert_one_line_error(run(*base, "--init", tmp_path / "none.st"), "network not found")
    assert_one_line_error(run(*base, "--init", net, "--resume", sorted(first.glob("state-*.pt"))[-1]), "exclude")
    assert_one_line_error(run(*base, "--d-warmup-kimg", "1"), "needs --init")
    assert_one_line_error(run(*base, "--init", "default-face"), "different")
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("network-*"))


def test_load_dataset_folder_zip_and_errors(tmp_path):
    folder = _folder(tmp_path / "ds", n=3)
    data = load_dataset(folder)
    assert data.images.shape == (3, 3, 16, 8) and not data.square and "priors" in data.meta
    shutil.make_archive(str(tmp_path / "z"), "zip", folder)
    assert torch.equal(load_dataset(tmp_path / "z.zip").images, data.images)
    Image.new("RGB", (12, 12)).save(folder / "zz.png")
    with pytest.raises(ValueError, match="differ in size"):
        load_dataset(folder)
    with pytest.raises(ValueError, match="not found"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_dataset(tmp_path / "empty")
    odd = _folder(tmp_path / "odd", n=2, h=24, w=12)
    with pytest.raises(ValueError, match="power-of-two height"):
        load_dataset(odd)


def test_train_cli_exports_loadable_generator_and_resumes(tmp_path):
    data = _folder(tmp_path / "ds")
    out = tmp_path / "run"
    r = run("--quiet", "train", "--data", data, "--outdir", out, "--kimg", "0.008", "--batch", "4",
            "--snapshot-kimg", "0.004", *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert "network-latest.safetensors" in names and "report.json" in names
    assert any(n.startswith("samples-") for n in names) and any(n.startswith("state-") for n in names)
    G = load_generator(out / "network-latest.safetensors")
    assert G.img_shape == (3, 16, 8)
    with torch.no_grad():
        assert torch.isfinite(G(torch.randn(2, G.z_dim), None)).all()
    meta = read_metadata(out / "network-latest.safetensors")
    assert json.loads(meta["region_priors"]) == {"face": [0.3, 0.05, 0.4, 0.2]}
    rep = json.loads((out / "report.json").read_text())
    assert rep["steps"] == 2 and rep["kimg"] == 0.008
    state = sorted(out.glob("state-*.pt"))[-1]
    r = run("--quiet", "train", "--data", data, "--outdir", out, "--kimg", "0.012", "--batch", "4",
            "--snapshot-kimg", "0.004", "--resume", state, *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "report.json").read_text())["steps"] == 3


def test_train_cli_bad_inputs(tmp_path):
    data = _folder(tmp_path / "ds")
    base = ["train", "--outdir", tmp_path / "o", "--kimg", "0.004", *TINY_ARGS]
    assert_one_line_error(run(*base, "--data", tmp_path / "none"), "dataset not found")
    assert_one_line_error(run(*base, "--data", data, "--batch", "6", "--batch-gpu", "4"), "multiple")
    assert_one_line_error(run(*base, "--data", data, "--aug", "blur"), "unknown augmentation")
    assert_one_line_error(run(*base, "--data", data, "--mbstd-channels", "3"), "must divide the discriminator's 32")
    assert_one_line_error(run(*base, "--data", data, "--resume", tmp_path / "none.pt"), "state not found")
    assert_one_line_error(run(*base, "--data", data, "--lr-drop-kimg", "-1"), "--lr-drop-kimg")
    junk = tmp_path / "junk.pt"
    junk.write_text("nope")
    assert_one_line_error(run(*base, "--data", data, "--resume", junk), "cannot read training state")


BODY_PRIOR = [0.3709, 0.0411, 0.2687, 0.1343]  # the face prior of the prepared 256x128 training set


def test_face_window_of_the_body_canvas():
    assert face_window(BODY_PRIOR, 256, 128) == FaceWindow(33, 0, 64)  # head and shoulders, top edge kept
    assert face_window(BODY_PRIOR, 1024, 512) == FaceWindow(131, 0, 256)  # StyleGAN-Human's canvas size
    corner = face_window([0.9, 0.9, 0.1, 0.1], 64, 32)
    assert corner == FaceWindow(16, 48, 16)  # moved inside the canvas
    img = torch.arange(2 * 3 * 64 * 32, dtype=torch.float32).view(2, 3, 64, 32).requires_grad_(True)
    crop = corner.crop(img)
    assert torch.equal(crop, img[:, :, 48:, 16:])
    crop.sum().backward()
    assert img.grad[:, :, 48:, 16:].eq(1).all() and img.grad.sum() == crop.numel()
    assert window_gamma(0.8, FaceWindow(33, 0, 64), 256) == pytest.approx(0.05)  # R1 scales with side squared
    with pytest.raises(ValueError, match="needs a body dataset with a face prior"):
        dataset_face_window({"kind": "faces"}, 256, 128)
    with pytest.raises(ValueError, match="does not lie on the canvas"):
        face_window([0.5, 0.5, 0.0, 0.1], 256, 128)
    with pytest.raises(ValueError, match="relative units"):
        face_window([0.5, 0.5, 0.1], 256, 128)
    with pytest.raises(ValueError, match="too small"):
        face_window(BODY_PRIOR, 8, 4)


def _body_data() -> ImageSet:
    data = _data(h=32, w=16)
    data.meta = {"kind": "bodies", "priors": {"face": [0.3, 0.05, 0.4, 0.2]}}
    return data


def test_face_discriminator_adds_its_weighted_loss_to_the_generators():
    data, dev = _body_data(), torch.device("cpu")
    first = {}
    for weight in (0.0, 1.0, 2.0, 3.0):
        cfg = TrainConfig(batch=4, face_d=weight, d_arch="conv", **TINY)
        first[weight] = train_step(build_state(cfg, data, dev), data, cfg, dev)["loss_G"]
    face_term = first[2.0] - first[1.0]
    assert face_term > 0.1 and first[3.0] - first[2.0] == pytest.approx(face_term, rel=1e-4)
    assert first[1.0] - face_term == pytest.approx(first[0.0], rel=1e-4)  # the whole-image term is unchanged


def test_face_discriminator_trains_on_its_window_and_resumes(tmp_path):
    data, dev = _body_data(), torch.device("cpu")
    cfg = TrainConfig(batch=4, r1_interval=2, face_d=1.0, d_arch="conv", **TINY)
    st = build_state(cfg, data, dev)
    assert st.face_window == FaceWindow(0, 0, 16)
    assert st.D_face is not None and (st.D_face.cfg.img_resolution, st.D_face.cfg.square) == (16, True)
    start = [p.detach().clone() for p in st.D_face.parameters()]
    logs = [train_step(st, data, cfg, dev) for _ in range(2)]
    assert logs[0]["r1_face"] > 0 and "r1_face" not in logs[1] and math.isfinite(logs[1]["loss_D_face"])
    assert any(not torch.equal(a, b) for a, b in zip(start, st.D_face.parameters()))
    save_state(st, cfg, tmp_path / "s.pt")
    straight = [train_step(st, data, cfg, dev) for _ in range(2)]
    resumed = load_state(tmp_path / "s.pt", cfg, data, dev)
    assert [train_step(resumed, data, cfg, dev) for _ in range(2)] == straight
    assert all(torch.equal(a, b) for a, b in zip(st.D_face.state_dict().values(), resumed.D_face.state_dict().values()))
    lighter = load_state(tmp_path / "s.pt", dataclasses.replace(cfg, face_d=0.5), data, dev)  # its weight may change
    assert lighter.D_face is not None
    with pytest.raises(ValueError, match="different face_d"):
        load_state(tmp_path / "s.pt", dataclasses.replace(cfg, face_d=0.0), data, dev)
    with pytest.raises(ValueError, match="different face_d"):
        plain = dataclasses.replace(cfg, face_d=0.0)
        save_state(build_state(plain, data, dev), plain, tmp_path / "plain.pt")
        load_state(tmp_path / "plain.pt", cfg, data, dev)


def test_face_discriminator_architecture_is_its_own_and_kept_by_a_resume(tmp_path):
    data, dev = _body_data(), torch.device("cpu")
    cfg = TrainConfig(batch=4, face_d=1.0, d_arch="conv", face_d_arch="resnet", **TINY)
    st = build_state(cfg, data, dev)
    assert isinstance(st.D, ConvDiscriminator) and isinstance(st.D_face, Discriminator)
    assert isinstance(build_state(dataclasses.replace(cfg, face_d_arch=None), data, dev).D_face, ConvDiscriminator)
    assert math.isfinite(train_step(st, data, cfg, dev)["loss_D_face"])
    save_state(st, cfg, tmp_path / "s.pt")
    assert isinstance(load_state(tmp_path / "s.pt", cfg, data, dev).D_face, Discriminator)
    for other in ("conv", None):  # None: the same as --d-arch, conv here
        with pytest.raises(ValueError, match="different face_d_arch .face_d_arch=resnet"):
            load_state(tmp_path / "s.pt", dataclasses.replace(cfg, face_d_arch=other), data, dev)
    with pytest.raises(ValueError, match="unknown discriminator architecture"):
        TrainConfig(face_d=1.0, face_d_arch="vit")


def test_train_cli_face_discriminator(tmp_path):
    data = _folder(tmp_path / "ds", h=32, w=16)
    out = tmp_path / "o"
    r = run("train", "--data", data, "--outdir", out, "--kimg", "0.008", "--batch", "4", "--face-d", "1",
            "--d-arch", "conv", "--snapshot-kimg", "0.008", *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["face_d"] == 1.0 and "loss_D_face" in report["last_losses"]
    assert "D_face" in torch.load(out / "state-000000.pt", weights_only=True)
    (data / "dataset.json").unlink()
    base = ["train", "--data", data, "--outdir", tmp_path / "o2", "--kimg", "0.004", *TINY_ARGS]
    assert_one_line_error(run(*base, "--face-d", "1"), "needs a body dataset with a face prior")
    assert not (tmp_path / "o2" / "report.json").exists()
    assert run(*base, "--face-d", "-1").returncode != 0


@pytest.mark.skipif(not shutil.which("torchrun", path=os.path.dirname(sys.executable)), reason="torchrun missing")
@pytest.mark.parametrize("disc", [[], ["--d-arch", "conv", "--proj-d", "1", "--d-head-width", "0.25"]],
                         ids=["resnet", "conv+projected"])
def test_two_process_gloo_equals_one_process(tmp_path, disc):
    data = _folder(tmp_path / "ds")
    args = ["train", "--data", str(data), "--kimg", "0.012", "--batch", "4", "--snapshot-kimg", "1", *TINY_ARGS, *disc]
    one = subprocess.run([sys.executable, "-m", "insetgan", "--quiet", *args, "--batch-gpu", "2",
                          "--outdir", str(tmp_path / "one")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert one.returncode == 0, one.stderr
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    two = subprocess.run([torchrun, "--nproc_per_node=2", "-m", "insetgan", "--quiet", *args,
                          "--outdir", str(tmp_path / "two")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert two.returncode == 0, two.stderr
    a = torch.load(next((tmp_path / "one").glob("state-*.pt")), weights_only=True)
    b = torch.load(next((tmp_path / "two").glob("state-*.pt")), weights_only=True)
    assert a["step"] == b["step"] == 3
    # Float rounding differs with the split; Adam's first steps turn a rounding-level difference in a near-zero
    # gradient into part of a step (lr 0.0025), which the projected critic's many small gradients show.
    atol = 1e-3 if disc else 1e-4
    for net in ("G", "D", "G_ema") + (("D_proj",) if disc else ()):
        for k in a[net]:
            torch.testing.assert_close(a[net][k], b[net][k], atol=atol, rtol=1e-4, msg=f"{net}.{k}")
    changed = any(not torch.equal(a["G"][k], v) for k, v in build_state(
        TrainConfig(batch=4, **TINY), _data(h=16, w=8), torch.device("cpu")).G.state_dict().items()
        if not k.endswith("noise_const"))
    assert changed  # the runs trained (not just two copies of the initial weights)


def test_prepare_then_train_end_to_end(tmp_path):
    from tests.conftest import SHARED

    photos, labels = SHARED / "data" / "ccp" / "photos", SHARED / "data" / "ccp" / "labels"
    if not labels.is_dir():
        pytest.skip("../shared/data/ccp missing")
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(labels.glob("*.png"))[:3]:
        shutil.copy(photos / f"{p.stem}.jpg", src)
    r = run("--quiet", "prepare", "bodies", src, "--labels", labels, "--height", "32", "--width", "16",
            "--out", tmp_path / "bodies", "--zip")
    assert r.returncode == 0, r.stderr
    r = run("--quiet", "train", "--data", tmp_path / "bodies", "--outdir", tmp_path / "run", "--kimg", "0.004",
            "--batch", "4", *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    meta = read_metadata(tmp_path / "run" / "network-latest.safetensors")
    priors = json.loads(meta["region_priors"])
    assert set(priors) >= {"face"} and len(priors["face"]) == 4
    from insetgan.models import region_priors
    assert region_priors(meta)["face"] == tuple(priors["face"])  # what compose reads from the network
    assert load_generator(tmp_path / "run" / "network-latest.safetensors").img_shape == (3, 32, 16)


def test_pack_dataset_for_carrying(tmp_path):
    folder = _folder(tmp_path / "ds", n=4, h=32, w=16)
    packed = tmp_path / "packed.zip"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "pack_dataset.py"), str(folder), str(packed)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    a, b = load_dataset(folder), load_dataset(packed)
    assert b.images.shape == a.images.shape and b.meta["priors"] == a.meta["priors"]
    assert b.meta["packed"]["format"] == "jpeg"
    assert (b.images.float() - a.images.float()).abs().mean() < 30  # lossy, but the same images in the same order
    assert packed.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_states_networks_and_zips_get_the_plain_file_mode(tmp_path):
    """Atomic writers go through mkstemp (0600); what they leave must have a plain open()'s mode."""
    from insetgan.networks import native

    data, dev = _data(), torch.device("cpu")
    cfg = TrainConfig(batch=4, **TINY)
    st = build_state(cfg, data, dev)
    save_state(st, cfg, tmp_path / "s.pt")
    native.save(st.G_ema, tmp_path / "g.safetensors")
    r = run("--quiet", "prepare", "faces", REPO / "examples", "--out", tmp_path / "faces", "--zip")
    assert r.returncode == 0, r.stderr
    for f in (tmp_path / "s.pt", tmp_path / "g.safetensors", tmp_path / "faces" / "images.zip"):
        assert f.stat().st_mode & 0o777 == 0o666 & ~_umask(), f
    assert load_state(tmp_path / "s.pt", cfg, data, dev).step == 0


def test_default_models_recipe_picks_each_models_discriminator(tmp_path):
    """scripts/train_default_models.sh: the body trains against the plain discriminator (lr 0.001, 4 kimg warm-up
    from the shipped file), the face and shoes against StyleGAN2's (12 kimg); a state already there is resumed."""
    env = {**os.environ, "BIN": "echo", "RUNS": str(tmp_path / "runs"), "DATA": str(tmp_path), "INIT": "shipped"}
    script = str(REPO / "scripts" / "train_default_models.sh")

    def command(model: str, **extra: str) -> list[str]:
        r = subprocess.run(["bash", script, "train", model], capture_output=True, text=True, timeout=60,
                           env={**env, **extra})
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    def value(args: list[str], flag: str) -> str:
        return args[args.index(flag) + 1]

    body = command("body")
    assert (value(body, "--d-arch"), value(body, "--lr-d"), value(body, "--d-warmup-kimg")) == ("conv", "0.001", "4")
    assert value(body, "--init") == "default-body" and value(body, "--lr") == "0.002"
    for model in ("face", "shoes"):
        args = command(model)
        assert value(args, "--d-arch") == "resnet" and "--lr-d" not in args and value(args, "--d-warmup-kimg") == "12"
    assert value(command("face", D_ARCH_FACE="conv", LR_D_FACE="0.0005"), "--lr-d") == "0.0005"
    assert value(command("body", AUG_BODY="color,translation"), "--aug") == "color,translation"
    assert "--face-d" not in body and value(command("body", FACE_D_BODY="1"), "--face-d") == "1"
    assert value(command("body", FACE_D_BODY="1", FACE_D_ARCH_BODY="resnet"), "--face-d-arch") == "resnet"
    run_dir = tmp_path / "runs" / "body256"
    run_dir.mkdir(parents=True)
    (run_dir / "state-000160.pt").write_bytes(b"")
    resumed = command("body")
    assert value(resumed, "--resume").endswith("state-000160.pt") and "--init" not in resumed
