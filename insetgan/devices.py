"""Device names (``--device``, the web page's device) and the torch device each one means."""
from __future__ import annotations

import torch

from insetgan.errors import InsetganError

DEVICES = ("auto", "cpu", "cuda")


def torch_device(name: str) -> torch.device:
    """The torch device for ``--device``; an error when CUDA is asked for but missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InsetganError("--device cuda was requested but no CUDA device is available")
    return torch.device(name)
