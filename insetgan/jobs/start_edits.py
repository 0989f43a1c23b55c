"""The ``--edit`` / ``--face-edit`` directions of a job, read for the generator they edit and reported.

The composition jobs edit their start latents the way ``insetgan edit`` does
(:mod:`insetgan.editing.apply`): W directions are added to the start W+ of the generator
(after truncation), and style-space directions act on that generator's styles for the whole
optimisation and the final render (:func:`~insetgan.editing.apply.style_edits`). The joint
optimisation then starts from the edited images, so the seams close as without an edit.
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from insetgan.editing.directions import LoadedEdit, load_edits
from insetgan.editing.layers import generator_shape
from insetgan.editing.spec import Edit
from insetgan.errors import InsetganError


def load_for(G: nn.Module, edits: Sequence[Edit], option: str) -> tuple[LoadedEdit, ...]:
    """``edits`` read and checked against ``G``; a bad direction file is one line that names ``option``."""
    if not edits:
        return ()
    try:
        return load_edits(tuple(edits), generator_shape(G))
    except InsetganError as exc:
        raise InsetganError(f"{option}: {exc}") from None


def edits_report(**roles: Sequence[LoadedEdit]) -> dict[str, Any]:
    """The report's record of the edits per role (``canvas``, ``face``), each as its spec, file and SHA-256."""
    return {role: [e.to_dict() for e in loaded] for role, loaded in roles.items()}
