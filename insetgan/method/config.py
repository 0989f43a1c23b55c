"""The joint optimisation's settings: stages, loss weights, learning rates, presets (:func:`load_config`)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from insetgan.configfile import read_mapping
from insetgan.errors import InsetganError
from insetgan.limits import Range, check_choice, check_ranges, check_text, clipped, listed, ranged, short_repr
from insetgan.method import losses as L
from insetgan.method.blend import BLENDS
from insetgan.method.boxes import TrackConfig

ROLES = ("canvas", "insets")
SCHEDULES = ("joint", "alternating")
BORDER_METRICS = ("l1", "mse")
MAX_STEPS = 100_000  # total optimisation steps of a run (the presets use 30 to 675)
STEPS_RANGE = Range(1, MAX_STEPS, integer=True)
MAX_STAGES = 32
MAX_LR = 10.0


@dataclass(frozen=True)
class Stage:
    """One optimisation stage: which roles move, how, and whether boxes are re-estimated.

    ``optimize`` lists roles; with ``schedule='alternating'`` they take turns every
    ``switch_every`` steps in the listed order (the first role runs first). Boxes with a
    detector are re-estimated every ``track_every`` steps (0: never) up to ``track_until``.
    """

    name: str
    steps: int = ranged(dataclasses.MISSING, 0, MAX_STEPS, integer=True)
    optimize: tuple[str, ...] = ("canvas", "insets")
    schedule: str = "joint"
    switch_every: int = ranged(40, 1, MAX_STEPS, integer=True)
    track_every: int = ranged(0, 0, MAX_STEPS, integer=True)
    track_until: int | None = ranged(None, 0, MAX_STEPS, integer=True, optional=True)

    def __post_init__(self) -> None:
        check_text(self.name, "a stage name")
        where = f"stage {self.name!r}: "
        if not isinstance(self.optimize, (tuple, list)) or not 1 <= len(self.optimize) <= len(ROLES) \
                or any(not isinstance(r, str) or r not in ROLES for r in self.optimize):
            raise InsetganError(f"{where}optimize must list roles from {ROLES}, got {listed(self.optimize)}")
        object.__setattr__(self, "optimize", tuple(self.optimize))
        check_choice(self.schedule, where + "schedule", SCHEDULES)
        check_ranges(self, where)


@dataclass(frozen=True)
class OptimConfig:
    """Everything that defines an InsetGAN run (serialisable; written into every report)."""

    name: str = "default"
    stages: tuple[Stage, ...] = (Stage("joint", 30, ("canvas", "insets"), "joint", track_every=5, track_until=20),)
    # The canvas moves slowly and is held to its start (body_l1 2), the settings measured on the built-in
    # body with the example selfie (docs/method.md, "The default preset's canvas settings").
    lr_canvas: float = ranged(0.01, 0.0, MAX_LR, lo_open=True)
    lr_inset: float = ranged(0.02, 0.0, MAX_LR, lo_open=True)
    lr_rampup: float = ranged(0.05, 0.0, 1.0)  # fractions of a stage
    lr_rampdown: float = ranged(0.25, 0.0, 1.0)
    canvas_weights: L.LossWeights = L.LossWeights(coarse_l1=1.0, coarse_perceptual=0.5, border=20.0,
                                                  body_l1=2.0, body_perceptual=0.1)
    inset_weights: L.LossWeights = L.LossWeights(coarse_l1=1.0, coarse_perceptual=0.5, border=20.0,
                                                 face_l1=0.5, face_perceptual=0.1)
    reg_mean_canvas: float = ranged(0.02, 0.0, L.MAX_WEIGHT)
    reg_delta_canvas: float = ranged(2.0, 0.0, L.MAX_WEIGHT)
    reg_mean_inset: float = ranged(0.01, 0.0, L.MAX_WEIGHT)
    reg_delta_inset: float = ranged(1.0, 0.0, L.MAX_WEIGHT)
    # > 0: the canvas W+ stays within this RMS distance of its start (a trust region)
    canvas_trust: float = ranged(0.0, 0.0, 1000.0)
    coarse_size: int = ranged(64, 4, 1024, integer=True)
    border_px: int = ranged(8, 1, 256, integer=True)
    border_metric: str = "l1"  # l1 or mse on the border strips (the official code uses MSE), for both roles
    track: TrackConfig = TrackConfig()
    blend: str = "laplacian"
    feather: float = ranged(0.125, 0.0, 0.5)

    def __post_init__(self) -> None:
        check_text(self.name, "the config name")
        if not isinstance(self.stages, tuple) or not 1 <= len(self.stages) <= MAX_STAGES \
                or not all(isinstance(s, Stage) for s in self.stages):
            raise InsetganError(f"a config needs at least one stage (and at most {MAX_STAGES})")
        if self.steps > MAX_STEPS:
            raise InsetganError(f"the stages add up to {self.steps} steps (at most {MAX_STEPS})")
        if not isinstance(self.blend, str) or self.blend not in BLENDS:
            raise InsetganError(f"unknown blend {short_repr(self.blend)}; choose from {', '.join(BLENDS)}")
        check_choice(self.border_metric, "border_metric", BORDER_METRICS)
        check_ranges(self)
        parts = {"canvas_weights": L.LossWeights, "inset_weights": L.LossWeights, "track": TrackConfig}
        for name, cls in parts.items():
            if not isinstance(getattr(self, name), cls):
                raise InsetganError(f"{name} must be a mapping of {cls.__name__} fields")

    @property
    def steps(self) -> int:
        """Total optimisation steps over all stages."""
        return sum(s.steps for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (round-trips through :meth:`from_dict`)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: "OptimConfig | None" = None) -> "OptimConfig":
        """Build a config from a (possibly partial) dict, filling the rest from ``base``."""
        base = base or cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise InsetganError(f"unknown config keys: {clipped(', '.join(unknown), 200)}")
        kw: dict[str, Any] = {}
        try:
            for key, value in data.items():
                if key == "stages":
                    kw[key] = tuple(Stage(**s) for s in value)
                elif key in ("canvas_weights", "inset_weights"):
                    kw[key] = dataclasses.replace(getattr(base, key), **value)
                elif key == "track":
                    kw[key] = dataclasses.replace(base.track, **value)
                else:
                    kw[key] = value
            return dataclasses.replace(base, **kw)
        except TypeError as exc:
            raise InsetganError(f"invalid config: {exc}") from None

    def with_steps(self, steps: int) -> "OptimConfig":
        """The same schedule rescaled to ``steps`` total steps (stage proportions and switch periods kept)."""
        STEPS_RANGE.check(steps, "--steps")
        scale = steps / max(self.steps, 1)

        def rescaled(n: int) -> int:  # a positive count times scale, within the step limit
            return min(MAX_STEPS, max(1, round(n * scale)))

        stages = []
        for s in self.stages:
            stages.append(dataclasses.replace(
                s, steps=rescaled(s.steps) if s.steps else 0, switch_every=rescaled(s.switch_every),
                track_every=rescaled(s.track_every) if s.track_every else 0,
                track_until=None if s.track_until is None else min(MAX_STEPS, round(s.track_until * scale))))
        diff = steps - sum(s.steps for s in stages)
        stages[-1] = dataclasses.replace(stages[-1], steps=max(1, stages[-1].steps + diff))
        return dataclasses.replace(self, stages=tuple(stages))


def _paper() -> OptimConfig:
    # Official config_1 numbers (InsetGAN paper, Sec. 3, and its released config), with the official bugs fixed: the border loss is on
    # from step 0, the first phase is not flipped, box widths follow the detected face.
    canvas = L.LossWeights(coarse_l1=1000, coarse_perceptual=0.15, border=5000, border_perceptual=0.25,
                           body_l1=1000, body_perceptual=0.01)
    inset = L.LossWeights(coarse_l1=500, coarse_perceptual=0.05, border=20000, border_perceptual=0.25,
                          face_perceptual=0.4)
    return OptimConfig(
        name="paper", stages=(Stage("alternating", 400, ("insets", "canvas"), "alternating", 40, 20, 100),),
        lr_canvas=0.035, lr_inset=0.006, lr_rampup=0.0, lr_rampdown=0.0, canvas_weights=canvas,
        inset_weights=inset, reg_mean_canvas=0.0, reg_delta_canvas=20000.0, reg_mean_inset=0.0,
        reg_delta_inset=20000.0, border_metric="mse", track=TrackConfig(damping=0.5), blend="feather")


def _stylegan_human() -> OptimConfig:
    # StyleGAN-Human's insetgan.py schedule (its released script): face only, body only with re-detection,
    # then alternating; its loss weights are the paper's; it hard-pastes the face.
    paper = _paper()
    stages = (Stage("face", 25, ("insets",)), Stage("body", 150, ("canvas",), track_every=50),
              Stage("alternating", 500, ("insets", "canvas"), "alternating", 50))
    return dataclasses.replace(paper, name="stylegan-human", stages=stages, lr_canvas=0.05, lr_inset=0.02,
                               lr_rampup=0.05, lr_rampdown=0.25, blend="hard")


PRESETS: dict[str, Callable[[], OptimConfig]] = {"default": OptimConfig, "paper": _paper,
                                                 "stylegan-human": _stylegan_human}


def load_config(spec: str | None = None) -> OptimConfig:
    """A preset by name (``default``, ``paper``, ``stylegan-human``) or a JSON/YAML file.

    A file may name a ``preset`` to start from and override any field (nested weights partially).
    """
    spec = spec or "default"
    if spec in PRESETS:
        return PRESETS[spec]()
    path = Path(spec)
    if not path.is_file():
        raise InsetganError(f"unknown preset {spec!r}: choose from {', '.join(PRESETS)} or give a .json/.yaml file")
    data = dict(read_mapping(path, "preset file"))
    base_name = data.pop("preset", "default")
    if not isinstance(base_name, str) or base_name not in PRESETS:
        raise InsetganError(f"preset file {path}: unknown preset {short_repr(base_name)}; choose from {', '.join(PRESETS)}")
    try:
        return OptimConfig.from_dict(data, PRESETS[base_name]())
    except InsetganError as exc:
        raise InsetganError(f"preset file {path}: {exc}") from None

