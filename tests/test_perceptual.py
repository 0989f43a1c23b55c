"""Our LPIPS against the published formula (on fixed random backbones), search order, fallback."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from insetgan.eval.seams import ssim
from insetgan.inversion import perceptual
from insetgan.inversion.perceptual import LPIPS, PERCEPTUAL_SPECS, find_backbone, l1_ssim, load_perceptual
from tests.conftest import SHARED

ALEX_FILE, VGG_FILE = "alexnet-owt-7be5be79.pth", "vgg16-397923af.pth"
ALEX_CONVS = {0: (3, 64, 11), 3: (64, 192, 5), 6: (192, 384, 3), 8: (384, 256, 3), 10: (256, 256, 3)}
VGG_CONVS = dict(zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
                     ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                      (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512))))


def random_backbone(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-named state dict with He-scaled random weights and some classifier keys."""
    g = torch.Generator().manual_seed(seed)
    convs = ALEX_CONVS if net == "alex" else {i: (ci, co, 3) for i, (ci, co) in VGG_CONVS.items()}
    sd = {}
    for i, (ci, co, k) in convs.items():
        sd[f"features.{i}.weight"] = torch.randn(co, ci, k, k, generator=g) * (2 / (ci * k * k)) ** 0.5
        sd[f"features.{i}.bias"] = torch.randn(co, generator=g) * 0.05
    sd["classifier.1.weight"] = torch.randn(10, 20, generator=g)
    sd["classifier.1.bias"] = torch.randn(10, generator=g)
    return sd


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    """Random backbones saved under the torchvision file names, one folder each."""
    out = {}
    for net, name in (("alex", ALEX_FILE), ("vgg", VGG_FILE)):
        folder = tmp_path_factory.mktemp(net)
        sd = random_backbone(net)
        torch.save(sd, folder / name)
        out[net] = (sd, folder)
    return out


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No INSETGAN_WEIGHTS, and an empty torch hub cache."""
    monkeypatch.delenv("INSETGAN_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path


def reference_lpips(net: str, sd: dict, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 written out with plain functional calls on the state-dict tensors."""
    heads = torch.load(perceptual.HEADS_DIR / f"{net}.pth", map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def conv(x, i, stride=1, pad=1):
        return F.relu(F.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], stride, pad))

    def feats(x):
        x = (x - shift) / scale
        if net == "alex":
            f1 = conv(x, 0, 4, 2)
            f2 = conv(F.max_pool2d(f1, 3, 2), 3, 1, 2)
            f3 = conv(F.max_pool2d(f2, 3, 2), 6)
            f4 = conv(f3, 8)
            return [f1, f2, f3, f4, conv(f4, 10)]
        f1 = conv(conv(x, 0), 2)
        f2 = conv(conv(F.max_pool2d(f1, 2, 2), 5), 7)
        f3 = conv(conv(conv(F.max_pool2d(f2, 2, 2), 10), 12), 14)
        f4 = conv(conv(conv(F.max_pool2d(f3, 2, 2), 17), 19), 21)
        return [f1, f2, f3, f4, conv(conv(conv(F.max_pool2d(f4, 2, 2), 24), 26), 28)]

    total = torch.zeros(a.shape[0])
    for i, (fa, fb) in enumerate(zip(feats(a), feats(b))):
        fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = heads[f"lin{i}.model.1.weight"]
        total += ((fa - fb) ** 2 * w.view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
    return total


@pytest.mark.parametrize("net", ["alex", "vgg"])
@pytest.mark.parametrize("size", [(48, 48), (32, 64)])
def test_lpips_matches_formula(net, size, backbones):
    sd, folder = backbones[net]
    model = LPIPS(net, torch.load(folder / (ALEX_FILE if net == "alex" else VGG_FILE), weights_only=True))
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, *size, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(2, 3, *size, generator=g)).clamp(-1, 1)
    got, want = model(a, b), reference_lpips(net, sd, a, b)
    assert got.shape == (2,)
    assert (want > 0).all()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_lpips_properties(backbones):
    model = LPIPS("alex", backbones["alex"][0])
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 40, 40, generator=g) * 2 - 1, torch.rand(2, 3, 40, 40, generator=g) * 2 - 1
    assert torch.equal(model(a, a), torch.zeros(2))
    torch.testing.assert_close(model(a, b), model(b, a))
    assert (model(a, b) > 0).all()
    x = a.clone().requires_grad_(True)
    model(x, b).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_lpips_max_size_downsamples(backbones):
    model = LPIPS("vgg", backbones["vgg"][0], max_size=64)
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 128, 128, generator=g) * 2 - 1, torch.rand(1, 3, 128, 128, generator=g) * 2 - 1
    small = [F.interpolate(t, size=(64, 64), mode="area") for t in (a, b)]
    torch.testing.assert_close(model(a, b), LPIPS("vgg", backbones["vgg"][0], max_size=None)(*small))
    big = torch.rand(1, 3, 512, 512, generator=g) * 2 - 1
    d = LPIPS("alex", backbones["alex"][0])(big, big.flip(-1))  # default max_size=256
    assert torch.isfinite(d).all() and d.item() > 0


def test_lpips_small_and_grey_inputs(backbones):
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1, torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    model = LPIPS("alex", backbones["alex"][0])
    up = [F.interpolate(t.expand(-1, 3, -1, -1), size=(32, 32), mode="bilinear", align_corners=False)
          for t in (a, b)]
    torch.testing.assert_close(model(a, b), model(*up))  # grey = same value in every channel, 16 px → 32 px
    assert (model(a, b) > 0).all() and float(model(a, a).abs().max()) == 0


def test_backbone_state_dict_checked(backbones):
    sd = dict(backbones["alex"][0])
    del sd["features.10.bias"]
    with pytest.raises(ValueError, match="features|10.bias"):
        LPIPS("alex", sd)
    with pytest.raises(ValueError, match="unknown LPIPS backbone"):
        LPIPS("squeeze", sd)


def test_heads_shipped_with_package():
    for name in ("alex.pth", "vgg.pth", "LICENSE-lpips.txt"):
        assert (perceptual.HEADS_DIR / name).is_file()
    assert "Redistribution" in (perceptual.HEADS_DIR / "LICENSE-lpips.txt").read_text()
    shared = SHARED / "weights" / "lpips"
    if not shared.is_dir():
        pytest.skip(f"{shared} not found")
    for net in ("alex", "vgg"):
        ours = torch.load(perceptual.HEADS_DIR / f"{net}.pth", map_location="cpu", weights_only=True)
        theirs = torch.load(shared / f"{net}.pth", map_location="cpu", weights_only=True)
        assert ours.keys() == theirs.keys() and len(ours) == 5
        for k in ours:
            assert torch.equal(ours[k].cpu(), theirs[k].cpu())


def test_search_order(clean_env, monkeypatch):
    dirs = {}
    for place in ("explicit", "env", "torch_home/hub/checkpoints"):
        dirs[place] = clean_env / place
        dirs[place].mkdir(parents=True)
        (dirs[place] / VGG_FILE).write_bytes(b"x")
    monkeypatch.setenv("TORCH_HOME", str(clean_env / "torch_home"))
    monkeypatch.setenv("INSETGAN_WEIGHTS", str(dirs["env"]))
    assert find_backbone("vgg", str(dirs["explicit"])) == dirs["explicit"] / VGG_FILE
    assert find_backbone("vgg", dirs["explicit"] / VGG_FILE) == dirs["explicit"] / VGG_FILE
    assert find_backbone("vgg") == dirs["env"] / VGG_FILE
    monkeypatch.delenv("INSETGAN_WEIGHTS")
    assert find_backbone("vgg") == dirs["torch_home/hub/checkpoints"] / VGG_FILE
    assert find_backbone("alex") is None
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_env))
    assert find_backbone("vgg") is None
    (clean_env / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (clean_env / "torch" / "hub" / "checkpoints" / VGG_FILE).write_bytes(b"x")
    assert find_backbone("vgg") == clean_env / "torch" / "hub" / "checkpoints" / VGG_FILE
    with pytest.raises(ValueError, match=VGG_FILE):
        find_backbone("vgg", str(clean_env / "nowhere"))
    with pytest.raises(ValueError, match="not found"):
        find_backbone("vgg", str(clean_env))  # a folder without the file


def test_load_perceptual_fallback_and_errors(clean_env, caplog):
    with caplog.at_level(logging.WARNING, logger="insetgan.inversion.perceptual"):
        choice = load_perceptual("auto")
    assert choice.name == "l1-ssim" and choice.fn is l1_ssim
    assert VGG_FILE in choice.notice and "\n" not in choice.notice
    assert "INSETGAN_WEIGHTS" in choice.notice and str(clean_env / "torch_home") in choice.notice
    assert [r.getMessage() for r in caplog.records] == [choice.notice]
    with pytest.raises(ValueError, match=VGG_FILE):
        load_perceptual("lpips-vgg")
    with pytest.raises(ValueError, match=ALEX_FILE):
        load_perceptual("lpips-alex")
    with pytest.raises(ValueError, match="lpips-vgg"):
        load_perceptual("lpips")
    assert load_perceptual("l1-ssim").notice is None
    assert PERCEPTUAL_SPECS == ("auto", "lpips-vgg", "lpips-alex", "effnet-lite0", "l1-ssim")


def test_load_perceptual_finds_backbones(clean_env, monkeypatch, backbones):
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = x.flip(-1)
    choice = load_perceptual("lpips-alex", weights=str(backbones["alex"][1]))
    assert choice.name == "lpips-alex" and choice.notice is None
    want = reference_lpips("alex", backbones["alex"][0], x, y)
    torch.testing.assert_close(choice.fn(x, y), want, rtol=1e-5, atol=1e-7)
    monkeypatch.setenv("INSETGAN_WEIGHTS", str(backbones["vgg"][1]))
    choice = load_perceptual("auto")
    assert choice.name == "lpips-vgg" and choice.notice is None and isinstance(choice.fn, LPIPS)


def test_ssim_and_l1_ssim():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 64, 48, generator=g) * 2 - 1
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    torch.testing.assert_close(l1_ssim(x, x), torch.zeros(2))
    noise = torch.randn(x.shape, generator=g)
    s = [ssim(x, x + k * noise)[0].item() for k in (0.05, 0.2, 0.5)]
    d = [l1_ssim(x, x + k * noise)[0].item() for k in (0.05, 0.2, 0.5)]
    assert 1 > s[0] > s[1] > s[2]
    assert 0 < d[0] < d[1] < d[2]
    y = (x + 0.2 * noise).requires_grad_(True)
    l1_ssim(x, y).sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    small = x[:, :, :20, :20]  # pyramid stops before 10 px: a single level = L1 + 1 - SSIM
    z = small + 0.1 * noise[:, :, :20, :20]
    torch.testing.assert_close(l1_ssim(small, z), (small - z).abs().mean((1, 2, 3)) + 1 - ssim(small, z))
    with pytest.raises(ValueError):
        ssim(x[:, :, :8], x[:, :, :8])
