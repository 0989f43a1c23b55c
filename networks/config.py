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
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Sequence

from insetgan.errors import InsetganError
from insetgan.networks.errors import short_repr, short_text
from insetgan.networks.fields import Field, check_fields, check_size, coerce_fields, mapping_parameters
from insetgan.torch_utils.ops.bias_act import ACTIVATIONS

log = logging.getLogger(__name__)

ARCHITECTURES = ("skip", "orig", "resnet")

# Every field of GeneratorConfig with the type and range it accepts (checked for every format).
GENERATOR_FIELDS: Mapping[str, Field] = MappingProxyType({
    "z_dim": Field("int", 0, 8192),
    "w_dim": Field("int", 1, 8192),
    "c_dim": Field("int", 0, 65536),
    "img_resolution": Field("int", 4, 4096, power_of_two=True),
    "img_channels": Field("int", 1, 16),
    "square": Field("bool"),
    "mapping_layers": Field("int", 1, 64),
    "mapping_lr_multiplier": Field("float", 1e-4, 10.0),
    "mapping_activation": Field("str", choices=tuple(ACTIVATIONS)),
    "embed_features": Field("int", 1, 8192, optional=True),
    "layer_features": Field("int", 1, 8192, optional=True),
    "w_avg_beta": Field("float", 0.0, 1.0, optional=True),
    "channel_base": Field("int", 1, 2**22),
    "channel_max": Field("int", 1, 4096),
    "num_fp16_res": Field("int", 0, 16),
    "conv_clamp": Field("float", 0.0, 1e6, optional=True),
    "architecture": Field("str", choices=ARCHITECTURES),
    "resample_filter": Field("floats", -1e3, 1e3),
    "use_noise": Field("bool"),
    "activation": Field("str", choices=tuple(ACTIVATIONS)),
    "kernel_size": Field("int", 1, 15),
})

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
        check_fields(self, GENERATOR_FIELDS, "generator config")
        if not self.square and self.img_resolution < 8:
            raise InsetganError("a 2:1 (square=False) generator needs img_resolution >= 8")
        if self.z_dim == 0 and self.c_dim == 0:
            raise InsetganError("a generator needs z_dim > 0 or c_dim > 0")
        if self.kernel_size % 2 == 0:
            raise InsetganError(f"generator config kernel_size must be odd, got {self.kernel_size}")
        if abs(sum(self.resample_filter)) < 1e-8:
            raise InsetganError("generator config resample_filter must not sum to zero")
        if min(self.channels(r) for r in self.block_resolutions) < 1:
            raise InsetganError("channel_base/channel_max give a block with zero channels")
        check_size(self.parameter_estimate(), "generator config")

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

    def parameter_estimate(self) -> int:
        """About how many weights and buffers the Generator of this config holds."""
        total = mapping_parameters(self.z_dim, self.c_dim, self.w_dim, self.mapping_layers, self.embed_features,
                                   self.layer_features)
        k2, prev = self.kernel_size**2, 0
        for res in self.block_resolutions:
            c = self.channels(res)
            # conv0 (with its skip), conv1, toRGB and their affines, the constant input, noise maps
            total += (2 * prev + c) * c * k2 + (prev + 2 * c) * self.w_dim + c * (self.img_channels + 16) \
                + 2 * res * res
            prev = c
        return total

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
        """Inverse of :meth:`to_dict`; unknown keys and invalid values raise :class:`InsetganError`."""
        if not isinstance(d, Mapping) or not all(isinstance(k, str) for k in d):
            raise InsetganError(f"a generator config must be a mapping of field names, got {short_repr(d)}")
        unknown = set(d) - set(GENERATOR_FIELDS)
        if unknown:
            raise InsetganError(f"unknown generator config keys: {short_text(', '.join(sorted(unknown)), 200)}")
        return cls(**coerce_fields(d, GENERATOR_FIELDS))

    @classmethod
    def from_init_kwargs(cls, init_kwargs: Mapping[str, Any], init_args: Sequence[Any] = ()) -> "GeneratorConfig":
        """Build a config from the constructor arguments recorded in an official pickle."""
        if len(init_args) > len(_POSITIONAL):
            raise InsetganError(f"unexpected positional generator arguments: {short_repr(init_args)}")
        kw: dict[str, Any] = dict(zip(_POSITIONAL, init_args))
        kw.update(init_kwargs)
        mapping = kw.pop("mapping_kwargs", None) or {}
        synthesis = kw.pop("synthesis_kwargs", None) or {}
        if not isinstance(mapping, Mapping) or not isinstance(synthesis, Mapping):
            raise InsetganError("generator mapping_kwargs and synthesis_kwargs must be dicts")
        synthesis = dict(synthesis)
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
                    log.warning("ignoring unknown %s argument %s=%s", what, short_text(key), short_repr(value))
        return cls(**coerce_fields(out, GENERATOR_FIELDS))
