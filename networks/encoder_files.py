"""Encoder files: safetensors with the config and the generator's hash in the header metadata.

The metadata holds ``format`` (``insetgan-encoder``), ``format_version``, ``config`` (JSON of
:class:`insetgan.networks.encoder.EncoderConfig`) and ``generator_sha256``: the
:func:`network_sha256` of the generator the encoder was trained for, plus any extra string
entries a writer adds (training progress, quality numbers). No pickle is involved. Reading is
bounded: the file's size is checked first, the header by safetensors' own parser, every config
field before anything is built, then every tensor's name, shape and finiteness.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes
from torch import nn

from insetgan.errors import InsetganError
from insetgan.networks.encoder import Encoder, EncoderConfig
from insetgan.networks.errors import CheckpointError, one_line, short_repr
from insetgan.networks.files import atomic_write_bytes
from insetgan.networks.native import check_format_version, config_from_metadata, looks_like_safetensors, read_metadata
from insetgan.networks.state_dicts import load_checked

ENCODER_FORMAT = "insetgan-encoder"
ENCODER_FORMAT_VERSION = 1
MAX_ENCODER_BYTES = 512 * 2**20  # the default face encoder is about 14 MB
_SHA256 = re.compile(r"[0-9a-f]{64}")


def network_sha256(net: nn.Module) -> str:
    """SHA-256 of a network's state tensors (names and bytes, in order): the same weights give the same hash.

    It identifies a generator whatever file it came from (a pickle and its converted safetensors
    load to the same tensors) and keys the inversion cache.
    """
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def encoder_bytes(encoder: Encoder, generator_sha256: str, extra: Mapping[str, Any] | None = None,
                  dtype: torch.dtype = torch.float32) -> bytes:
    """``encoder`` as the bytes of an encoder file (``dtype`` tensors: float32, or float16 for a shipped copy at
    half the size; they load as float32); ``extra`` entries are stored as JSON."""
    if not _SHA256.fullmatch(generator_sha256):
        raise InsetganError(f"not a SHA-256 hex digest: {short_repr(generator_sha256)}")
    meta = {"format": ENCODER_FORMAT, "format_version": str(ENCODER_FORMAT_VERSION),
            "config": encoder.cfg.to_json(), "generator_sha256": generator_sha256}
    for key, value in (extra or {}).items():
        if key in meta:
            raise InsetganError(f"metadata key {key!r} is reserved")
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    if dtype not in (torch.float32, torch.float16):
        raise InsetganError(f"encoder files store float32 or float16 tensors, not {dtype}")
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in encoder.state_dict().items()}
    return save_bytes(tensors, metadata=meta)


def save_encoder(encoder: Encoder, path: str | os.PathLike, generator_sha256: str,
                 extra: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float32) -> None:
    """Write an encoder file atomically (temporary file, then rename); see :func:`encoder_bytes`."""
    atomic_write_bytes(path, encoder_bytes(encoder, generator_sha256, extra, dtype))


def _check_file(path: Path) -> None:
    """Refuse a missing, empty, oversized or non-safetensors file before its header is parsed."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such encoder file")
    size = path.stat().st_size
    if size > MAX_ENCODER_BYTES:
        raise CheckpointError(f"{path}: file of {size:,} bytes is larger than the {MAX_ENCODER_BYTES:,} bytes "
                              "an encoder may have")
    with open(path, "rb") as f:
        head = f.read(16)
    if not looks_like_safetensors(head):
        raise CheckpointError(f"{path}: not an encoder file (not safetensors)")


def _encoder_config(meta: Mapping[str, str], path: Path) -> EncoderConfig:
    """The format, version and config of an encoder file's metadata, each checked."""
    fmt = meta.get("format")
    if fmt != ENCODER_FORMAT:
        what = "a generator" if fmt == "insetgan-generator" else f"format {short_repr(fmt)}"
        raise CheckpointError(f"{path}: is {what}, not an insetgan encoder file")
    check_format_version(meta, path, ENCODER_FORMAT_VERSION)
    return config_from_metadata(meta, EncoderConfig, path, "encoder")


def read_encoder_header(path: str | os.PathLike) -> tuple[EncoderConfig, dict[str, str]]:
    """``(config, metadata)`` of an encoder file, every header entry checked, no tensor read; one-line errors."""
    path = Path(path)
    _check_file(path)
    meta = read_metadata(path)
    cfg = _encoder_config(meta, path)
    if not _SHA256.fullmatch(meta.get("generator_sha256", "")):
        raise CheckpointError(f"{path}: generator_sha256 is not a SHA-256 hex digest: "
                              f"{short_repr(meta.get('generator_sha256'))}")
    return cfg, meta


def read_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Encoder, dict[str, str]]:
    """``(encoder, metadata)`` of an encoder file, in eval mode and frozen; one-line errors for bad files."""
    path = Path(path)
    cfg, meta = read_encoder_header(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({one_line(str(exc))})") from None
    encoder = load_checked(Encoder(cfg), tensors, str(path), "encoder ")
    return encoder.to(device).eval().requires_grad_(False), meta


def load_encoder(path: str | os.PathLike, generator: nn.Module, device: str | torch.device = "cpu"
                 ) -> tuple[Encoder, dict[str, str]]:
    """The encoder in ``path`` when it was trained for ``generator`` (same weights); else a one-line error."""
    encoder, meta = read_encoder(path, device)
    want = network_sha256(generator)
    if meta["generator_sha256"] != want:
        raise InsetganError(f"{path}: the encoder belongs to another generator (sha256 "
                            f"{meta['generator_sha256'][:12]}…, this one {want[:12]}…); train one for it with "
                            "insetgan train-encoder")
    if (encoder.cfg.num_ws, encoder.cfg.w_dim) != (generator.num_ws, generator.w_dim):
        raise InsetganError(f"{path}: the encoder predicts W+ {encoder.cfg.num_ws}x{encoder.cfg.w_dim}, the "
                            f"generator takes {generator.num_ws}x{generator.w_dim}")
    return encoder, meta
