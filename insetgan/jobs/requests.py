"""One request per job: every setting a user gives, declared once, checked when the request is made.

Each request is a frozen dataclass of user-level values (text, numbers, paths, yes/no) declared
with :func:`~insetgan.jobs.options.option`; the command line's options are generated from these
declarations and the page and the scripts build requests with
:func:`~insetgan.jobs.options.request_from`. ``__post_init__`` refuses a bad request with one
line that names the option. What a job needs beyond the user's words (latent sources, boxes,
the embedding and optimisation configs) comes from the request's properties.

Shared groups: :class:`JobRequest` (the device), :class:`PerceptualOptions`, :class:`StartOptions`
(where a photo's inversion starts), :class:`Engine` (the optimisation and the photo inversion of
compose, sample-bodies and refine-face) and :class:`BodyJob` (the body and face starts of compose
and sample-bodies). The requests of the jobs on one network (generate, edit, train,
train-encoder) are in :mod:`insetgan.jobs.network_requests`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from insetgan import io as iio
from insetgan.devices import DEVICES
from insetgan.editing.spec import EDIT_HELP, Edit, parse_edit
from insetgan.errors import InsetganError
from insetgan.inversion.embedding import EmbedConfig
from insetgan.inversion.encoder import ENCODER_HELP, INIT_CHOICES, INIT_HELP, StartConfig
from insetgan.inversion.invert import MODES as INVERT_MODES
from insetgan.inversion.invert import REFINE_STEPS, InvertConfig, PTIConfig, refine_config
from insetgan.inversion.perceptual import PERCEPTUAL_SPECS
from insetgan.jobs.options import REQUIRED, check_values, escape, option, refusal
from insetgan.jobs.sources import LatentSource, latent_source
from insetgan.limits import MAX_CANDIDATES, SEED_RANGE, Range
from insetgan.method.blend import BLENDS
from insetgan.method.config import STEPS_RANGE, OptimConfig, load_config
from insetgan.method.losses import WEIGHT_RANGE
from insetgan.method.regions import Box
from insetgan.sampling import PSI_RANGE

IDENTITY_WEIGHT = 0.5  # the identity loss weight of a selfie's or reference's embedding and of the joint optimisation
DEFAULT_BODIES = 8  # sample-bodies without --num or --body-seeds
CKPT_SUFFIXES = (".pkl", ".pt", ".pth", ".safetensors")
PROJECTOR_STEPS = Range(1, 100_000, integer=True)
STEPS_SHOWN = f"{InvertConfig.steps} from w_avg, {REFINE_STEPS} after an encoder"
SEARCH = Range(1, 1024, integer=True)
FACE_EDIT_HELP = "Direction for the face inset's start, as --edit takes it. Repeat to combine."
NETWORK_HELP = "Generator checkpoint (.pkl, .pt, .safetensors) or a built-in model (default-body, default-face, " \
               "default-shoes)."


@dataclass(frozen=True, kw_only=True)
class JobRequest:
    """What every job takes: where it runs. ``command`` names the job in its report."""

    command: ClassVar[str] = ""
    device: str = option("auto", "Where to run (auto: CUDA when available).", choices=DEVICES)

    def __post_init__(self) -> None:
        check_values(self)

    def refuse(self, template: str) -> InsetganError:
        """A refusal of this request; ``{field}`` in ``template`` names that option."""
        return refusal(self, template)

    def exclusive(self, first: str, *others: str) -> None:
        """Refuse a request that gives option ``first`` and any of ``others``."""
        if getattr(self, first) is None:
            return
        for other in others:
            if getattr(self, other) is not None:
                raise self.refuse("give either {" + first + "} or {" + other + "}, not both")

    def edit_list(self, field: str) -> tuple[Edit, ...]:
        """The edits of the ``--edit``-like option ``field`` (``FILE[:NAME][@ROWS][%T][=STRENGTH]`` specs; without
        ``=STRENGTH`` the strength is 1); a bad spec is refused in one line naming that option."""
        try:
            return tuple(parse_edit(spec, strength_required=False) for spec in getattr(self, field))
        except InsetganError as exc:
            raise self.refuse("{" + field + "}: " + escape(str(exc))) from None


@dataclass(frozen=True, kw_only=True)
class PerceptualOptions(JobRequest):
    """The perceptual distance of a job that compares images."""

    perceptual: str = option("auto", "Perceptual loss: LPIPS when its backbone weights are found (auto), or the "
                             "l1-ssim fallback.", choices=PERCEPTUAL_SPECS)
    weights: str | None = option(None, "LPIPS backbone file or folder (else $INSETGAN_WEIGHTS, then the torch hub "
                                 "cache).", metavar="PATH")


@dataclass(frozen=True, kw_only=True)
class StartOptions(PerceptualOptions):
    """Where the inversion of a job's photos starts: an encoder trained for the network, or ``w_avg``."""

    init: str = option("auto", INIT_HELP, choices=INIT_CHOICES)
    encoder: str | None = option(None, ENCODER_HELP, metavar="FILE")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder is None:
            return
        if self.init == "mean":
            raise self.refuse("{encoder} and {init} mean exclude each other")
        if not Path(self.encoder).is_file():
            raise self.refuse("{encoder}: encoder file not found: " + escape(self.encoder))

    @property
    def start_config(self) -> StartConfig:
        """The start the user chose; an encoder file serves the network it was trained for."""
        return StartConfig(self.init, self.encoder)

    def projector_configs(self, steps: int | None, **common: object) -> tuple[InvertConfig, InvertConfig]:
        """The projector from ``w_avg`` and the refinement of an encoder's start, with ``steps`` when given."""
        return (InvertConfig(**{"steps": steps or InvertConfig.steps, **common}),
                refine_config(steps or REFINE_STEPS, **common))


@dataclass(frozen=True, kw_only=True)
class Engine(StartOptions):
    """The optimisation of compose, sample-bodies and refine-face, and how they embed the user's photos."""

    face_net: str = option("default", "Face generator; 'default' = the built-in model.", metavar="CKPT")
    preset: str = option("default", "default, paper, stylegan-human, or a JSON/YAML config file.",
                         metavar="NAME|FILE")
    steps: int | None = option(None, "Total steps (the preset's schedule is rescaled).", range=STEPS_RANGE)
    trunc: float = option(0.7, "Truncation psi for seeds.", range=PSI_RANGE)
    blend: str | None = option(None, "Final composite (default: the preset's).", choices=BLENDS)
    face_box: str | None = option(None, "Face box in canvas pixels (skips detection).", metavar="x,y,w,h")
    keep_best: bool = option(False, "Return the start face where the result's face got worse (lower dlib score, "
                             "or not the reference person).")
    invert_steps: int | None = option(None, "Projector steps for --face/--outfit/--reference photos.",
                                      range=PROJECTOR_STEPS, shown=STEPS_SHOWN)
    pti: bool = option(False, "Pivotal tuning after projecting a photo (sharper, slower).")
    pti_steps: int | None = option(None, "", range=PROJECTOR_STEPS, shown=PTIConfig.steps)
    identity_weight: float = option(IDENTITY_WEIGHT, "Weight of the MobileFaceNet identity loss keeping the "
                                    "user's face.", range=WEIGHT_RANGE)
    face_edits: tuple[str, ...] = option((), FACE_EDIT_HELP, flag="--face-edit", metavar="SPEC", many=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.box("face_box")
        self.edit_list("face_edits")
        if self.pti_steps is not None and not self.pti:
            raise self.refuse("{pti_steps} needs {pti}")

    def box(self, field: str) -> Box | None:
        """The box typed into option ``field`` (``x,y,w,h[,angle]``), or None when it was not given."""
        text = getattr(self, field)
        if text is None:
            return None
        try:
            return Box.parse(text)
        except ValueError as exc:
            raise self.refuse("{" + field + "}: " + escape(str(exc))) from None

    def check_photo(self, field: str) -> None:
        """Refuse a photo option that names a checkpoint or a missing file."""
        path = getattr(self, field)
        if path is None:
            return
        if Path(path).suffix.lower() in CKPT_SUFFIXES:
            raise self.refuse("{" + field + "} takes a photo, not a checkpoint")
        if not Path(path).is_file():
            raise self.refuse("{" + field + "}: photo not found: " + escape(path))

    def check_face_start(self, photo: str) -> None:
        """Refuse a bad photo in option ``photo`` and more than one face start (the photo, ``face_seed``,
        ``face_latent``: the requests with a face start declare both)."""
        self.check_photo(photo)
        self.exclusive(photo, "face_seed", "face_latent")
        self.exclusive("face_seed", "face_latent")

    @property
    def face_box_value(self) -> Box | None:
        """The face box the user gave (canvas pixels), or None: detect it."""
        return self.box("face_box")

    @property
    def embed_config(self) -> EmbedConfig:
        """How the job embeds the user's selfie, reference or outfit photo."""
        pti = PTIConfig(steps=self.pti_steps if self.pti_steps is not None else PTIConfig.steps) if self.pti else None
        invert, refine = self.projector_configs(self.invert_steps, mode="wplus")
        return EmbedConfig(invert, pti, identity_weight=self.identity_weight, start=self.start_config, refine=refine)

    def optim_config(self) -> OptimConfig:
        """The optimisation config: the preset (or config file), rescaled to ``steps``, with another blend."""
        cfg = load_config(self.preset)
        if self.steps is not None:
            cfg = cfg.with_steps(self.steps)
        if self.blend is not None:
            cfg = dataclasses.replace(cfg, blend=self.blend)
        return cfg


@dataclass(frozen=True, kw_only=True)
class BodyJob(Engine):
    """The body generator and the face start of compose and sample-bodies."""

    body: str = option("default", "Canvas (full-body) generator; 'default' = the built-in model.", metavar="CKPT")
    face_seed: int | None = option(None, "Face seed (default 0).", range=SEED_RANGE)
    face_latent: str | None = option(None, "Face W/W+ (.npy, or latents.npz of a run).", metavar="FILE")
    detector: str = option("auto", "Face box: dlib detection (auto: when installed), or the fixed prior.",
                           choices=("auto", "dlib", "fixed"))
    face_photo: str | None = option(None, "Your selfie: the result gets your face.", flag="--face", metavar="PHOTO")
    edits: tuple[str, ...] = option((), "For the body (canvas) start. " + EDIT_HELP, flag="--edit", metavar="SPEC",
                                    many=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_face_start("face_photo")
        self.edit_list("edits")

    @property
    def face_source(self) -> LatentSource:
        """The face's start: a latent file or a seed (0 by default); the selfie replaces it when given."""
        return latent_source(self.face_seed, self.face_latent, "face")


@dataclass(frozen=True, kw_only=True)
class ComposeRequest(BodyJob):
    """``compose``: one full body from a body, a face (and optional shoes) generator."""

    command: ClassVar[str] = "compose"
    outfit: str | None = option(None, "A full-body photo whose clothes the body starts from.", metavar="PHOTO")
    outfit_mask: str | None = option(None, "Person mask of --outfit (non-zero = person).", metavar="MASK")
    shoes_net: str | None = option(None, "Optional shoes generator ('default' = built-in).", metavar="CKPT")
    body_seed: int | None = option(None, "Body seed (default 0).", range=SEED_RANGE)
    body_latent: str | None = option(None, "Body W/W+ (.npy, or latents.npz of a run).", metavar="FILE")
    shoes_seed: int | None = option(None, "Shoes seed (default 0).", range=SEED_RANGE)
    shoes_box: str | None = option(None, "Shoes box (default: prior + local search).", metavar="x,y,w,h")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.box("shoes_box")
        self.check_photo("outfit")
        self.exclusive("outfit", "body_seed", "body_latent")
        self.exclusive("body_seed", "body_latent")
        if self.outfit_mask is not None and self.outfit is None:
            raise self.refuse("{outfit_mask} needs {outfit}")
        if self.shoes_net is None and (self.shoes_box is not None or self.shoes_seed is not None):
            raise self.refuse("{shoes_box}/{shoes_seed} need {shoes_net}")

    @property
    def body_sources(self) -> tuple[LatentSource, ...]:
        """The body's start (one candidate): a latent file or a seed (0 by default)."""
        return (latent_source(self.body_seed, self.body_latent, "canvas"),)

    @property
    def shoes_source(self) -> LatentSource | None:
        """The shoes' start seed, when there is a shoes generator."""
        return LatentSource(seed=self.shoes_seed or 0, key="shoes") if self.shoes_net is not None else None


@dataclass(frozen=True, kw_only=True)
class SampleBodiesRequest(BodyJob):
    """``sample-bodies``: many bodies for one face, optimised together and each kept close to that face."""

    command: ClassVar[str] = "sample-bodies"
    face_photo: str | None = option(None, "Your selfie: every body gets your face.", flag="--face", metavar="PHOTO")
    num: int | None = option(None, f"Number of bodies  [default: {DEFAULT_BODIES}, or as many as --body-seeds "
                             f"lists]", range=Range(1, MAX_CANDIDATES, integer=True))
    body_seeds: str | None = option(None, f"Body seeds, e.g. 10-17 (default 0..num-1; at most {MAX_CANDIDATES}).")

    def __post_init__(self) -> None:
        super().__post_init__()
        listed = len(self.seeds)
        if self.num is not None and self.body_seeds is not None and self.num != listed:
            raise self.refuse("{num} " + str(self.num) + " but {body_seeds} lists " + str(listed)
                              + " seeds: give one of them")

    @property
    def seeds(self) -> list[int]:
        """The body seeds: the listed ones, else 0..num-1."""
        if self.body_seeds is not None:
            return iio.parse_range(self.body_seeds, "body seed", max_count=MAX_CANDIDATES)
        return list(range(self.num or DEFAULT_BODIES))

    @property
    def body_sources(self) -> tuple[LatentSource, ...]:
        """One body start per seed."""
        return tuple(LatentSource(seed=s) for s in self.seeds)


@dataclass(frozen=True, kw_only=True)
class RefineRequest(Engine):
    """``refine-face``: the face of an existing image refined (or replaced by the user's)."""

    command: ClassVar[str] = "refine-face"
    image: str = option(REQUIRED, "The image whose face is refined.", argument=True, metavar="IMAGE")
    reference: str | None = option(None, "Your selfie: replace the face by yours.", metavar="PHOTO")
    face_seed: int | None = option(None, "Face start seed (default: best of --search seeds).", range=SEED_RANGE)
    face_latent: str | None = option(None, "Face start W/W+ (.npy or latents.npz).", metavar="FILE")
    search: int = option(16, "Seeds tried for the start face when no seed or latent is given.", range=SEARCH)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_face_start("reference")

    @property
    def face_source(self) -> LatentSource | None:
        """The face's start: a latent file, a seed, or None (the best of ``search`` seeds)."""
        return latent_source(self.face_seed, self.face_latent, "face", default_seed=None)


@dataclass(frozen=True, kw_only=True)
class InvertRequest(StartOptions):
    """``invert``: photos projected into a generator (GAN inversion), optionally with pivotal tuning."""

    command: ClassVar[str] = "invert"
    images: tuple[str, ...] = option(REQUIRED, "The photos, inverted together as one batch.", argument=True,
                                     many=True, metavar="IMAGE...")
    network: str = option(REQUIRED, NETWORK_HELP, metavar="CKPT")
    mode: str = option("wplus", "Latent space; pti = W pivot, then pivotal tuning of the generator.",
                       choices=(*INVERT_MODES, "pti"))
    steps: int | None = option(None, "Projector steps.", range=PROJECTOR_STEPS, shown=STEPS_SHOWN)
    pti_steps: int | None = option(None, "", range=PROJECTOR_STEPS, shown=PTIConfig.steps)
    align: bool = option(True, "FFHQ-align the largest face (face networks); --no-align crops the photo to the "
                         "network's aspect.")
    mask: str | None = option(None, "Invert only a region: a mask in the network's output frame (resized; "
                              "non-zero = keep).", metavar="MASK")
    identity_weight: float = option(0.0, "MobileFaceNet identity loss weight (aligned faces only).",
                                    range=WEIGHT_RANGE)
    seed: int = option(0, "Seed of the projector's latent noise.", range=SEED_RANGE)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pti_steps is not None and self.mode != "pti":
            raise self.refuse("{pti_steps} needs {mode} pti")
        if self.identity_weight > 0 and not self.align:
            raise self.refuse("{identity_weight} needs {align} (aligned faces)")

    @property
    def start_config(self) -> StartConfig:
        """The start the user chose: an encoder file means ``init='encoder'`` (one network: the file must match)."""
        return StartConfig("encoder" if self.encoder is not None else self.init, self.encoder)

    def invert_config(self, encoder: bool) -> InvertConfig:
        """The projector's settings from ``w_avg`` or, with ``encoder``, refining its start (``pti`` projects into W
        first)."""
        invert, refine = self.projector_configs(self.steps, mode="w" if self.mode == "pti" else self.mode,
                                                seed=self.seed, identity_weight=self.identity_weight)
        return refine if encoder else invert

    @property
    def pti_config(self) -> PTIConfig | None:
        """Pivotal tuning's settings with ``--mode pti``."""
        if self.mode != "pti":
            return None
        return PTIConfig(steps=self.pti_steps) if self.pti_steps is not None else PTIConfig()
