"""insetgan's own checkpoint format: safetensors + the generator config in the header metadata.

Tensors use NVIDIA key names; the metadata holds ``format`` (``insetgan-generator``),
``format_version``, ``architecture`` (``stylegan2`` or ``stylegan3``) and ``config`` (JSON of
:class:`insetgan.networks.config.GeneratorConfig` or
:class:`insetgan.networks.stylegan3_config.StyleGAN3Config`), plus any extra string entries a
writer adds (e.g. region priors). No pickle is involved. StyleGAN2 files are format version 1
(a file without ``architecture`` is StyleGAN2); StyleGAN3 files are version 2, so that an
insetgan that predates them says the file is too new instead of misreading its config.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as save_bytes

from insetgan.errors import InsetganError
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.errors import CheckpointError, one_line, short_repr
from insetgan.networks.files import atomic_write_bytes
from insetgan.networks.generator import build_generator
from insetgan.networks.stylegan3 import build_stylegan3
from insetgan.networks.stylegan3_config import StyleGAN3Config

FORMAT_NAME = "insetgan-generator"
FORMAT_VERSION = 2  # the newest version this insetgan reads
ARCHITECTURES = {"stylegan2": 1, "stylegan3": 2}  # architecture -> the format version its files carry
MAX_CONFIG_CHARS = 65_536  # a config's JSON is about 700 characters


def looks_like_safetensors(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) starts a safetensors header."""
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n < 100_000_000 and head[8:9] == b"{"


def to_bytes(G: torch.nn.Module, extra: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float32) -> bytes:
    """``G`` (a StyleGAN2 ``Generator`` or a ``StyleGAN3Generator``) as the bytes of our safetensors format.

    ``extra`` entries are stored as JSON strings in the metadata; ``dtype`` sets the storage
    precision of floating-point tensors (loading always returns float32).
    """
    family = G.cfg.family
    meta = {"format": FORMAT_NAME, "format_version": str(ARCHITECTURES[family]), "architecture": family,
            "config": G.cfg.to_json()}
    for key, value in (extra or {}).items():
        if key in meta:
            raise InsetganError(f"metadata key {key!r} is reserved")
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in G.state_dict().items()}
    return save_bytes(tensors, metadata=meta)


def save(G: torch.nn.Module, path: str | os.PathLike, extra: Mapping[str, Any] | None = None,
         dtype: torch.dtype = torch.float32) -> None:
    """Write ``G`` atomically to ``path`` (temporary file, then rename); see :func:`to_bytes`."""
    data = to_bytes(G, extra, dtype)
    atomic_write_bytes(path, data)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({one_line(str(exc))})") from None


def check_format_version(meta: Mapping[str, str], path: str | os.PathLike, newest: int = FORMAT_VERSION) -> None:
    """Refuse a ``format_version`` that is not a whole number up to ``newest`` (absent: version 0)."""
    text = meta.get("format_version", "0")
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 6):
        raise CheckpointError(f"{path}: format_version must be a whole number, got {short_repr(text)}")
    version = int(text)
    if version > newest:
        raise CheckpointError(f"{path}: format version {version} is newer than this insetgan supports")


def config_from_metadata(meta: Mapping[str, str], config_type: type, path: str | os.PathLike, what: str) -> Any:
    """The ``config`` entry of a file's metadata as ``config_type`` (its ``from_dict``), every field checked
    before anything is built; ``what`` names the network in the one-line errors."""
    text = meta.get("config")
    if not isinstance(text, str):
        raise CheckpointError(f"{path}: no {what} config in the metadata")
    if len(text) > MAX_CONFIG_CHARS:
        raise CheckpointError(f"{path}: the config in the metadata is longer than {MAX_CONFIG_CHARS:,} characters")
    try:
        return config_type.from_dict(json.loads(text))
    except RecursionError:
        raise CheckpointError(f"{path}: the config in the metadata nests too deeply") from None
    except (json.JSONDecodeError, TypeError, ValueError) as exc:  # InsetganError included
        raise CheckpointError(f"{path}: invalid {what} config in metadata ({one_line(str(exc))})") from None


def load(path: str | os.PathLike):
    """Load ``(generator, metadata)`` from an insetgan safetensors file (StyleGAN2 or StyleGAN3)."""
    meta = read_metadata(path)
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: safetensors file without insetgan generator metadata")
    check_format_version(meta, path)
    architecture = meta.get("architecture", "stylegan2")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{path}: unknown architecture {short_repr(architecture)} in the metadata "
                              f"(this insetgan reads {', '.join(ARCHITECTURES)})")
    config_type = StyleGAN3Config if architecture == "stylegan3" else GeneratorConfig
    cfg = config_from_metadata(meta, config_type, path, f"{architecture} generator")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({one_line(str(exc))})") from None
    if isinstance(cfg, StyleGAN3Config):
        return build_stylegan3(cfg, tensors, str(path)), meta
    return build_generator(cfg, tensors, str(path)), meta
