"""The networks a page request may name: the built-in models and the checkpoints the operator allowed.

The operator names checkpoints when starting the server (``--body``, ``--face-net``,
``--shoes-net``, and every checkpoint file directly in ``--models-dir``). The page offers
them by name in its menus; a request that names anything else, a path included, gets one
refusal that does not depend on the value (so it neither reads the file nor tells whether it
exists).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from insetgan.errors import InsetganError
from insetgan.jobs.requests import CKPT_SUFFIXES
from insetgan.models import DEFAULT, is_builtin

ROLES = ("body", "face", "shoes")
NO_SHOES = "none"  # the shoes menu's entry for a job without a shoes generator
LABELS = {"body": "the body network", "face": "the face network", "shoes": "the shoes network"}

Entry = tuple[str, str]  # (name shown on the page, checkpoint spec given to the loader)


@dataclass(frozen=True)
class NetworkChoices:
    """Per role, the (name, checkpoint spec) pairs a request may name, the preselected one first."""

    body: tuple[Entry, ...]
    face: tuple[Entry, ...]
    shoes: tuple[Entry, ...]

    def names(self, role: str) -> list[str]:
        """The names offered for ``role``, in menu order."""
        return [name for name, _ in getattr(self, role)]

    def resolve(self, role: str, name: object) -> str | None:
        """The checkpoint spec of an offered name (None for the shoes menu's ``none``); a refusal otherwise."""
        for offered, spec in getattr(self, role):
            if isinstance(name, str) and name == offered:
                return spec or None
        raise InsetganError(f"{LABELS[role]} must be one of the networks offered on this page")


def _operator_entry(spec: str, option: str) -> Entry:
    """A network the operator named on the command line: a built-in name, or an existing checkpoint file."""
    if is_builtin(spec):
        return spec, spec
    path = Path(spec)
    if not path.is_file():
        raise InsetganError(f"{option}: checkpoint not found (no such file): {spec}")
    return path.name, str(path.resolve())


def models_dir_entries(folder: Path | None) -> tuple[Entry, ...]:
    """The checkpoint files directly in ``folder`` (by file name; hidden files skipped)."""
    if folder is None:
        return ()
    if not folder.is_dir():
        raise InsetganError(f"--models-dir: no such folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in CKPT_SUFFIXES and not p.name.startswith(".")
                   and p.is_file())
    return tuple((p.name, str(p.resolve())) for p in files)


def _merge(first: Entry, rest: tuple[Entry, ...], option: str) -> tuple[Entry, ...]:
    """``first`` and then ``rest`` without repeats; two different files under one name are an error."""
    merged: dict[str, str] = {}
    for name, spec in (first, *rest):
        if name in merged and merged[name] != spec:
            raise InsetganError(f"{option}: two checkpoints are named {name} ({merged[name]} and {spec}): "
                                f"rename one")
        merged.setdefault(name, spec)
    return tuple(merged.items())


def allowed_networks(body: str, face_net: str, shoes_net: str | None, models_dir: Path | None) -> NetworkChoices:
    """The networks the page offers: the operator's choices (preselected), the built-in models, ``models_dir``."""
    folder = models_dir_entries(models_dir)
    builtin = ((DEFAULT, DEFAULT),)
    shoes_first = _operator_entry(shoes_net, "--shoes-net") if shoes_net is not None else (NO_SHOES, "")
    return NetworkChoices(
        body=_merge(_operator_entry(body, "--body"), builtin + folder, "--body"),
        face=_merge(_operator_entry(face_net, "--face-net"), builtin + folder, "--face-net"),
        shoes=_merge(shoes_first, ((NO_SHOES, ""),) + builtin + folder, "--shoes-net"))
