"""Built-in generators shipped inside the package, loaded by name.

Names: ``default-body``, ``default-face`` and ``default-shoes`` work wherever a checkpoint is
taken (``insetgan generate --network default-face``); plain ``default`` means the built-in
model of the option's role (``--body default``, ``--face-net default``, ``--shoes-net
default``). The files live in ``insetgan/assets/models/`` in our safetensors format (fp16);
``INSETGAN_MODELS_DIR`` points the names at another folder holding files of the same names.
An installation without them gives a clear error that asks for a checkpoint path instead.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insetgan.resources import ASSETS
from insetgan.errors import InsetganError
from insetgan.io import sha256

if TYPE_CHECKING:
    import torch

BUILTIN = {"body": "body.safetensors", "face": "face.safetensors", "shoes": "shoes.safetensors"}
DEFAULT = "default"
PREFIX = "default-"
log = logging.getLogger("insetgan")


def models_dir() -> Path:
    """Folder of the built-in model files (``$INSETGAN_MODELS_DIR`` when set)."""
    override = os.environ.get("INSETGAN_MODELS_DIR")
    return Path(override) if override else ASSETS / "models"


def builtin_names() -> list[str]:
    """Every built-in model name (``default-body``, ...)."""
    return [PREFIX + role for role in BUILTIN]


def is_builtin(spec: str) -> bool:
    """Whether ``spec`` names a built-in model (``default``, ``default-<role>``) rather than a file."""
    return spec == DEFAULT or (spec.startswith(PREFIX) and not Path(spec).exists())


def resolve_network(spec: str, role: str | None = None) -> str:
    """A checkpoint path for ``spec``: a built-in model for its name, else ``spec`` itself.

    ``default`` needs ``role`` (the option's role: body, face or shoes); ``default-<role>``
    names a model directly.
    """
    if not is_builtin(spec):
        return spec
    if spec == DEFAULT:
        if role is None:
            raise InsetganError(f"'default' needs a role here: give one of {', '.join(builtin_names())} "
                                f"or a checkpoint path")
    else:
        role = spec[len(PREFIX):]
        if role not in BUILTIN:
            raise InsetganError(f"unknown built-in model {spec!r}: the built-in models are "
                                f"{', '.join(builtin_names())}")
    if role not in BUILTIN:
        raise InsetganError(f"there is no built-in {role} model: give a checkpoint path")
    path = models_dir() / BUILTIN[role]
    if not path.is_file():
        raise InsetganError(f"no built-in {role} model in this installation ({path} is missing): "
                            f"give a checkpoint path")
    return str(path)


def describe_builtin(role: str) -> dict[str, Any]:
    """Name, file, size, resolution, parameters and the model-card line of one built-in model."""
    from insetgan.networks.checkpoints import load_checkpoint

    path = Path(resolve_network(PREFIX + role))
    ckpt = load_checkpoint(path)
    cfg = ckpt.generator.cfg
    training = json.loads(ckpt.metadata.get("training", "{}") or "{}")
    dataset = json.loads(ckpt.metadata.get("dataset", "{}") or "{}")
    kimg = training.get("kimg")
    card = f"{role} {cfg.img_height}x{cfg.img_width}, trained with insetgan train"
    if kimg is not None:
        card += f" for {kimg:g} kimg"
    if dataset.get("kind"):
        card += f" on prepared {dataset['kind']}"
    return {"name": PREFIX + role, "role": role, "path": str(path), "bytes": path.stat().st_size,
            "resolution": [cfg.img_height, cfg.img_width],
            "parameters": sum(p.numel() for p in ckpt.generator.parameters()),
            "card": card + " (MODEL_CARD.md)"}


def load_network(spec: str, dev: torch.device | str, option: str, role: str | None = None
                 ) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint (or a built-in model by name) with its report entry."""
    from insetgan.networks.checkpoints import load_checkpoint

    path = resolve_network(spec, role)
    if not Path(path).is_file():
        raise InsetganError(f"{option}: checkpoint not found (no such file): {path}")
    ckpt = load_checkpoint(path, dev)
    info = {"path": str(path), "sha256": sha256(path), "format": ckpt.format, "notes": list(ckpt.notes),
            "resolution": [ckpt.generator.cfg.img_height, ckpt.generator.cfg.img_width]}
    return ckpt, info


def region_priors(metadata: dict[str, Any]) -> dict[str, tuple[float, float, float, float]]:
    """Region priors (relative x, y, w, h per region) stored in a network's metadata by ``insetgan train``.

    Only the ``face`` and ``shoes`` entries are read; the bookkeeping that ``insetgan prepare``
    stores beside them (``from``: how many boxes each median came from, ``format``) is skipped.
    """
    raw = metadata.get("region_priors")
    if raw is None:
        return {}
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        out = {}
        for name in ("face", "shoes"):
            box = data.get(name)
            if box is None:
                continue
            x, y, w, h = (float(v) for v in box)
            if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
                raise InsetganError(box)
            out[str(name)] = (x, y, w, h)
        return out
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring malformed region_priors in the network metadata")
        return {}
