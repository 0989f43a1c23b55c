"""An encoder from images to a generator's W+ (pSp/e4e style) on the pretrained EfficientNet-Lite0.

The backbone is EfficientNet-Lite0 up to its stride-32 stage (:mod:`insetgan.networks.efficientnet_lite`),
trainable here, its input normalisation inside. A small feature pyramid (pSp, Richardson et al. 2021)
turns the features at strides 8, 16 and 32 into maps of ``width`` channels: a 1×1 lateral
convolution per stride, each coarser map upsampled and added to the next finer one. Each group of
W+ rows has one head on the map of its stride (coarse rows on stride 32, middle rows on 16, fine
rows on 8, as pSp splits them): stride-2 3×3 convolutions down to at most 2×2 positions, then a
linear layer to ``rows × w_dim`` values.

As in e4e (Tov et al. 2021), the heads predict offsets: row 0 is ``w_avg + base``, every other row
``w_avg + base + delta_i``. The deltas are what the trainer regularises (so W+ stays close to W) and
what :meth:`Encoder.predict` can switch off row by row (progressive training). The generator's
``w_avg`` is a buffer of the encoder, stored with it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from insetgan.errors import InsetganError
from insetgan.networks.efficientnet_lite import (FEATURE_BLOCKS, FEATURE_CHANNELS, EfficientNetLite0,
                                                 load_efficientnet_lite0)
from insetgan.networks.errors import short_repr, short_text
from insetgan.networks.fields import Field, check_fields, coerce_fields

STRIDES = (8, 16, 32)  # the pyramid levels the heads read
_LEVEL_CHANNELS = dict(zip((4, 8, 16, 32), FEATURE_CHANNELS))
MAX_GROUPS = 64

ENCODER_FIELDS: Mapping[str, Field] = MappingProxyType({
    "input_height": Field("int", 32, 1024),
    "input_width": Field("int", 32, 1024),
    "num_ws": Field("int", 1, 64),
    "w_dim": Field("int", 1, 1024),
    "width": Field("int", 8, 512),
})


def row_resolution(row: int) -> int:
    """The resolution a StyleGAN2 W+ row drives: rows 0 (4×4), 1-2 (8×8), 3-4 (16×16), … (the last: toRGB)."""
    return 4 * 2 ** ((row + 1) // 2)


def default_groups(num_ws: int) -> tuple[tuple[int, int, int], ...]:
    """pSp's split as ``(stride, first row, end row)``: rows up to 8×8 coarse, 16-32 middle, the rest fine."""
    groups, start = [], 0
    for stride, top in ((32, 8), (16, 32), (8, None)):
        end = start
        while end < num_ws and (top is None or row_resolution(end) <= top):
            end += 1
        if end > start:
            groups.append((stride, start, end))
        start = end
    return tuple(groups)


@dataclass(frozen=True)
class EncoderConfig:
    """The encoder's shape: input size, the generator's W+ size, pyramid width, rows per head.

    ``groups`` lists ``(stride, first row, end row)`` per head, in row order, covering every row
    once; empty means :func:`default_groups`.
    """

    input_height: int = 128
    input_width: int = 128
    num_ws: int = 10
    w_dim: int = 128
    width: int = 128
    groups: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        check_fields(self, ENCODER_FIELDS, "encoder config")
        if self.input_height % 32 or self.input_width % 32:
            raise InsetganError(f"the encoder's input size must be a multiple of 32, got "
                                f"{self.input_height}x{self.input_width}")
        if not self.groups:
            object.__setattr__(self, "groups", default_groups(self.num_ws))
        _check_groups(self.groups, self.num_ws)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The config as compact JSON (stored in encoder files)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> "EncoderConfig":
        """Inverse of :meth:`to_dict`; unknown keys and invalid values raise :class:`InsetganError`."""
        if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
            raise InsetganError(f"an encoder config must be a mapping of field names, got {short_repr(d)}")
        unknown = set(d) - set(ENCODER_FIELDS) - {"groups"}
        if unknown:
            raise InsetganError(f"unknown encoder config keys: {short_text(', '.join(sorted(unknown)), 200)}")
        values = coerce_fields({k: v for k, v in d.items() if k != "groups"}, ENCODER_FIELDS)
        groups = d.get("groups", [])
        if not isinstance(groups, list) or len(groups) > MAX_GROUPS or not all(
                isinstance(g, list) and len(g) == 3 and all(type(v) is int for v in g) for g in groups):
            raise InsetganError(f"encoder config groups must be up to {MAX_GROUPS} [stride, first, end] "
                                f"integer triples, got {short_repr(groups)}")
        return cls(**values, groups=tuple(tuple(g) for g in groups))


def _check_groups(groups: Any, num_ws: int) -> None:
    """Refuse groups that are not contiguous ``(stride, first, end)`` triples covering rows 0..num_ws-1."""
    row = 0
    for g in groups:
        if not (isinstance(g, tuple) and len(g) == 3 and all(type(v) is int for v in g)):
            raise InsetganError(f"encoder group {short_repr(g)} is not a (stride, first row, end row) triple")
        stride, first, end = g
        if stride not in STRIDES:
            raise InsetganError(f"encoder group {g}: the stride must be one of {', '.join(map(str, STRIDES))}")
        if first != row or end <= first:
            raise InsetganError(f"encoder group {g}: groups must cover the rows 0..{num_ws - 1} in order, "
                                f"each at least one row")
        row = end
    if row != num_ws:
        raise InsetganError(f"encoder groups cover {row} rows, the generator has {num_ws}")


def config_for(G: nn.Module, width: int = 128, scale: float = 2.0) -> EncoderConfig:
    """An encoder config for generator ``G``: its W+ size, input ``scale``× its image (a multiple of 32)."""
    _, H, W = G.img_shape

    def side(n: int) -> int:
        return min(max(32, int(round(n * scale / 32)) * 32), 1024)

    return EncoderConfig(input_height=side(H), input_width=side(W), num_ws=G.num_ws, w_dim=G.w_dim, width=width)


def resize_to(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``img`` [N, C, H, W] at ``height``×``width``: area averaging to shrink, bilinear to enlarge."""
    h, w = img.shape[-2:]
    if (h, w) == (height, width):
        return img
    mode = "area" if h >= height and w >= width else "bilinear"
    return F.interpolate(img, size=(height, width), mode=mode, **({} if mode == "area" else {"align_corners": False}))


class Head(nn.Module):
    """Stride-2 3×3 convolutions (LeakyReLU 0.2) down to at most 2×2 positions, then a linear layer."""

    def __init__(self, width: int, size: tuple[int, int], outputs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        h, w = size
        while h > 2 or w > 2:
            layers += [nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(0.2)]
            h, w = (h + 1) // 2, (w + 1) // 2
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(width * h * w, outputs)
        with torch.no_grad():  # a new encoder predicts w_avg for every image
            self.fc.weight.zero_()
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Offsets [N, outputs] of a pyramid map [N, width, h, w]."""
        return self.fc(self.convs(x).flatten(1))


class Encoder(nn.Module):
    """Images in [-1, 1] (any size; resized to the config's input) → W+ [N, num_ws, w_dim]."""

    def __init__(self, cfg: EncoderConfig, backbone: EfficientNetLite0 | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        net = backbone if backbone is not None else EfficientNetLite0()
        self.stem = net.stem
        self.blocks = nn.ModuleList(list(net.blocks)[: FEATURE_BLOCKS[-1] + 1])
        self.lateral = nn.ModuleList(nn.Conv2d(_LEVEL_CHANNELS[s], cfg.width, 1) for s in STRIDES)
        self.heads = nn.ModuleList(
            Head(cfg.width, (cfg.input_height // stride, cfg.input_width // stride), (end - first) * cfg.w_dim)
            for stride, first, end in cfg.groups)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def pyramid(self, img: torch.Tensor) -> dict[int, torch.Tensor]:
        """The pyramid maps {stride: [N, width, H/stride, W/stride]} of images in [-1, 1]."""
        x = resize_to(img, self.cfg.input_height, self.cfg.input_width)
        x = F.relu6(self.stem(EfficientNetLite0.normalize(x)))
        feats = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in FEATURE_BLOCKS:
                feats[4 * 2 ** FEATURE_BLOCKS.index(i)] = x
        out: dict[int, torch.Tensor] = {}
        above = None
        for stride, lateral in reversed(list(zip(STRIDES, self.lateral))):
            p = lateral(feats[stride])
            if above is not None:
                p = p + F.interpolate(above, size=p.shape[-2:], mode="bilinear", align_corners=False)
            out[stride] = above = p
        return out

    def predict(self, img: torch.Tensor, active_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(W+ [N, num_ws, w_dim], the deltas [N, num_ws - 1, w_dim]) of ``img`` [N, C, H, W] in [-1, 1].

        Rows from ``active_rows`` on get no delta (they repeat row 0): e4e's progressive training.
        """
        if img.ndim != 4 or img.shape[1] != 3:
            raise InsetganError(f"the encoder takes RGB images [N, 3, H, W], got {list(img.shape)}")
        maps = self.pyramid(img)
        n, cfg = img.shape[0], self.cfg
        offsets = torch.cat([head(maps[stride]).view(n, end - first, cfg.w_dim)
                             for head, (stride, first, end) in zip(self.heads, cfg.groups)], dim=1)
        base, deltas = offsets[:, :1], offsets[:, 1:]
        if active_rows is not None and active_rows < cfg.num_ws:
            keep = (torch.arange(1, cfg.num_ws, device=img.device) < active_rows).to(deltas.dtype)
            deltas = deltas * keep.view(1, -1, 1)
        ws = self.w_avg.view(1, 1, -1) + base + torch.cat([torch.zeros_like(base), deltas], dim=1)
        return ws, deltas

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """W+ [N, num_ws, w_dim] of images [N, 3, H, W] in [-1, 1]."""
        return self.predict(img)[0]


def build_encoder(cfg: EncoderConfig, G: nn.Module | None = None, pretrained: bool = True) -> Encoder:
    """A new encoder: the pretrained backbone (trainable) when ``pretrained``, ``G``'s ``w_avg`` when given."""
    backbone = load_efficientnet_lite0().requires_grad_(True).train() if pretrained else None
    enc = Encoder(cfg, backbone)
    if G is not None:
        if (G.num_ws, G.w_dim) != (cfg.num_ws, cfg.w_dim):
            raise InsetganError(f"the encoder config is for W+ {cfg.num_ws}x{cfg.w_dim}, the generator has "
                                f"{G.num_ws}x{G.w_dim}")
        with torch.no_grad():
            enc.w_avg.copy_(G.w_avg.detach().to("cpu", torch.float32))
    return enc
