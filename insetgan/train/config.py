"""The training run's hyper-parameters (:class:`TrainConfig`) and their checks."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from insetgan.errors import InsetganError
from insetgan.networks.discriminator import check_architecture
from insetgan.train.augment import parse_policy


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (StyleGAN2 defaults scaled for small models)."""

    kimg: float = 200.0
    batch: int = 32
    batch_gpu: int | None = None
    gamma: float = 1.0
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    lr: float = 0.0025
    lr_d: float | None = None  # the discriminator's lr (two time-scale updates); None: the same as lr
    lr_drop_kimg: float | None = None  # from this many kimg on, both lrs are halved (None: never)
    beta1: float = 0.0
    beta2: float = 0.99
    r1_interval: int = 16
    style_mixing: float = 0.9
    aug: str = "color,translation,cutout"
    xflip: bool = True
    noise: bool = True
    z_dim: int = 512
    w_dim: int = 512
    map_layers: int = 8
    channel_base: int = 16384
    channel_max: int = 512
    d_channel_base: int | None = None  # the discriminator's widths (None: the generator's); a warm start keeps G's
    d_channel_max: int | None = None
    d_arch: str = "resnet"  # the discriminator: "resnet" (StyleGAN2's), "conv" (plain strided) or "projected"
    d_feature_res: int | None = None  # projected: the feature network's input size, long side (None: the image's)
    d_head_width: float = 0.5  # projected: width multiplier of its projections and scale discriminators
    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0
    mbstd_group: int = 4
    mbstd_channels: int = 1  # minibatch-std features: channel groups averaged separately
    seed: int = 0
    snapshot_kimg: float = 10.0
    grid: int = 16
    d_warmup_kimg: float = 0.0  # a warm-started run trains only D for this many kimg first
    face_d: float = 0.0  # body datasets: G-loss weight of a second discriminator on the face window (0: off)
    face_d_arch: str | None = None  # the face discriminator's architecture (None: d_arch)
    proj_d: float = 0.0  # G-loss weight of a projected discriminator beside a resnet/conv one (0: off)

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

    @property
    def d_channels(self) -> tuple[int, int]:
        """The discriminator's (channel_base, channel_max)."""
        return (self.channel_base if self.d_channel_base is None else self.d_channel_base,
                self.channel_max if self.d_channel_max is None else self.d_channel_max)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)
