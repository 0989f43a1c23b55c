"""Checkpoint loading for insetgan: one entry point, the format told apart by the file's first bytes.

Three kinds of file are read. Pickled StyleGAN2 snapshots go through our restricted unpickler
(:mod:`insetgan.networks.safe_pickle`), which records the networks without running any code
they carry; the ``G_ema`` network is the one used. State-dict files in the key layout of the
widely used independent PyTorch reimplementation are read with torch's weights-only loader and
renamed to our keys. Our own safetensors files (:mod:`insetgan.networks.native`) hold their
config in the metadata. Pickles of StyleGAN3 generators (configs T and R) become our own
StyleGAN3 network (:mod:`insetgan.networks.stylegan3_pickle`).
"""
from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from insetgan.errors import InsetganError
from insetgan.networks import native
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.errors import CheckpointError, one_line, short_repr
from insetgan.networks.generator import Generator, build_generator
from insetgan.networks.pickle_scan import DEFAULT_LIMITS
from insetgan.networks.safe_pickle import PersistentRecord, safe_load_pickle
from insetgan.networks.stylegan3 import AnyGenerator, StyleGAN3Generator
from insetgan.networks.stylegan3_pickle import is_stylegan3_record, stylegan3_from_record
from insetgan.networks.torch_files import LEGACY_MAGIC, ZIP_MAGIC, load_torch_file
from insetgan.torch_utils.ops.upfirdn2d import setup_filter

log = logging.getLogger(__name__)

W_AVG_SAMPLES = 10_000
W_AVG_SEED = 0


@dataclass(frozen=True)
class Checkpoint:
    """A loaded generator with where it came from."""

    generator: AnyGenerator
    format: str
    path: str
    notes: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


def describe(ckpt: Checkpoint) -> dict[str, Any]:
    """A JSON-able summary of a loaded checkpoint (what ``insetgan inspect`` prints)."""
    G = ckpt.generator
    if isinstance(G, StyleGAN3Generator):
        return _describe_stylegan3(ckpt, G)
    cfg = G.cfg
    return {
        **_describe_head(ckpt, G),
        "architecture": cfg.architecture,
        "channels": {str(r): cfg.channels(r) for r in cfg.block_resolutions},
        "parameters": sum(p.numel() for p in G.parameters()),
        "num_fp16_res": cfg.num_fp16_res,
        "fp16_resolutions": [r for r in cfg.block_resolutions if r >= cfg.fp16_resolution] if cfg.num_fp16_res else [],
        "conv_clamp": cfg.conv_clamp,
        "notes": list(ckpt.notes),
        "config": cfg.to_dict(),
    }


def _describe_head(ckpt: Checkpoint, G: Any) -> dict[str, Any]:
    """The first keys of :func:`describe`, the same for every architecture."""
    cfg = G.cfg
    return {"path": ckpt.path, "format": ckpt.format, "resolution": {"height": cfg.img_height, "width": cfg.img_width},
            "z_dim": cfg.z_dim, "w_dim": cfg.w_dim, "c_dim": cfg.c_dim, "img_channels": cfg.img_channels,
            "num_ws": G.num_ws, "mapping_layers": cfg.mapping_layers,
            "mapping_lr_multiplier": cfg.mapping_lr_multiplier}


def _describe_stylegan3(ckpt: Checkpoint, G: StyleGAN3Generator) -> dict[str, Any]:
    """:func:`describe` for a StyleGAN3 generator: the same keys, channels per layer, the layer schedule."""
    cfg = G.cfg
    layers = cfg.layers()
    return {
        **_describe_head(ckpt, G),
        "architecture": cfg.name,
        "channels": {"input": cfg.input_spec()["channels"], **{s.name: s.out_channels for s in layers}},
        "parameters": sum(p.numel() for p in G.parameters()),
        "num_fp16_res": cfg.num_fp16_res,
        "fp16_resolutions": [],  # StyleGAN3 layers run in full precision here
        "conv_clamp": cfg.conv_clamp,
        "layers": [{"name": s.name, "size": s.out_size, "sampling_rate": s.out_sampling_rate,
                    "cutoff": round(s.out_cutoff, 6), "up": s.up_factor, "down": s.down_factor,
                    "radial": s.down_radial} for s in layers],
        "transform": G.synthesis.input.transform.tolist(),
        "notes": list(ckpt.notes),
        "config": cfg.to_dict(),
    }


def detect_format(path: str | os.PathLike) -> str:
    """Name the checkpoint format of ``path`` from its first bytes (never from its extension)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise CheckpointError(f"{path}: file is empty")
    if native.looks_like_safetensors(head):
        return "safetensors"
    if head.startswith(ZIP_MAGIC):
        return "torch-zip"
    if head.startswith(LEGACY_MAGIC):
        return "torch-legacy"
    if head[:1] == b"\x80":
        return "pickle"
    if head.startswith(b"\x89PNG"):
        raise CheckpointError(f"{path}: is a PNG image, not a checkpoint")
    if head[:3] == b"\xff\xd8\xff":
        raise CheckpointError(f"{path}: is a JPEG image, not a checkpoint")
    raise CheckpointError(f"{path}: unrecognised file format (not a pickle, torch.save archive or safetensors file)")


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Load the generator stored in ``path`` (any supported format) in eval mode on ``device``."""
    kind = detect_format(path)
    if kind == "safetensors":
        G, meta = native.load(path)
        ckpt = Checkpoint(G, "insetgan-safetensors", str(path), metadata=meta)
    elif kind == "pickle":
        ckpt = _load_nvidia_pickle(Path(path))
    else:
        ckpt = _load_rosinality(Path(path))
    ckpt.generator.eval().requires_grad_(False).to(device)
    return ckpt


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> AnyGenerator:
    """Load just the generator from ``path`` (see :func:`load_checkpoint`)."""
    return load_checkpoint(path, device).generator


def estimate_w_avg(G: Generator, samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> torch.Tensor:
    """Mean of the mapping output over ``samples`` random z (fixed ``seed``), for files without w_avg."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, samples, 1000):
            n = min(1000, samples - start)
            z = torch.randn([n, G.z_dim], generator=gen)
            c = None
            if G.c_dim:
                c = torch.nn.functional.one_hot(torch.randint(G.c_dim, [n], generator=gen), G.c_dim).float()
            total += G.mapping(z, c)[:, 0].sum(dim=0).double()
    return (total / samples).to(torch.float32)


def _read_pickle(path: Path) -> Any:
    """The unpickled content of ``path`` (bounded, see :func:`safe_load_pickle`), errors naming the file."""
    size = path.stat().st_size
    if size > DEFAULT_LIMITS.max_bytes:
        raise CheckpointError(f"{path}: file of {size:,} bytes is larger than the {DEFAULT_LIMITS.max_bytes:,} "
                              "bytes a checkpoint may have")
    try:
        return safe_load_pickle(path.read_bytes())
    except CheckpointError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _load_nvidia_pickle(path: Path) -> Checkpoint:
    """Read a pickled StyleGAN2/3 snapshot ("nvidia-pkl") with our safe unpickler; uses its ``G_ema``."""
    data = _read_pickle(path)
    if isinstance(data, PersistentRecord):
        data = {"G_ema": data}  # a bare pickled network
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: pickle does not hold a StyleGAN snapshot dict")
    if "G_ema" not in data:
        keys = ", ".join(short_repr(k, 40) for k in list(data)[:8]) or "none"
        raise CheckpointError(f"{path}: pickle has no 'G_ema' network (keys: {keys})")
    rec = data["G_ema"]
    if not isinstance(rec, PersistentRecord):
        raise CheckpointError(f"{path}: 'G_ema' is not a recorded network object")
    try:
        sd = rec.state_dict()
        if is_stylegan3_record(rec) or any(k.startswith("synthesis.input.") for k in sd):
            return Checkpoint(stylegan3_from_record(rec, str(path)), "nvidia-pkl", str(path))
        if rec.class_name != "Generator":
            raise CheckpointError(f"'G_ema' is a {short_repr(rec.class_name)}, expected a StyleGAN2 Generator")
        cfg = GeneratorConfig.from_init_kwargs(rec.init_kwargs(), rec.init_args())
    except CheckpointError as exc:
        message = str(exc)
        raise type(exc)(message if message.startswith(f"{path}:") else f"{path}: {message}") from None
    except ValueError as exc:  # InsetganError included: a config field out of its range
        raise CheckpointError(f"{path}: unsupported generator arguments: {exc}") from None
    notes: list[str] = []
    if "mapping.w_avg" not in sd:
        G = build_generator(cfg, {**sd, "mapping.w_avg": torch.zeros(cfg.w_dim)}, str(path))
        G.mapping.w_avg.copy_(estimate_w_avg(G))
        notes.append(f"w_avg missing: estimated from {W_AVG_SAMPLES} samples (seed {W_AVG_SEED})")
    else:
        G = build_generator(cfg, sd, str(path))
    return Checkpoint(G, "nvidia-pkl", str(path), tuple(notes))


def _torch_load(path: Path) -> Any:
    """Read a torch.save file ("rosinality" state dicts) with torch's weights-only loader, bounded."""
    # Training checkpoints carry their argparse options; a Namespace only holds plain values.
    return load_torch_file(path, [argparse.Namespace])


def _rosinality_state(obj: Any, path: Path) -> tuple[dict, torch.Tensor | None, bool]:
    if isinstance(obj, dict) and "g_ema" in obj:
        sd, avg, training = obj["g_ema"], obj.get("latent_avg"), "g_optim" in obj or "args" in obj
    elif isinstance(obj, dict) and "style.1.weight" in obj:
        sd, avg, training = obj, None, False
    else:
        keys = ", ".join(short_repr(k, 40) for k in list(obj)[:8]) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a StyleGAN2 generator checkpoint (no 'g_ema'; found {keys})")
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{path}: 'g_ema' is not a state dict of named tensors")
    if avg is not None and not isinstance(avg, torch.Tensor):
        raise CheckpointError(f"{path}: 'latent_avg' is not a tensor")
    return sd, avg, training


def rosinality_config(sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> GeneratorConfig:
    """Infer the generator config of a rosinality ``g_ema`` state dict from its tensor shapes."""
    try:
        n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
        style_dim = int(sd["style.1.weight"].shape[0])
        n_rgbs = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
        res = 2 ** (n_rgbs + 2)
        channels = {4: int(sd["input.input"].shape[1])}
        for i in range(1, n_rgbs + 1):
            channels[4 * 2**i] = int(sd[f"convs.{2 * i - 2}.conv.weight"].shape[1])
        img_channels = int(sd["to_rgb1.conv.weight"].shape[1])
    except KeyError as exc:
        raise CheckpointError(f"{source}: rosinality state dict lacks {exc}") from None
    except IndexError:
        raise CheckpointError(f"{source}: a rosinality tensor has fewer dimensions than its key implies") from None
    cmax = max(channels.values())
    candidates = sorted({c * r for r, c in channels.items() if c < cmax} or {cmax * res})
    base = next((b for b in candidates if all(min(b // r, cmax) == c for r, c in channels.items())), None)
    if base is None:
        raise CheckpointError(f"{source}: unsupported channel table {short_repr(channels)}")
    try:
        return GeneratorConfig(
            z_dim=style_dim, w_dim=style_dim, c_dim=0, img_resolution=res, img_channels=img_channels,
            mapping_layers=n_mlp, mapping_lr_multiplier=0.01, channel_base=base, channel_max=cmax,
            num_fp16_res=0, conv_clamp=None, architecture="skip",
        )
    except InsetganError as exc:
        raise CheckpointError(f"{source}: the tensor shapes imply an unsupported generator: {exc}") from None


def rosinality_to_nvidia(sd: Mapping[str, torch.Tensor], cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    """Rename and reshape a rosinality ``g_ema`` state dict to NVIDIA key names."""
    out: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        out[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
        out[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]
    out["synthesis.b4.const"] = sd["input.input"][0]

    def conv(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]

    def torgb(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape([-1])

    conv("synthesis.b4.conv1", "conv1")
    torgb("synthesis.b4.torgb", "to_rgb1")
    for i, res in enumerate(cfg.block_resolutions[1:], start=1):
        conv(f"synthesis.b{res}.conv0", f"convs.{2 * i - 2}")
        conv(f"synthesis.b{res}.conv1", f"convs.{2 * i - 1}")
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{i - 1}")
    noise_layers = ["synthesis.b4.conv1"] + [
        f"synthesis.b{r}.conv{j}" for r in cfg.block_resolutions[1:] for j in (0, 1)
    ]
    for k, layer in enumerate(noise_layers):
        out[f"{layer}.noise_const"] = sd[f"noises.noise_{k}"][0, 0]
    expected_blur = setup_filter(list(cfg.resample_filter)) * 4
    for key, tensor in sd.items():
        if key.endswith(("blur.kernel", "upsample.kernel")) and not torch.allclose(tensor, expected_blur, atol=1e-6):
            raise CheckpointError(f"unsupported resampling kernel in {key}")
    filt = setup_filter(list(cfg.resample_filter))
    for res in cfg.block_resolutions:
        out[f"synthesis.b{res}.resample_filter"] = filt
        out[f"synthesis.b{res}.conv1.resample_filter"] = filt
        if res > 4:
            out[f"synthesis.b{res}.conv0.resample_filter"] = filt
    return out


def _load_rosinality(path: Path) -> Checkpoint:
    obj = _torch_load(path)
    sd, avg, training = _rosinality_state(obj, path)
    cfg = rosinality_config(sd, str(path))
    try:
        nv = rosinality_to_nvidia(sd, cfg)
    except KeyError as exc:
        raise CheckpointError(f"{path}: rosinality state dict lacks {exc}") from None
    except (IndexError, RuntimeError) as exc:  # a tensor whose shape does not fit its key
        raise CheckpointError(f"{path}: rosinality tensor of an unexpected shape ({one_line(str(exc))})") from None
    notes: list[str] = []
    if avg is None:
        nv["mapping.w_avg"] = torch.zeros(cfg.w_dim)
        G = build_generator(cfg, nv, str(path))
        G.mapping.w_avg.copy_(estimate_w_avg(G))
        note = f"no latent_avg in the file: w_avg estimated from {W_AVG_SAMPLES} samples (seed {W_AVG_SEED})"
        log.warning("%s: %s", path, note)
        notes.append(note)
    else:
        nv["mapping.w_avg"] = avg.reshape(-1)
        G = build_generator(cfg, nv, str(path))
    if training:
        notes.append("training checkpoint: used g_ema; optimiser states and options ignored")
    return Checkpoint(G, "rosinality", str(path), tuple(notes))
