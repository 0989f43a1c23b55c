"""StyleGAN3 generator configuration and its layer schedule (Karras et al. 2021, "Alias-Free GANs").

:class:`StyleGAN3Config` holds the constructor arguments of a StyleGAN3 generator (configs T and
R: R is ``conv_kernel=1``, ``use_radial_filters=True`` and doubled channels). Everything else is
derived from it by :meth:`StyleGAN3Config.layers`: per layer the cutoff and stopband (a
geometric progression from the first layer to the last critically sampled ones), the sampling
rate (a power of two above twice the stopband, at most the image resolution), the feature-map
size (sampling rate plus a margin on each side; the last two layers are exactly the image), the
channels, the temporary up/down factors around the nonlinearity, the filter lengths and the
padding that keeps sample positions aligned. The checkpoint loader cross-checks this schedule
against what a pickle stores.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from insetgan.errors import InsetganError
from insetgan.networks.config import GENERATOR_FIELDS, GeneratorConfig
from insetgan.networks.errors import CheckpointError, short_repr, short_text
from insetgan.networks.fields import Field, check_fields, check_size, coerce_fields, mapping_parameters

_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
# Synthesis/layer keyword arguments of the StyleGAN3 generator, under our field names.
_SYNTHESIS_KWARGS = (
    "channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
    "last_stopband_rel", "margin_size", "output_scale", "num_fp16_res", "conv_kernel", "filter_size",
    "lrelu_upsampling", "use_radial_filters", "conv_clamp", "magnitude_ema_beta",
)
_MAPPING_KWARGS = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier",
                   "w_avg_beta": "w_avg_beta"}
# Recorded by the official classes but not constructor options of ours (derived, or no effect).
_IGNORED_KWARGS = frozenset({"class_name", "num_ws"})

# The longest up- or down-sampling filter a layer may need (the official configs use at most 24 taps).
MAX_FILTER_TAPS = 128
# Every field of StyleGAN3Config with the type and range it accepts (checked for every format).
# The sampling rates stay >= 1 (stopbands >= 0.5) so the layer schedule is well defined.
STYLEGAN3_FIELDS: Mapping[str, Field] = MappingProxyType({
    **{name: GENERATOR_FIELDS[name] for name in ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels",
                                                  "mapping_layers", "mapping_lr_multiplier", "channel_base",
                                                  "channel_max")},
    "w_avg_beta": Field("float", 0.0, 1.0),
    "num_layers": Field("int", 1, 64),
    "num_critical": Field("int", 0, 63),
    "first_cutoff": Field("float", 1e-3, 1e4),
    "first_stopband": Field("float", 0.5, 1e4),
    "last_stopband_rel": Field("float", 0.25, 64.0),
    "margin_size": Field("int", 0, 1024),
    "output_scale": Field("float", 1e-6, 1e6),
    "num_fp16_res": Field("int", 0, 32),
    "conv_kernel": Field("int", 1, 15),
    "filter_size": Field("int", 1, 64),
    "lrelu_upsampling": Field("int", 1, 16),
    "use_radial_filters": Field("bool"),
    "conv_clamp": Field("float", 0.0, 1e6, optional=True),
    "magnitude_ema_beta": Field("float", 0.0, 1.0),
})


@dataclass(frozen=True)
class LayerSpec:
    """One synthesis layer of the schedule (index ``idx``; the last one is the ToRGB layer)."""

    idx: int
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]  # (px0, px1, py0, py1) of the filtered nonlinearity

    @property
    def name(self) -> str:
        """The module name, as in official checkpoints: ``L{idx}_{out_size}_{out_channels}``."""
        return f"L{self.idx}_{self.out_size}_{self.out_channels}"


@dataclass(frozen=True)
class StyleGAN3Config:
    """Everything needed to build a :class:`insetgan.networks.stylegan3.StyleGAN3Generator`.

    Field defaults are those of the official constructor; ``from_init_kwargs`` reads the
    arguments a pickle records.
    """

    family: ClassVar[str] = "stylegan3"

    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0
    img_resolution: int = 1024
    img_channels: int = 3
    # Mapping network (the StyleGAN2 mapping, 2 layers by default).
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.998
    # Synthesis network.
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2**2.1
    last_stopband_rel: float = 2**0.3
    margin_size: int = 10
    output_scale: float = 0.25
    num_fp16_res: int = 4
    # Synthesis layers.
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256.0
    magnitude_ema_beta: float = 0.999

    def __post_init__(self) -> None:
        check_fields(self, STYLEGAN3_FIELDS, "StyleGAN3")
        if self.z_dim == 0 and self.c_dim == 0:
            raise InsetganError("a generator needs z_dim > 0 or c_dim > 0")
        if not self.num_critical < self.num_layers:
            raise InsetganError(f"StyleGAN3 num_critical must be in [0, num_layers), got {self.num_critical}")
        layers = self.layers()
        if min(min(s.in_channels, s.out_channels) for s in layers) < 1:
            raise InsetganError("StyleGAN3 channel_base/channel_max give a layer with zero channels")
        for s in layers:
            _check_filters(s)
        check_size(self.parameter_estimate(), "StyleGAN3 config")

    # Derived quantities -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """``stylegan3-r`` (radial filters, 1x1 convolutions), ``stylegan3-t``, or ``stylegan3`` otherwise."""
        if self.use_radial_filters and self.conv_kernel == 1:
            return "stylegan3-r"
        if not self.use_radial_filters and self.conv_kernel == 3:
            return "stylegan3-t"
        return "stylegan3"

    @property
    def img_height(self) -> int:
        """Image height in pixels."""
        return self.img_resolution

    @property
    def img_width(self) -> int:
        """Image width in pixels (StyleGAN3 images are square)."""
        return self.img_resolution

    @property
    def num_ws(self) -> int:
        """Number of w vectors: one for the input's transform, one per layer (incl. ToRGB)."""
        return self.num_layers + 2

    def parameter_estimate(self) -> int:
        """About how many weights and buffers the generator of this config holds."""
        total = mapping_parameters(self.z_dim, self.c_dim, self.w_dim, self.mapping_layers)
        total += self.input_spec()["channels"] * (self.w_dim + 4)
        for spec in self.layers():
            total += spec.in_channels * (spec.out_channels * spec.conv_kernel**2 + self.w_dim) \
                + (spec.up_taps + spec.down_taps) ** 2
        return total

    def mapping_config(self) -> GeneratorConfig:
        """The mapping network as a :class:`GeneratorConfig` (StyleGAN3 reuses the StyleGAN2 mapping)."""
        return GeneratorConfig(
            z_dim=self.z_dim, w_dim=self.w_dim, c_dim=self.c_dim, img_resolution=self.img_resolution,
            img_channels=self.img_channels, mapping_layers=self.mapping_layers,
            mapping_lr_multiplier=self.mapping_lr_multiplier, w_avg_beta=self.w_avg_beta,
        )

    def bands(self) -> dict[str, np.ndarray]:
        """Per-layer arrays (index 0 = the input, ``num_layers`` = ToRGB): cutoffs, stopbands,
        sampling rates, half widths, sizes and channels."""
        n = self.num_layers
        last_cutoff = self.img_resolution / 2
        last_stopband = last_cutoff * self.last_stopband_rel
        exponents = np.minimum(np.arange(n + 1) / (n - self.num_critical), 1)
        cutoffs = self.first_cutoff * (last_cutoff / self.first_cutoff) ** exponents
        stopbands = self.first_stopband * (last_stopband / self.first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, self.img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + self.margin_size * 2
        sizes[-2:] = self.img_resolution
        channels = np.rint(np.minimum((self.channel_base / 2) / cutoffs, self.channel_max))
        channels[-1] = self.img_channels
        return {"cutoffs": cutoffs, "stopbands": stopbands, "sampling_rates": sampling_rates,
                "half_widths": half_widths, "sizes": sizes, "channels": channels}

    def layers(self) -> list[LayerSpec]:
        """The synthesis layers L0 .. L{num_layers} (the last is ToRGB), fully specified."""
        b = self.bands()
        out = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            is_torgb = idx == self.num_layers
            in_rate, out_rate = int(b["sampling_rates"][prev]), int(b["sampling_rates"][idx])
            tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else self.lrelu_upsampling)
            up, down = tmp_rate // in_rate, tmp_rate // out_rate
            up_taps = self.filter_size * up if up > 1 and not is_torgb else 1
            down_taps = self.filter_size * down if down > 1 and not is_torgb else 1
            kernel = 1 if is_torgb else self.conv_kernel
            in_size, out_size = int(b["sizes"][prev]), int(b["sizes"][idx])
            # Size before downsampling, minus the upsampled conv output, plus what the filters eat.
            pad_total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
            pad_lo = (pad_total + up) // 2  # symmetric interpretation of sample positions
            pad_hi = pad_total - pad_lo
            critical = idx >= self.num_layers - self.num_critical
            out.append(LayerSpec(
                idx=idx, is_torgb=is_torgb, is_critically_sampled=critical,
                use_fp16=bool(b["sampling_rates"][idx] * 2**self.num_fp16_res > self.img_resolution),
                in_channels=int(b["channels"][prev]), out_channels=int(b["channels"][idx]),
                in_size=in_size, out_size=out_size, in_sampling_rate=in_rate, out_sampling_rate=out_rate,
                tmp_sampling_rate=tmp_rate, in_cutoff=float(b["cutoffs"][prev]), out_cutoff=float(b["cutoffs"][idx]),
                in_half_width=float(b["half_widths"][prev]), out_half_width=float(b["half_widths"][idx]),
                conv_kernel=kernel, up_factor=up, down_factor=down, up_taps=up_taps, down_taps=down_taps,
                down_radial=self.use_radial_filters and not critical,
                padding=(pad_lo, pad_hi, pad_lo, pad_hi),
            ))
        return out

    def input_spec(self) -> dict[str, float | int]:
        """The Fourier-feature input: channels, size, sampling rate and bandwidth."""
        b = self.bands()
        return {"channels": int(b["channels"][0]), "size": int(b["sizes"][0]),
                "sampling_rate": float(b["sampling_rates"][0]), "bandwidth": float(b["cutoffs"][0])}

    # Serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The config as a JSON string (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StyleGAN3Config":
        """Inverse of :meth:`to_dict`; unknown keys raise ``InsetganError``."""
        if not isinstance(d, Mapping) or not all(isinstance(k, str) for k in d):
            raise InsetganError(f"a StyleGAN3 config must be a mapping of field names, got {short_repr(d)}")
        unknown = set(d) - set(STYLEGAN3_FIELDS)
        if unknown:
            raise InsetganError(f"unknown StyleGAN3 config keys: {short_text(', '.join(sorted(unknown)), 200)}")
        return cls(**coerce_fields(d, STYLEGAN3_FIELDS))

    @classmethod
    def from_init_kwargs(cls, init_kwargs: Mapping[str, Any], init_args: Sequence[Any] = ()) -> "StyleGAN3Config":
        """Build a config from the constructor arguments an official StyleGAN3 pickle records.

        An argument this implementation does not know raises :class:`CheckpointError` (a
        StyleGAN3 option we cannot honour would silently change the images).
        """
        if len(init_args) > len(_POSITIONAL):
            raise CheckpointError(f"unexpected positional StyleGAN3 generator arguments: {short_repr(init_args)}")
        kw: dict[str, Any] = dict(zip(_POSITIONAL, init_args))
        kw.update(dict(init_kwargs))
        mapping = kw.pop("mapping_kwargs", None) or {}
        synthesis = kw.pop("synthesis_kwargs", None) or {}
        if not isinstance(mapping, Mapping) or not isinstance(synthesis, Mapping):
            raise CheckpointError("StyleGAN3 mapping_kwargs and synthesis_kwargs must be dicts")
        synthesis = dict(synthesis)
        out: dict[str, Any] = {}
        for key in list(kw):
            if key in _POSITIONAL:
                out[key] = kw.pop(key)
        synthesis.update(kw)  # the official generator takes synthesis and layer options flat
        unknown = []
        for key, value in synthesis.items():
            if key in _SYNTHESIS_KWARGS:
                out[key] = value
            elif key not in _IGNORED_KWARGS:
                unknown.append(f"{short_text(key)}={short_repr(value)}")
        for key, value in dict(mapping).items():
            if key in _MAPPING_KWARGS:
                out[_MAPPING_KWARGS[key]] = value
            elif key not in _IGNORED_KWARGS:
                unknown.append(f"mapping_kwargs.{short_text(key)}={short_repr(value)}")
        if unknown:
            raise CheckpointError(f"unsupported StyleGAN3 generator option(s): {', '.join(unknown[:8])}")
        missing = [k for k in _POSITIONAL if k not in out]
        if missing:
            raise CheckpointError(f"StyleGAN3 generator init kwargs lack {', '.join(missing)}")
        try:
            return cls(**coerce_fields(out, STYLEGAN3_FIELDS))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"unsupported StyleGAN3 generator arguments: {exc}") from None


def _check_filters(spec: LayerSpec) -> None:
    """Refuse a layer whose low-pass filters cannot be designed: too many taps, or a transition band
    (twice the half width) that is empty or reaches past half the Nyquist rate of the filtering."""
    for name, taps, half_width in (("up", spec.up_taps, spec.in_half_width),
                                   ("down", spec.down_taps, spec.out_half_width)):
        if taps > MAX_FILTER_TAPS:
            raise InsetganError(f"StyleGAN3 layer {spec.name} needs a {taps}-tap {name}-sampling filter "
                                f"(limit {MAX_FILTER_TAPS}): filter_size or the sampling rates are too large")
        if taps > 1 and not 0 < half_width <= spec.tmp_sampling_rate / 4:
            raise InsetganError(f"StyleGAN3 layer {spec.name} has a {name}-sampling transition band of half width "
                                f"{half_width:g} at sampling rate {spec.tmp_sampling_rate}: the cutoffs, stopbands "
                                "and sampling rates do not fit together")
