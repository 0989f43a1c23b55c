"""StyleGAN3 generators from official pickles (already parsed by our safe unpickler).

The constructor arguments give a :class:`StyleGAN3Config`; the attributes the official modules
pickled with themselves (sizes, sampling rates, cutoffs, up/down factors, filter lengths,
padding, channels, layer names) are then compared with the schedule the config implies, and
every tensor shape with the network it builds. A contradiction is a one-line
:class:`CheckpointError` naming the first attribute or tensor that disagrees.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from insetgan.networks.errors import CheckpointError, short_repr
from insetgan.networks.safe_pickle import PersistentRecord
from insetgan.networks.stylegan3 import StyleGAN3Generator, build_stylegan3
from insetgan.networks.stylegan3_config import LayerSpec, StyleGAN3Config

_LAYER_ATTRS = ("is_torgb", "is_critically_sampled", "in_channels", "out_channels", "in_size", "out_size",
                "in_sampling_rate", "out_sampling_rate", "tmp_sampling_rate", "in_cutoff", "out_cutoff",
                "in_half_width", "out_half_width", "conv_kernel", "up_factor", "down_factor", "up_taps",
                "down_taps", "down_radial", "padding", "conv_clamp", "magnitude_ema_beta")


def is_stylegan3_record(rec: PersistentRecord) -> bool:
    """True when a recorded generator is a StyleGAN3 one (a ``SynthesisInput`` / ``synthesis.input``)."""
    if any(r.class_name == "SynthesisInput" for _, r in rec.walk()):
        return True
    synthesis = rec.children().get("synthesis")
    return isinstance(synthesis, PersistentRecord) and "input" in synthesis.children()


def _same(stored: Any, implied: Any) -> bool:
    if stored is None or implied is None:
        return stored is None and implied is None
    try:
        a, b = np.asarray(stored, dtype=np.float64), np.asarray(implied, dtype=np.float64)
    except (TypeError, ValueError):
        return stored == implied
    if a.shape != b.shape:
        a = np.broadcast_to(a, b.shape) if a.size == 1 else a
        b = np.broadcast_to(b, a.shape) if b.size == 1 else b
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=1e-9))


def _check(source: str, where: str, record: PersistentRecord, implied: dict[str, Any]) -> None:
    for attr, value in implied.items():
        if attr not in record.state:
            continue  # attributes are only checked where the pickle records them
        stored = record.attribute(attr)  # bounded: at most PickleLimits.max_nodes values
        if isinstance(stored, np.ndarray):
            stored = stored.tolist()
        if not _same(stored, value):
            raise CheckpointError(f"{source}: {where}.{attr} is {short_repr(stored)} in the pickle but its StyleGAN3 "
                                  f"kwargs imply {short_repr(value)}")


def _layer_values(spec: LayerSpec, cfg: StyleGAN3Config) -> dict[str, Any]:
    values: dict[str, Any] = {attr: getattr(spec, attr) for attr in _LAYER_ATTRS if hasattr(spec, attr)}
    values["conv_clamp"] = cfg.conv_clamp
    values["magnitude_ema_beta"] = cfg.magnitude_ema_beta
    values["in_size"] = [spec.in_size, spec.in_size]
    values["out_size"] = [spec.out_size, spec.out_size]
    values["padding"] = list(spec.padding)
    return values


def check_recorded_attributes(rec: PersistentRecord, cfg: StyleGAN3Config, source: str) -> None:
    """Compare the attributes a StyleGAN3 pickle stored with the schedule ``cfg`` implies."""
    _check(source, "G_ema", rec, {"z_dim": cfg.z_dim, "c_dim": cfg.c_dim, "w_dim": cfg.w_dim,
                                        "img_resolution": cfg.img_resolution, "img_channels": cfg.img_channels,
                                        "num_ws": cfg.num_ws})
    children = rec.children()
    mapping = children.get("mapping")
    if isinstance(mapping, PersistentRecord):
        _check(source, "mapping", mapping, {"num_ws": cfg.num_ws, "num_layers": cfg.mapping_layers,
                                                  "z_dim": cfg.z_dim, "w_dim": cfg.w_dim, "c_dim": cfg.c_dim})
    synthesis = children.get("synthesis")
    if not isinstance(synthesis, PersistentRecord):
        raise CheckpointError(f"{source}: StyleGAN3 generator without a recorded synthesis network")
    specs = cfg.layers()
    _check(source, "synthesis", synthesis, {
        "num_ws": cfg.num_ws, "img_resolution": cfg.img_resolution, "img_channels": cfg.img_channels,
        "num_layers": cfg.num_layers, "num_critical": cfg.num_critical, "margin_size": cfg.margin_size,
        "output_scale": cfg.output_scale, "layer_names": [s.name for s in specs],
    })
    layers = synthesis.children()
    if isinstance(layers.get("input"), PersistentRecord):
        inp = cfg.input_spec()
        _check(source, "synthesis.input", layers["input"], {**inp, "size": [inp["size"], inp["size"]]})
    for spec in specs:
        layer = layers.get(spec.name)
        if isinstance(layer, PersistentRecord):
            _check(source, f"synthesis.{spec.name}", layer, _layer_values(spec, cfg))


def stylegan3_from_record(rec: PersistentRecord, source: str) -> StyleGAN3Generator:
    """Build our StyleGAN3 generator from a recorded official one (``G_ema`` of a snapshot)."""
    try:
        cfg = StyleGAN3Config.from_init_kwargs(rec.init_kwargs(), rec.init_args())
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    check_recorded_attributes(rec, cfg, source)
    return build_stylegan3(cfg, rec.state_dict(), source)
