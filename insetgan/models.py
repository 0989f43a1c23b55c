"""Built-in generators shipped inside the package, loaded by name (``--body default``).

The files live in ``insetgan/assets/models/`` in our safetensors format (fp16). An installation
without them gives a clear error that names the file and asks for a checkpoint path instead.
``INSETGAN_MODELS_DIR`` points the names at another folder holding files of the same names.
"""
from __future__ import annotations

import os
from pathlib import Path

BUILTIN = {"body": "body.safetensors", "face": "face.safetensors", "shoes": "shoes.safetensors"}
DEFAULT = "default"


def models_dir() -> Path:
    """Folder of the built-in model files (``$INSETGAN_MODELS_DIR`` when set)."""
    override = os.environ.get("INSETGAN_MODELS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent / "assets" / "models"


def resolve_network(spec: str, role: str) -> str:
    """A checkpoint path for ``spec``: the built-in model of ``role`` for ``"default"``, else ``spec`` itself."""
    if spec != DEFAULT:
        return spec
    if role not in BUILTIN:
        raise ValueError(f"there is no built-in {role} model: give a checkpoint path")
    path = models_dir() / BUILTIN[role]
    if not path.is_file():
        raise ValueError(f"no built-in {role} model in this installation ({path} is missing): "
                         f"give a checkpoint path")
    return str(path)
