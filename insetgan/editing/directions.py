"""Direction files of the field's formats, read with bounded work and checked against a generator.

W directions (InterFaceGAN, SeFa, e4e, GANSpace): a vector ``d`` of shape ``(w_dim,)``,
``(1, w_dim)`` (InterFaceGAN's ``boundary.npy``) or ``(num_ws, w_dim)``, in ``.npy``, ``.npz`` (one
array per named direction; names starting with ``_`` hold metadata, e.g. SeFa's ``_eigenvalues``),
``.pt`` (a tensor or a dict of tensors) or ``.pkl`` (a pickled numpy array or dict of arrays).

Style-space (S) directions (StyleSpace; StyleGAN-Human): per-layer vectors added to the styles of
layer ``i`` (:mod:`insetgan.editing.layers`), either a folder of ``style_vect_mean_<i>.pkl`` files
(StyleGAN-Human's layout; ``statis_<i>.csv`` beside them gives per-channel scores for the mask) or
an ``.npz`` with arrays ``s<i>`` (and optional per-channel scores ``m<i>``). With a threshold
(``FILE%T``) only channels whose score's magnitude exceeds ``T`` are kept.

``default-body:NAME`` names a direction shipped for the built-in body (:data:`BUILTIN_DIRECTIONS`).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from insetgan.editing.layers import GeneratorShape
from insetgan.editing.readers import (MAX_FILE_BYTES, Arrays, checked_size, npz_names, read_channel_scores,
                                      read_direction_arrays, read_pickle_file)
from insetgan.editing.spec import Edit
from insetgan import io as iio
from insetgan.errors import InsetganError
from insetgan.limits import clipped
from insetgan.resources import ASSETS

BUILTIN_DIRECTIONS = {"default-body": "body.npz"}
STYLE_KEY = re.compile(r"^s(\d{1,3})$")
SCORE_KEY = re.compile(r"^m(\d{1,3})$")
FOLDER_VECTOR = re.compile(r"^style_vect_mean_(\d{1,3})\.pkl$")
FOLDER_SCORES = re.compile(r"^statis_(\d{1,3})\.csv$")
MAX_FOLDER_FILES = 512


def directions_dir() -> Path:
    """The folder of the shipped direction files."""
    return ASSETS / "directions"


@dataclass(frozen=True, eq=False)
class WDirection:
    """A W direction as ``[num_ws, w_dim]`` rows (zero outside the edit's rows)."""

    rows: np.ndarray


@dataclass(frozen=True, eq=False)
class StyleDirection:
    """A style-space direction: one vector per style layer (None where the edit leaves a layer alone)."""

    layers: tuple[np.ndarray | None, ...]


@dataclass(frozen=True, eq=False)
class LoadedEdit:
    """An :class:`Edit` with its direction read and checked against a generator."""

    edit: Edit
    path: str
    sha256: str
    direction: WDirection | StyleDirection

    @property
    def kind(self) -> str:
        """``"w"`` or ``"s"``."""
        return "w" if isinstance(self.direction, WDirection) else "s"

    def to_dict(self) -> dict[str, Any]:
        """The edit for a report: the spec, the file and its SHA-256, the kind and the rows or layers touched."""
        if isinstance(self.direction, WDirection):
            touched = [int(i) for i in np.flatnonzero(np.abs(self.direction.rows).sum(axis=1) > 0)]
        else:
            touched = [i for i, v in enumerate(self.direction.layers) if v is not None]
        return {**self.edit.to_dict(), "path": self.path, "sha256": self.sha256, "kind": self.kind,
                ("rows_touched" if self.kind == "w" else "layers_touched"): touched}


def resolve_source(edit: Edit) -> Path:
    """The file or folder of ``edit``: a shipped file for a built-in name, else the path as given.

    ``a:b.npz`` that is one file (a colon in its name) wins over ``a`` with the name ``b.npz``.
    """
    path = Path(edit.source)
    if edit.source in BUILTIN_DIRECTIONS and not path.exists():
        shipped = directions_dir() / BUILTIN_DIRECTIONS[edit.source]
        if not shipped.is_file():
            raise InsetganError(f"no built-in directions in this installation ({shipped} is missing)")
        return shipped
    return path


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder's direction files (names and contents, sorted)."""
    if path.is_file():
        return iio.sha256(path)
    h = hashlib.sha256()
    for p in sorted(path.iterdir()):
        if FOLDER_VECTOR.match(p.name) or FOLDER_SCORES.match(p.name):
            h.update(p.name.encode() + b"\0")
            with p.open("rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def _w_rows(arr: np.ndarray, edit: Edit, shape: GeneratorShape, what: str) -> WDirection:
    """A W direction array as ``[num_ws, w_dim]``, zero outside the edit's rows."""
    L, D = shape.num_ws, shape.w_dim
    if arr.shape not in ((D,), (1, D), (L, D)):
        raise InsetganError(f"{what} has shape {list(arr.shape)}; a W direction for this generator is [{D}], "
                            f"[1, {D}] or [{L}, {D}]")
    rows = np.broadcast_to(arr.reshape(-1, D), (L, D)).copy()
    if edit.rows is not None:
        first, last = edit.rows
        if last >= L:
            raise InsetganError(f"rows {first}-{last} of {what} are beyond this generator's W+ rows 0-{L - 1}")
        rows[:first] = 0
        rows[last + 1:] = 0
    if edit.threshold is not None:
        raise InsetganError(f"{what} is a W direction; a mask threshold (%T) applies to style-space directions")
    return WDirection(rows)


def _pick(arrays: Arrays, edit: Edit, what: str) -> np.ndarray:
    """The array the edit names, or the file's only direction."""
    if edit.name is not None:
        if edit.name not in arrays:
            listed = ", ".join(sorted(k for k in arrays if k and not k.startswith("_"))) or "no named arrays"
            raise InsetganError(f"{what} has no direction {edit.name!r} (it has {clipped(listed, 120)})")
        return arrays[edit.name]
    candidates = [k for k in arrays if not k.startswith("_")]
    if len(candidates) != 1:
        raise InsetganError(f"{what} holds {len(candidates)} directions: pick one with FILE:NAME "
                            f"({clipped(', '.join(sorted(candidates)), 120)})")
    return arrays[candidates[0]]


def _style_direction(vectors: dict[int, np.ndarray], scores: dict[int, np.ndarray], edit: Edit,
                     shape: GeneratorShape, what: str) -> StyleDirection:
    """Per-layer vectors checked against the style widths, restricted to the edit's layers, masked."""
    if shape.stylegan3:
        raise InsetganError(f"{what} is a style-space direction; style-space edits need a StyleGAN2 network "
                            "(W directions work for StyleGAN3)")
    n = len(shape.layers)
    if edit.rows is not None and edit.rows[1] >= n:
        raise InsetganError(f"layers {edit.rows[0]}-{edit.rows[1]} of {what} are beyond this generator's style "
                            f"layers 0-{n - 1}")
    if not vectors:
        raise InsetganError(f"{what} holds no style vectors (s<i> arrays or style_vect_mean_<i>.pkl files)")
    out: list[np.ndarray | None] = [None] * n
    for i, v in sorted(vectors.items()):
        if i >= n:
            raise InsetganError(f"{what} has a vector for style layer {i}; this generator has layers 0-{n - 1}")
        width = shape.layers[i].width
        if v.shape not in ((width,), (1, width)):
            raise InsetganError(f"{what}: the vector of style layer {i} has shape {list(v.shape)}; that layer has "
                                f"{width} channels")
        if edit.rows is not None and not edit.rows[0] <= i <= edit.rows[1]:
            continue
        v = v.reshape(width)
        if edit.threshold is not None:
            if i not in scores:
                raise InsetganError(f"{what} has no channel scores for layer {i} (m{i} or statis_{i}.csv) to "
                                    "threshold")
            if scores[i].shape != (width,):
                raise InsetganError(f"{what}: the channel scores of layer {i} have shape {list(scores[i].shape)}; "
                                    f"that layer has {width} channels")
            v = v * (np.abs(scores[i]) > edit.threshold)
        out[i] = v.astype(np.float32)
    if all(v is None for v in out):
        raise InsetganError(f"{what} has no vector for the layers the edit selects")
    return StyleDirection(tuple(out))


def _folder_direction(path: Path, edit: Edit, shape: GeneratorShape, what: str) -> StyleDirection:
    """A StyleGAN-Human folder: ``style_vect_mean_<i>.pkl`` (and ``statis_<i>.csv``) files."""
    entries = []
    for i, p in enumerate(path.iterdir()):
        if i >= MAX_FOLDER_FILES:
            raise InsetganError(f"{what} holds more than {MAX_FOLDER_FILES} entries; a direction folder holds one "
                                "file per style layer")
        entries.append(p)
    total = sum(checked_size(p, f"{what}/{p.name}") for p in entries
                if FOLDER_VECTOR.match(p.name) or FOLDER_SCORES.match(p.name))
    if total > MAX_FILE_BYTES:
        raise InsetganError(f"{what} holds {total:,} bytes of direction files (limit {MAX_FILE_BYTES:,})")
    vectors, scores = {}, {}
    for p in sorted(entries):
        if m := FOLDER_VECTOR.match(p.name):
            vectors[int(m.group(1))] = _pick(read_pickle_file(p, f"{what}/{p.name}"), Edit(p.name), f"{what}/{p.name}")
        elif (m := FOLDER_SCORES.match(p.name)) and edit.threshold is not None:
            scores[int(m.group(1))] = read_channel_scores(p, f"{what}/{p.name}")
    return _style_direction(vectors, scores, edit, shape, what)


def _npz_style_direction(path: Path, edit: Edit, shape: GeneratorShape, what: str) -> StyleDirection:
    """An ``.npz`` with ``s<i>`` vectors and optional ``m<i>`` channel scores."""
    arrays = read_direction_arrays(path, what)
    vectors = {int(m.group(1)): a for k, a in arrays.items() if (m := STYLE_KEY.match(k))}
    scores = {int(m.group(1)): a for k, a in arrays.items() if (m := SCORE_KEY.match(k))}
    return _style_direction(vectors, scores, edit, shape, what)


def load_edit(edit: Edit, shape: GeneratorShape) -> LoadedEdit:
    """Read the direction of ``edit`` and check it against a generator of ``shape`` (one-line errors)."""
    path = resolve_source(edit)
    if not path.exists() and edit.name is not None and Path(f"{edit.source}:{edit.name}").exists():
        path, edit = Path(f"{edit.source}:{edit.name}"), Edit(f"{edit.source}:{edit.name}", None, edit.rows,
                                                               edit.strength, edit.threshold)
    what = f"direction {clipped(str(path), 120)}"
    if path.is_dir():
        if edit.name is not None:
            raise InsetganError(f"{what} is a folder of style vectors; it has no named directions")
        direction: WDirection | StyleDirection = _folder_direction(path, edit, shape, what)
    else:
        checked_size(path, what)
        with path.open("rb") as f:
            is_npz = path.suffix.lower() not in (".pt", ".pth") and f.read(2) == b"PK"
        names = npz_names(path, what) if is_npz else []
        if any(STYLE_KEY.match(n) for n in names):
            if edit.name is not None:
                raise InsetganError(f"{what} is a style-space direction (s<i> arrays); it has no named directions")
            direction = _npz_style_direction(path, edit, shape, what)
        else:
            wanted = (edit.name,) if edit.name is not None and is_npz else None
            arrays = read_direction_arrays(path, what, wanted) if wanted is None or edit.name in names \
                else dict.fromkeys(names, np.zeros(0))
            label = f"{what}" + (f" ({edit.name})" if edit.name else "")
            direction = _w_rows(_pick(arrays, edit, what), edit, shape, label)
    return LoadedEdit(edit, str(path), file_sha256(path), direction)


def load_edits(edits: list[Edit] | tuple[Edit, ...], shape: GeneratorShape) -> tuple[LoadedEdit, ...]:
    """Every edit read and checked (the first bad one raises)."""
    return tuple(load_edit(edit, shape) for edit in edits)
