"""Applying loaded edits: W edits to W+ latents, style-space edits to a generator's affine outputs.

W edits are a pure function of the latents: ``α·d`` is added to the W+ rows after truncation and
before synthesis. Style-space edits are a context manager: forward hooks on the affine modules of
the style layers (:mod:`insetgan.editing.layers`) add ``α·v_i`` to the styles of layer ``i`` while
the block runs and are removed on leaving, so the generator is unchanged afterwards. Several edits
add up; ``scale`` multiplies every strength (the strip job's columns).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from insetgan.editing.directions import LoadedEdit, StyleDirection, WDirection
from insetgan.editing.layers import style_affines
from insetgan.errors import InsetganError
from insetgan.networks.stylegan3 import is_stylegan3


def w_offset(edits: Sequence[LoadedEdit], num_ws: int, w_dim: int, scale: float = 1.0) -> np.ndarray:
    """The sum of the W edits' ``α·d`` rows, ``[num_ws, w_dim]`` float64 (zero without W edits)."""
    total = np.zeros((num_ws, w_dim), dtype=np.float64)
    for e in edits:
        if isinstance(e.direction, WDirection):
            if e.direction.rows.shape != total.shape:
                raise InsetganError(f"edit {e.edit.text()} was read for another generator")
            total += float(e.edit.strength) * scale * e.direction.rows.astype(np.float64)
    return total


def apply_w_edits(ws: torch.Tensor, edits: Sequence[LoadedEdit], scale: float = 1.0) -> torch.Tensor:
    """``ws`` [N, num_ws, w_dim] with every W edit added (a new tensor; style-space edits are ignored here)."""
    if ws.ndim != 3:
        raise InsetganError(f"ws must have shape [N, num_ws, w_dim], got {list(ws.shape)}")
    offset = w_offset(edits, ws.shape[1], ws.shape[2], scale)
    if not offset.any():
        return ws.clone()
    return ws + torch.from_numpy(offset).to(device=ws.device, dtype=ws.dtype)


def style_offsets(edits: Sequence[LoadedEdit], widths: Sequence[int], scale: float = 1.0
                  ) -> list[np.ndarray | None]:
    """The summed ``α·v_i`` of the style-space edits per style layer (None where no edit touches it)."""
    out: list[np.ndarray | None] = [None] * len(widths)
    for e in edits:
        if not isinstance(e.direction, StyleDirection):
            continue
        if len(e.direction.layers) != len(widths):
            raise InsetganError(f"edit {e.edit.text()} was read for another generator")
        for i, v in enumerate(e.direction.layers):
            if v is not None:
                add = float(e.edit.strength) * scale * v.astype(np.float64)
                out[i] = add if out[i] is None else out[i] + add
    return out


def _adder(offset: torch.Tensor):  # noqa: ANN202 - a torch forward hook
    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + offset.to(device=output.device, dtype=output.dtype)

    return hook


@contextlib.contextmanager
def style_edits(G: nn.Module, edits: Sequence[LoadedEdit], scale: float = 1.0) -> Iterator[None]:
    """While the block runs, ``G``'s style layers get the style-space edits added to their styles.

    Without style-space edits this does nothing (any network). With them ``G`` must be a
    StyleGAN2 network; the hooks are removed on leaving, also on errors.
    """
    affines = style_affines(G)
    if not any(isinstance(e.direction, StyleDirection) for e in edits):
        yield
        return
    if is_stylegan3(G):
        raise InsetganError("style-space edits need a StyleGAN2 network (W directions work for StyleGAN3)")
    widths = [int(a.weight.shape[0]) for a in affines]
    offsets = style_offsets(edits, widths, scale)
    handles = []
    try:
        for affine, off in zip(affines, offsets):
            if off is not None:
                handles.append(affine.register_forward_hook(_adder(torch.from_numpy(off).to(torch.float32))))
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def synthesize_edited(G: nn.Module, ws: torch.Tensor, edits: Sequence[LoadedEdit], scale: float = 1.0,
                      noise_mode: str = "const") -> torch.Tensor:
    """Images [N, C, H, W] of ``ws`` with every edit applied (W edits to the rows, style edits as hooks)."""
    with style_edits(G, edits, scale):
        return G.synthesis(apply_w_edits(ws, edits, scale), noise_mode=noise_mode)
