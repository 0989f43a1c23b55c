"""Load a state dict into a network after checking it tensor by tensor: exactly the network's
keys and shapes, finite floating-point values; a mismatch is a one-line :class:`CheckpointError`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import torch
from torch import nn

from insetgan.networks.errors import CheckpointError

NetworkT = TypeVar("NetworkT", bound=nn.Module)


def load_checked(G: NetworkT, state_dict: Mapping[str, torch.Tensor], source: str, what: str = "") -> NetworkT:
    """Load ``state_dict`` into ``G`` (as float32) after checking it has exactly G's keys and shapes, in finite floats.

    ``what`` names the network in the messages (e.g. ``"StyleGAN3 "``); a mismatch is a
    one-line :class:`CheckpointError` naming the first offending tensors.
    """
    expected = G.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(f"{source}: {what}state dict does not match its config: {'; '.join(parts)}")
    for key, ref in expected.items():
        got = state_dict[key]
        if tuple(got.shape) != tuple(ref.shape):
            kind = "filter" if key.endswith("_filter") else "tensor"
            raise CheckpointError(
                f"{source}: {kind} {key} has shape {list(got.shape)} but the config implies {list(ref.shape)}"
            )
        if not got.dtype.is_floating_point:
            raise CheckpointError(f"{source}: tensor {key} has non-float dtype {got.dtype}")
        if not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"{source}: tensor {key} holds NaN or infinite values")
    G.load_state_dict({k: v.to(torch.float32) for k, v in state_dict.items()})
    return G
