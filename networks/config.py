"""Generator configuration: one frozen dataclass for every supported StyleGAN2 flavour.

``GeneratorConfig.from_init_kwargs`` normalises the constructor arguments stored in checkpoints:
nested (stylegan2-ada-pytorch, StyleGAN-Human: ``mapping_kwargs`` / ``synthesis_kwargs``) and
flat (the stylegan3 repository's StyleGAN2: synthesis arguments at the top level).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from insetgan.torch_utils.ops.bias_act import ACTIVATIONS
from insetgan.errors import InsetganError

log = logging.getLogger(__name__)

ARCHITECTURES = ("skip", "orig", "resnet")

# Constructor arguments that change nothing in the computed outputs (memory layout, training
# switches); accepted and ignored.
_IGNORED_KWARGS = frozenset(
    {"fp16_channels_last", "channels_last", "fused_modconv_default", "class_name", "num_ws"}
)
_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to build a :class:`insetgan.networks.generator.Generator`."""

    family: ClassVar[str] = "stylegan2"  # the network family (our safetensors metadata's ``architecture``)

    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0
    img_resolution: int = 1024
    img_channels: int = 3
    square: bool = True
    # Mapping network.
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    mapping_activation: str = "lrelu"
    embed_features: int | None = None
    layer_features: int | None = None
    w_avg_beta: float | None = 0.995
    # Synthesis network.
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    architecture: str = "skip"
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    use_noise: bool = True
    activation: str = "lrelu"
    kernel_size: int = 3

    def __post_init__(self) -> None:
        res = self.img_resolution
        if not isinstance(res, int) or res < 4 or res & (res - 1):
            raise InsetganError(f"img_resolution must be a power of two >= 4, got {res!r}")
        if not self.square and res < 8:
            raise InsetganError("a 2:1 (square=False) generator needs img_resolution >= 8")
        for name in ("z_dim", "w_dim", "c_dim", "img_channels", "mapping_layers", "channel_base", "channel_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InsetganError(f"{name} must be a non-negative integer, got {value!r}")
        if self.w_dim < 1 or self.img_channels < 1 or self.mapping_layers < 1:
            raise InsetganError("w_dim, img_channels and mapping_layers must be >= 1")
        if self.z_dim == 0 and self.c_dim == 0:
            raise InsetganError("a generator needs z_dim > 0 or c_dim > 0")
        if self.architecture not in ARCHITECTURES:
            raise InsetganError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        for name in ("mapping_activation", "activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise InsetganError(f"unknown {name} {getattr(self, name)!r}")
        if self.num_fp16_res < 0:
            raise InsetganError(f"num_fp16_res must be >= 0, got {self.num_fp16_res}")
        if self.conv_clamp is not None and self.conv_clamp < 0:
            raise InsetganError("conv_clamp must be None or >= 0")
        if min(self.channels(r) for r in self.block_resolutions) < 1:
            raise InsetganError("channel_base/channel_max give a block with zero channels")

    # Derived quantities -------------------------------------------------------------------------
    @property
    def img_height(self) -> int:
        """Image height in pixels."""
        return self.img_resolution

    @property
    def img_width(self) -> int:
        """Image width in pixels (half the height for 2:1 portrait canvases)."""
        return self.img_resolution if self.square else self.img_resolution // 2

    @property
    def block_resolutions(self) -> list[int]:
        """Resolutions (heights) of the synthesis blocks, 4 .. img_resolution."""
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def num_blocks(self) -> int:
        """Number of synthesis blocks."""
        return len(self.block_resolutions)

    @property
    def num_ws(self) -> int:
        """Number of per-layer w vectors the synthesis network consumes."""
        return 2 * self.num_blocks  # one conv at 4x4, two per later block, one final toRGB

    @property
    def fp16_resolution(self) -> int:
        """Blocks at this resolution and above may run in float16 (on CUDA)."""
        return max(2 ** (int(math.log2(self.img_resolution)) + 1 - self.num_fp16_res), 8)

    def channels(self, res: int) -> int:
        """Feature channels of the block at resolution ``res``."""
        return min(self.channel_base // res, self.channel_max)

    # Serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        d = dataclasses.asdict(self)
        d["resample_filter"] = list(self.resample_filter)
        return d

    def to_json(self) -> str:
        """The config as a JSON string (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GeneratorConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InsetganError(f"unknown generator config keys: {', '.join(sorted(unknown))}")
        d = dict(d)
        if "resample_filter" in d:
            d["resample_filter"] = tuple(float(v) for v in d["resample_filter"])
        return cls(**d)

    @classmethod
    def from_init_kwargs(cls, init_kwargs: Mapping[str, Any], init_args: Sequence[Any] = ()) -> "GeneratorConfig":
        """Build a config from the constructor arguments recorded in an official pickle."""
        if len(init_args) > len(_POSITIONAL):
            raise InsetganError(f"unexpected positional generator arguments: {list(init_args)}")
        kw: dict[str, Any] = dict(zip(_POSITIONAL, init_args))
        kw.update({k: v for k, v in dict(init_kwargs).items()})
        mapping = dict(kw.pop("mapping_kwargs", None) or {})
        synthesis = dict(kw.pop("synthesis_kwargs", None) or {})
        # Flat layout (stylegan3 repository): everything left over belongs to the synthesis net.
        top_fields = {"z_dim", "w_dim", "c_dim", "img_resolution", "img_channels", "square"}
        for key in list(kw):
            if key not in top_fields:
                synthesis[key] = kw.pop(key)
        missing = [k for k in ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels") if k not in kw]
        if missing:
            raise InsetganError(f"generator init kwargs lack {', '.join(missing)}")

        out: dict[str, Any] = {k: kw[k] for k in top_fields if k in kw}
        mapping_names = {
            "num_layers": "mapping_layers",
            "lr_multiplier": "mapping_lr_multiplier",
            "activation": "mapping_activation",
            "embed_features": "embed_features",
            "layer_features": "layer_features",
            "w_avg_beta": "w_avg_beta",
        }
        synthesis_names = {
            "channel_base": "channel_base",
            "channel_max": "channel_max",
            "num_fp16_res": "num_fp16_res",
            "conv_clamp": "conv_clamp",
            "architecture": "architecture",
            "resample_filter": "resample_filter",
            "use_noise": "use_noise",
            "activation": "activation",
            "kernel_size": "kernel_size",
            "square": "square",
        }
        for source, names, what in ((mapping, mapping_names, "mapping"), (synthesis, synthesis_names, "synthesis")):
            for key, value in source.items():
                if key in names:
                    out[names[key]] = value
                elif key in _IGNORED_KWARGS:
                    continue
                else:
                    log.warning("ignoring unknown %s argument %s=%r", what, key, value)
        if "resample_filter" in out:
            out["resample_filter"] = tuple(float(v) for v in out["resample_filter"])
        for key in ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels", "mapping_layers",
                    "channel_base", "channel_max", "num_fp16_res", "kernel_size"):
            if key in out:
                out[key] = int(out[key])
        for key in ("mapping_lr_multiplier", "w_avg_beta", "conv_clamp"):
            if out.get(key) is not None:
                out[key] = float(out[key])
        if "square" in out:
            out["square"] = bool(out["square"])
        return cls(**out)
