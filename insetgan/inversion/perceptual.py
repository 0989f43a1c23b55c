"""Perceptual image distances: our own LPIPS v0.1, a deep-feature distance on EfficientNet-Lite0, and L1 + SSIM.

LPIPS (Zhang et al., 2018) compares ImageNet backbone features (AlexNet or VGG16) at 5 layers:
each feature map is unit-normalised along channels, the squared difference is weighted by a
learned 1×1 head, averaged over positions and summed over layers. The heads (BSD-2-Clause,
richzhang/PerceptualSimilarity) ship in ``assets/lpips``; the backbones are torchvision's
ImageNet files, which we never download: :func:`find_backbone` looks for them locally and
:func:`load_perceptual` falls back to :func:`l1_ssim`, loudly, when they are missing.
:class:`DeepFeatureDistance` is the LPIPS recipe without learned heads on the pretrained
EfficientNet-Lite0 that the projected discriminator uses (installed as a package): the encoder
trainer's perceptual term, and ``--perceptual effnet-lite0``. It is not the fallback of ``auto``:
measured on the inversion benchmark (docs/PERFORMANCE.md) it reconstructs 64×64 faces with a
lower PSNR and no better identity than l1-ssim, at 1-3× the time per step.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from insetgan.errors import InsetganError
from insetgan.eval.seams import ssim
from insetgan.networks.efficientnet_lite import EfficientNetLite0, load_efficientnet_lite0
from insetgan.networks.state_dicts import load_checked
from insetgan.networks.torch_files import load_torch_file
from insetgan.resources import ASSETS

log = logging.getLogger(__name__)

PERCEPTUAL_SPECS = ("auto", "lpips-vgg", "lpips-alex", "effnet-lite0", "l1-ssim")
HEADS_DIR = ASSETS / "lpips"
BACKBONE_FILES = MappingProxyType({"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"})

# torchvision `features` layouts: (out channels, kernel, stride, padding) convs, each followed
# by a ReLU, and "P<k>" max-pools (stride 2); taps are the indices of the ReLUs LPIPS reads.
_V = (3, 1, 1)
_LAYOUTS = MappingProxyType({
    "alex": (((64, 11, 4, 2), "P3", (192, 5, 1, 2), "P3", (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)),
             (1, 4, 7, 9, 11)),
    "vgg": (((64, *_V), (64, *_V), "P2", (128, *_V), (128, *_V), "P2", (256, *_V), (256, *_V), (256, *_V), "P2",
             (512, *_V), (512, *_V), (512, *_V), "P2", (512, *_V), (512, *_V), (512, *_V)),
            (3, 8, 15, 22, 29)),
})
_SHIFT = (-0.030, -0.088, -0.188)
MIN_SIZE = 32
_SCALE = (0.458, 0.448, 0.450)


def _check_net(net: str) -> str:
    if net not in _LAYOUTS:
        raise InsetganError(f"unknown LPIPS backbone {net!r}; choose one of {', '.join(_LAYOUTS)}")
    return BACKBONE_FILES[net]


def _search_dirs() -> tuple[Path | None, Path]:
    """The implicit folders searched for backbone files, in order.

    ``$INSETGAN_WEIGHTS`` (None when unset), then the torch hub cache
    ``$TORCH_HOME/hub/checkpoints`` with TORCH_HOME defaulting to ``$XDG_CACHE_HOME/torch`` or
    ``~/.cache/torch``.
    """
    env = os.environ.get("INSETGAN_WEIGHTS")
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    torch_home = Path(os.environ.get("TORCH_HOME") or Path(cache) / "torch").expanduser()
    return (Path(env).expanduser() if env else None), torch_home / "hub" / "checkpoints"


def find_backbone(net: str, path: str | os.PathLike | None = None) -> Path | None:
    """Locate torchvision's ImageNet weights for ``net`` ("alex" or "vgg"); None if absent.

    Search order: (1) ``path``, a file or a folder holding the torchvision file name — when
    given it must exist (ValueError otherwise); (2) the folder ``$INSETGAN_WEIGHTS``; (3) the
    torch hub cache ``$TORCH_HOME/hub/checkpoints``, TORCH_HOME defaulting to
    ``$XDG_CACHE_HOME/torch`` or ``~/.cache/torch``. Nothing is downloaded.
    """
    name = _check_net(net)
    if path is not None:
        p = Path(path).expanduser()
        found = p / name if p.is_dir() else p
        if not found.is_file():
            raise InsetganError(f"LPIPS backbone weights not found at {path} "
                             f"(expected a file or a folder holding {name})")
        return found
    for folder in _search_dirs():
        if folder is not None and (folder / name).is_file():
            return folder / name
    return None


def _missing_message(net: str) -> str:
    env_dir, hub_dir = _search_dirs()
    return (f"LPIPS-{net.upper()} backbone weights {_check_net(net)} not found; put torchvision's file at "
            f"an explicit weights path, in the folder $INSETGAN_WEIGHTS ({env_dir or 'unset'}), "
            f"or in the torch hub cache {hub_dir}")


def _make_features(layout: tuple) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for item in layout:
        if isinstance(item, str):
            layers.append(nn.MaxPool2d(int(item[1:]), 2))
        else:
            cout, k, s, p = item
            layers += [nn.Conv2d(cin, cout, k, s, p), nn.ReLU()]
            cin = cout
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with an AlexNet ("alex") or VGG16 ("vgg") backbone, frozen.

    ``backbone`` is a torchvision ImageNet state dict (its ``features.*`` entries are loaded
    strictly, ``classifier.*`` ignored); when None it is read from :func:`find_backbone`'s
    default places, and a missing file raises ValueError. Inputs whose longer side exceeds
    ``max_size`` are area-downsampled, keeping the aspect ratio (None disables this); inputs
    under 32 px are upsampled to 32 (bilinear) so every backbone layer has a spatial extent.
    """

    def __init__(self, net: str = "vgg", backbone: dict[str, Tensor] | None = None, max_size: int | None = 256):
        super().__init__()
        _check_net(net)
        if backbone is None:
            path = find_backbone(net)
            if path is None:
                raise InsetganError(_missing_message(net))
            backbone = load_torch_file(path)
        if not isinstance(backbone, dict) or not all(isinstance(k, str) for k in backbone):
            raise InsetganError(f"backbone is not a torchvision {net} state dict (found a {type(backbone).__name__})")
        layout, self.taps = _LAYOUTS[net]
        self.net, self.max_size = net, max_size
        self.features = _make_features(layout)[: self.taps[-1] + 1]
        feats = {k[len("features."):]: v for k, v in backbone.items() if k.startswith("features.")}
        expected = set(self.features.state_dict())
        if set(feats) != expected:
            raise InsetganError(f"backbone is not a torchvision {net} state dict: "
                             f"missing {sorted(expected - set(feats))[:4]}, "
                             f"unexpected {sorted(set(feats) - expected)[:4]}")
        load_checked(self.features, feats, f"LPIPS-{net.upper()} backbone")
        heads = torch.load(HEADS_DIR / f"{net}.pth", map_location="cpu", weights_only=True)
        for i in range(len(self.taps)):
            self.register_buffer(f"head{i}", heads[f"lin{i}.model.1.weight"].float())
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def _resize(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIZE:  # the backbones' pooling needs at least 32 px (AlexNet)
            f = MIN_SIZE / min(h, w)
            return F.interpolate(x, size=(round(h * f), round(w * f)), mode="bilinear", align_corners=False)
        if self.max_size is None or max(h, w) <= self.max_size:
            return x
        f = self.max_size / max(h, w)
        return F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Distance per image [B] between ``a`` and ``b`` [B, 3, H, W] in [-1, 1]; differentiable."""
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] not in (1, 3):
            raise InsetganError(f"LPIPS needs two [B, 3 or 1, H, W] tensors of one shape, "
                             f"got {tuple(a.shape)}, {tuple(b.shape)}")
        if a.shape[1] == 1:  # grey images: the same value in every colour channel
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        x = (self._resize(torch.cat([a, b])) - self.shift) / self.scale
        total = a.new_zeros(a.shape[0])
        i = 0
        for idx, layer in enumerate(self.features):
            x = layer(x)
            if idx in self.taps:
                n = x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + 1e-10)
                fa, fb = n.chunk(2)
                total = total + F.conv2d((fa - fb) ** 2, getattr(self, f"head{i}")).mean(dim=(1, 2, 3))
                i += 1
        return total


def l1_ssim(a: Tensor, b: Tensor) -> Tensor:
    """Multi-scale L1 + SSIM distance per image [B] for [B, C, H, W] images in [-1, 1].

    Over a 3-level pyramid (2× average pooling) each level adds mean |a − b| + (1 − SSIM); the
    result is the mean over levels. Descending stops when a side gets below the 11-pixel SSIM
    window (:func:`insetgan.eval.seams.ssim`, valid convolution); the first level needs ≥ 11 px.
    """
    terms = []
    for level in range(3):
        if level:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
            if min(a.shape[-2:]) < 11:
                break
        terms.append((a - b).abs().mean(dim=(1, 2, 3)) + 1 - ssim(a, b))
    return torch.stack(terms).mean(dim=0)


class DeepFeatureDistance(nn.Module):
    """A deep-feature distance on the frozen, ImageNet-pretrained EfficientNet-Lite0 (LPIPS without its heads).

    Each stage's features (strides 4, 8, 16, 32) are unit-normalised along channels; the squared
    difference is summed over channels, averaged over positions and summed over stages (so each
    stage adds at most 4). Inputs with a shorter side under ``min_size`` are upsampled to it
    (bilinear; the network saw 224-px photos), those with a longer side over ``max_size``
    area-downsampled, keeping the aspect ratio.
    """

    def __init__(self, net: EfficientNetLite0 | None = None, min_size: int = 128, max_size: int = 256) -> None:
        super().__init__()
        self.net = net if net is not None else load_efficientnet_lite0()
        self.net.requires_grad_(False).eval()
        self.min_size, self.max_size = min_size, max_size

    def _resize(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            f = self.min_size / min(h, w)
            return F.interpolate(x, size=(round(h * f), round(w * f)), mode="bilinear", align_corners=False)
        if max(h, w) > self.max_size:
            f = self.max_size / max(h, w)
            return F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")
        return x

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Distance per image [B] between ``a`` and ``b`` [B, 3 or 1, H, W] in [-1, 1]; differentiable."""
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] not in (1, 3):
            raise InsetganError(f"the feature distance needs two [B, 3 or 1, H, W] tensors of one shape, "
                                f"got {tuple(a.shape)}, {tuple(b.shape)}")
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        total = a.new_zeros(a.shape[0])
        for f in self.net.features(self._resize(torch.cat([a, b]))):
            n = f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + 1e-10)
            fa, fb = n.chunk(2)
            total = total + (fa - fb).square().sum(dim=1).mean(dim=(1, 2))
        return total


@dataclass(frozen=True)
class PerceptualChoice:
    """A perceptual distance ``fn(a, b) -> [B]``, its ``name``, and a ``notice`` when it is a fallback."""

    fn: Callable[[Tensor, Tensor], Tensor]
    name: str
    notice: str | None


def load_perceptual(spec: str = "auto", weights: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu", warn: bool = True) -> PerceptualChoice:
    """Build the perceptual distance named by ``spec`` (one of :data:`PERCEPTUAL_SPECS`).

    "lpips-vgg" / "lpips-alex" need the backbone file (see :func:`find_backbone`, ``weights``
    being the explicit path) and raise InsetganError when it is missing; "effnet-lite0" is
    :class:`DeepFeatureDistance`; "l1-ssim" is the fallback; "auto" is LPIPS-VGG when its
    backbone is found, else l1-ssim with a one-line ``notice`` (also logged as a warning unless
    ``warn=False``, for callers that show it themselves) naming the missing file and where to put it.
    """
    if spec not in PERCEPTUAL_SPECS:
        raise InsetganError(f"unknown perceptual loss {spec!r}; choose one of {', '.join(PERCEPTUAL_SPECS)}")
    if spec == "l1-ssim":
        return PerceptualChoice(l1_ssim, "l1-ssim", None)
    if spec == "effnet-lite0":
        return PerceptualChoice(DeepFeatureDistance().to(device), "effnet-lite0", None)
    net = "alex" if spec == "lpips-alex" else "vgg"
    path = find_backbone(net, weights)
    if path is None:
        if spec != "auto":
            raise InsetganError(_missing_message(net))
        notice = _missing_message(net) + "; using the l1-ssim fallback (multi-scale L1 + SSIM) instead"
        if warn:
            log.warning(notice)
        return PerceptualChoice(l1_ssim, "l1-ssim", notice)
    try:
        model = LPIPS(net, load_torch_file(path)).to(device)
    except InsetganError as exc:
        message = str(exc)
        raise InsetganError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    return PerceptualChoice(model, f"lpips-{net}", None)
