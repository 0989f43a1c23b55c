"""The training run's hyper-parameters (:class:`TrainConfig`) and their checks.

The fields a user sets are declared with :func:`insetgan.jobs.options.option` (help text, range,
choices): ``insetgan train`` generates its options from them and ``__post_init__`` checks them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from insetgan.errors import InsetganError
from insetgan.jobs.options import check_values, option
from insetgan.limits import SEED_RANGE, Range
from insetgan.method.losses import WEIGHT_RANGE
from insetgan.networks.discriminator import ARCHITECTURES, check_architecture
from insetgan.train.augment import parse_policy

MAX_KIMG = 100_000.0  # 10^8 images (StyleGAN2's FFHQ run showed 25,000 kimg)
KIMG = Range(0.001, MAX_KIMG)
NON_NEGATIVE_KIMG = Range(0, MAX_KIMG)
LR = Range(0, 1.0, lo_open=True)
BATCH = Range(1, 4096, integer=True)
CHANNEL_BASE = Range(1, 1 << 17, integer=True)
CHANNEL_MAX = Range(1, 4096, integer=True)


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (StyleGAN2 defaults scaled for small models)."""

    kimg: float = option(200.0, "Train until this many thousand real images were shown.", range=KIMG)
    batch: int = option(32, "Global batch size.", range=BATCH)
    batch_gpu: int | None = option(None, "Samples per forward pass (gradient accumulation).", range=BATCH)
    gamma: float = option(1.0, "R1 weight.", range=Range(0, 10_000))
    ema_kimg: float = option(10.0, "", range=NON_NEGATIVE_KIMG)
    ema_rampup: float | None = 0.05
    lr: float = option(0.0025, "", range=LR)
    lr_d: float | None = option(None, "Discriminator lr (two time-scale updates)  [default: --lr]", range=LR)
    lr_drop_kimg: float | None = option(None, "Halve both lrs from K kimg on (a run that has flattened out continues "
                                        "finer)  [default: never]", metavar="K", range=NON_NEGATIVE_KIMG)
    beta1: float = 0.0
    beta2: float = 0.99
    r1_interval: int = 16
    style_mixing: float = 0.9
    aug: str = option("color,translation,cutout", "DiffAugment policies ('' for none).")
    xflip: bool = option(True, "Mirror real images at random.")
    noise: bool = option(True, "Per-pixel noise inputs (--no-noise: strengths stay 0, details come from the "
                         "latents only).")
    z_dim: int = option(512, "z and w size.", range=Range(1, 4096, integer=True))
    w_dim: int = 512
    map_layers: int = option(8, "", range=Range(1, 32, integer=True))
    channel_base: int = option(16384, "", range=CHANNEL_BASE)
    channel_max: int = option(512, "", range=CHANNEL_MAX)
    d_channel_base: int | None = option(None, "Discriminator channel base (a wider teacher for a small generator)  "
                                        "[default: --channel-base]", range=CHANNEL_BASE)
    d_channel_max: int | None = option(None, "Discriminator channel maximum  [default: --channel-max]",
                                       range=CHANNEL_MAX)
    d_arch: str = option("resnet", "Discriminator: StyleGAN2's residual one, plain strided convolutions (learns "
                         "sooner and runs faster at small widths on a CPU; use --lr-d 0.001), or projected (frozen "
                         "ImageNet features, hinge loss, no R1; use --aug color,translation,cutout).",
                         choices=ARCHITECTURES)
    d_feature_res: int | None = option(None, "Projected discriminator: the feature network's input size, long side "
                                       "(a power of two; smaller is faster)  [default: the image's]",
                                       metavar="PIXELS", range=Range(64, 1024, integer=True))
    d_head_width: float = option(0.5, "Projected discriminator: width multiplier of its projections and "
                                 "per-scale discriminators.", range=Range(0.0625, 4))
    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0
    mbstd_group: int = 4
    mbstd_channels: int = option(1, "Discriminator minibatch-std features (channel groups, each its own "
                                 "statistic).", range=Range(1, 64, integer=True))
    seed: int = option(0, "", range=SEED_RANGE)
    snapshot_kimg: float = option(10.0, "", range=KIMG)
    grid: int = 16
    d_warmup_kimg: float = option(0.0, "With --init: train only the new discriminator for this many kimg first.",
                                  range=NON_NEGATIVE_KIMG)
    face_d: float = option(0.0, "Body datasets: a second discriminator (same kind) that sees only a square around "
                           "the face prior; WEIGHT scales its loss in G's (0: off).", metavar="WEIGHT",
                           range=WEIGHT_RANGE)
    face_d_arch: str | None = option(None, "The face discriminator's architecture  [default: --d-arch]",
                                     choices=ARCHITECTURES)
    proj_d: float = option(0.0, "A projected discriminator beside the resnet/conv one (hinge loss, no R1, "
                           "--d-feature-res, --d-head-width); WEIGHT scales its loss in G's (0: off).",
                           metavar="WEIGHT", range=WEIGHT_RANGE)

    def __post_init__(self) -> None:
        if self.batch < 1 or self.kimg <= 0 or self.lr <= 0 or self.gamma < 0 or self.r1_interval < 1:
            raise InsetganError("need batch >= 1, kimg > 0, lr > 0, gamma >= 0 and r1_interval >= 1")
        if not self.face_d >= 0:
            raise InsetganError(f"the face discriminator's weight must be >= 0, got {self.face_d}")
        if not self.proj_d >= 0:
            raise InsetganError(f"the projected discriminator's weight must be >= 0, got {self.proj_d}")
        if self.proj_d > 0 and self.d_arch == "projected":
            raise InsetganError("--proj-d adds a projected discriminator beside a resnet or conv one: "
                                "--d-arch projected already is one")
        if not self.d_warmup_kimg >= 0:
            raise InsetganError(f"the discriminator warm-up must be >= 0 kimg, got {self.d_warmup_kimg}")
        if self.lr_d is not None and self.lr_d <= 0:
            raise InsetganError(f"the discriminator's lr must be > 0, got {self.lr_d}")
        if self.lr_drop_kimg is not None and not self.lr_drop_kimg >= 0:
            raise InsetganError(f"the lr drop must be at >= 0 kimg, got {self.lr_drop_kimg}")
        if self.batch_gpu is not None and (self.batch_gpu < 1 or self.batch % self.batch_gpu):
            raise InsetganError(f"--batch {self.batch} must be a multiple of --batch-gpu {self.batch_gpu}")
        if self.map_layers < 1 or min(self.channel_base, self.channel_max, *self.d_channels) < 1:
            raise InsetganError("map_layers and the channel bases and maxima must be >= 1")
        c4 = min(self.d_channels[0] // 4, self.d_channels[1])
        if self.mbstd_channels < 1 or c4 % self.mbstd_channels:
            raise InsetganError(f"--mbstd-channels {self.mbstd_channels} must divide the discriminator's "
                             f"{c4} channels at 4x4")
        check_architecture(self.d_arch)
        if self.face_d_arch is not None:
            check_architecture(self.face_d_arch)
        parse_policy(self.aug)
        check_values(self)

    @property
    def d_channels(self) -> tuple[int, int]:
        """The discriminator's (channel_base, channel_max)."""
        return (self.channel_base if self.d_channel_base is None else self.d_channel_base,
                self.channel_max if self.d_channel_max is None else self.d_channel_max)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)
