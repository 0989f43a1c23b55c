"""The page's latent edits of the body: sliders for the built-in body's directions, a menu of the operator's files.

The sliders (one per direction shipped for the built-in body, ``default-body:NAME``, listed in
``insetgan/assets/directions/body.json``) are shown only while the body menu names a network
whose file is that body: body.json records its SHA-256, and the directions belong to it. The
menu offers the direction files the operator allowed (``insetgan app --directions FILE``), by
file name; a request names one of them and a strength, never a path, and any other value gets
one refusal that does not depend on it. Both become ``--edit`` specs of the tab's request
(:func:`insetgan.jobs.options.request_from`), so the job edits the body start as the command
line does.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from insetgan import io as iio
from insetgan.app.choices import Entry
from insetgan.editing.directions import BUILTIN_DIRECTIONS, directions_dir
from insetgan.editing.spec import Edit, parse_edit
from insetgan.errors import InsetganError
from insetgan.jobs.options import parse_float, unset
from insetgan.limits import Range
from insetgan.models import models_dir, resolve_network

BUILTIN_SOURCE = "default-body"
SLIDER = Range(-3.0, 3.0)  # the strengths of a built-in direction's slider
FILE_STRENGTH = Range(-10.0, 10.0)  # the strength slider of the operator's direction
NO_DIRECTION = "none"  # the direction menu's entry for no edit
REFUSED = "the direction must be one of the directions offered on this page"


@dataclass(frozen=True)
class DirectionChoices:
    """The page's edits: the built-in body's direction names (a slider each), the body menu names they are offered
    for, and the operator's direction files as (name shown, their spec without a strength)."""

    named: tuple[str, ...] = ()
    bodies: frozenset[str] = frozenset()
    files: tuple[tuple[str, Edit], ...] = ()
    convention: str = ""

    def menu(self) -> list[str]:
        """The direction menu: none, then the operator's files by name."""
        return [NO_DIRECTION, *(name for name, _ in self.files)]

    def resolve(self, name: object) -> Edit | None:
        """The direction of an offered name (None for ``none`` or no value); one refusal otherwise."""
        if unset(name) or name == NO_DIRECTION:
            return None
        for offered, edit in self.files:
            if isinstance(name, str) and name == offered:
                return edit
        raise InsetganError(REFUSED)

    def specs(self, body: str, values: Sequence[object]) -> tuple[str, ...]:
        """The ``--edit`` specs of a request's edit values: one per slider, then the direction name and its strength
        (values a request leaves out are no edit). A non-zero slider needs a body the directions belong to."""
        n = len(self.named)
        if len(values) > n + 2 * bool(self.files):
            raise InsetganError(f"a request takes at most {n + 2 * bool(self.files)} edit values, got {len(values)}")
        out = []
        for name, value in zip(self.named, values):
            strength = _strength(value, f"the {name} slider", SLIDER)
            if strength and body not in self.bodies:
                raise InsetganError(f"the {name} slider belongs to the built-in body: choose it under Networks")
            if strength:
                out.append(Edit(BUILTIN_SOURCE, name, strength=strength).text())
        direction = self.resolve(values[n]) if len(values) > n else None
        strength = _strength(values[n + 1], "the direction's strength", FILE_STRENGTH) if len(values) > n + 1 else 0.0
        if direction is not None and strength:
            out.append(dataclasses.replace(direction, strength=strength).text())
        return tuple(out)


def _strength(value: object, what: str, rng: Range) -> float:
    """A strength from a slider's value (not given: 0), within ``rng``."""
    if unset(value):
        return 0.0
    number = parse_float(value, what)
    rng.check(number, what)
    return number


def builtin_record() -> dict[str, Any]:
    """body.json of the built-in body's directions (empty when this installation has none)."""
    path = directions_dir() / "body.json"
    if not (path.is_file() and (directions_dir() / BUILTIN_DIRECTIONS[BUILTIN_SOURCE]).is_file()):
        return {}
    return json.loads(path.read_text())


def direction_bodies(body_menu: Sequence[Entry], sha256: str, size: int) -> frozenset[str]:
    """The body menu's names whose network file has the SHA-256 (and size) the built-in directions were made for."""
    names = set()
    for name, spec in body_menu:
        try:
            path = Path(resolve_network(spec, "body"))
        except InsetganError:
            continue
        if path.is_file() and path.stat().st_size == size and iio.sha256(path) == sha256:
            names.add(name)
    return frozenset(names)


def _file_entry(text: str) -> tuple[str, Edit]:
    """An operator's ``--directions FILE[:NAME][@ROWS][%T]``: the name the menu shows and its spec."""
    edit = parse_edit(text, strength_required=False)
    if not Path(edit.source).exists():
        raise InsetganError(f"--directions: direction file not found: {edit.source}")
    resolved = dataclasses.replace(edit, source=str(Path(edit.source).resolve()), strength=1.0)
    shown = dataclasses.replace(edit, source=Path(edit.source).name).text().rpartition("=")[0]
    return shown, resolved


def allowed_directions(files: Sequence[str], body_menu: Sequence[Entry]) -> DirectionChoices:
    """The page's edits: the built-in body's directions for the body menu's entries that are that body, and the
    operator's direction files (two different files under one name are an error at start)."""
    record = builtin_record()
    entries: dict[str, Edit] = {}
    for text in files:
        name, edit = _file_entry(text)
        if name in entries and entries[name] != edit:
            raise InsetganError(f"--directions: two directions are named {name}: rename one")
        entries[name] = edit
    body = models_dir() / record.get("generator", {}).get("file", "")
    if not (record and body.is_file()):
        return DirectionChoices(files=tuple(entries.items()))
    bodies = direction_bodies(body_menu, record["generator"]["sha256"], body.stat().st_size)
    return DirectionChoices(tuple(record["directions"]), bodies, tuple(entries.items()), record.get("convention", ""))


def edit_controls(gr: Any, dirs: DirectionChoices, tab: str, body_menu: Any) -> list[Any]:
    """The tab's edit controls (the sliders, then the direction menu and its strength), folded away; the sliders
    show only while ``body_menu`` names a body the built-in directions belong to (a change resets them to 0)."""
    if not dirs.named and not dirs.files:
        return []
    with gr.Accordion("Edit the body (latent directions)", open=False):
        with gr.Column(visible=body_menu.value in dirs.bodies) as group:
            sliders = [gr.Slider(SLIDER.lo, SLIDER.hi, value=0, step=0.25, label=name.replace("_", " "),
                                 info=dirs.convention or None, elem_id=f"{tab}-dir-{name}") for name in dirs.named]
        controls = list(sliders)
        if dirs.files:
            controls += [gr.Dropdown(dirs.menu(), value=NO_DIRECTION, label="Direction", elem_id=f"{tab}-direction"),
                         gr.Slider(FILE_STRENGTH.lo, FILE_STRENGTH.hi, value=0, step=0.25, label="Its strength",
                                   elem_id=f"{tab}-direction-strength")]
    if sliders:
        body_menu.change(lambda name: [gr.update(visible=name in dirs.bodies)] + [0] * len(sliders), [body_menu],
                         [group, *sliders], queue=False, api_visibility="private")
    return controls
