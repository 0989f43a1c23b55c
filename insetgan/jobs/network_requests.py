"""Requests of the jobs that run or train one network: ``generate``, ``edit``, ``train``, ``train-encoder``.

Declared like the composition jobs' requests in :mod:`insetgan.jobs.requests` (frozen
dataclasses of :func:`~insetgan.jobs.options.option` fields, checked when made).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from insetgan import io as iio
from insetgan.editing.spec import EDIT_HELP, Edit
from insetgan.editing.strip import StripConfig, parse_strengths
from insetgan.inversion.encoder_training import EncoderTrainConfig
from insetgan.jobs.options import REQUIRED, escape, option
from insetgan.jobs.requests import NETWORK_HELP, JobRequest
from insetgan.limits import SEED_RANGE, Range, short_repr
from insetgan.models import resolve_network
from insetgan.networks.generator import NOISE_MODES
from insetgan.sampling import PSI_RANGE, ROTATE_RANGE, TRANSLATE_RANGE, SampleConfig
from insetgan.train.config import TrainConfig

MAX_IMAGES = 1024  # generate keeps every image of a run in memory for the grid
MAX_LAYERS = 64  # W+ layers of the largest networks (18 at 1024 px; StyleGAN3: 16)
MAX_CLASSES = 100_000


@dataclass(frozen=True, kw_only=True)
class GenerateRequest(JobRequest):
    """``generate``: images of a generator for a list of seeds."""

    command: ClassVar[str] = "generate"
    network: str = option(REQUIRED, NETWORK_HELP, metavar="CKPT")
    seeds: str = option(REQUIRED, f"Seeds, e.g. 0-3,7 (each in 0..{SEED_RANGE.hi:.0f}, at most {MAX_IMAGES} of "
                        f"them).")
    trunc: float = option(1.0, "Truncation psi.", range=PSI_RANGE)
    trunc_cutoff: int | None = option(None, "Truncate only the first N layers (at most the network's num_ws).",
                                      range=Range(0, MAX_LAYERS, integer=True))
    noise_mode: str = option("const", "", choices=NOISE_MODES)
    class_idx: int | None = option(None, "Class label for conditional networks (0..c_dim-1).", flag="--class",
                                   range=Range(0, MAX_CLASSES, integer=True))
    translate: str | None = option(None, "StyleGAN3 only: translate the images (e.g. 0.1,-0.05; each in [-10, 10]), "
                                   "as the official gen_images.py.", metavar="X,Y")
    rotate: float | None = option(None, "StyleGAN3 only: rotate the images by DEG degrees, as the official "
                                  "gen_images.py.", metavar="DEG", range=ROTATE_RANGE)
    raw: bool = option(False, "Also write each float32 CHW image as seedNNNN.npy.")
    edits: tuple[str, ...] = option((), EDIT_HELP, flag="--edit", metavar="SPEC", many=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.seed_list()
        self.shift()
        self.parsed_edits()

    def parsed_edits(self) -> tuple[Edit, ...]:
        """The ``--edit`` specs (a spec without ``=α`` has strength 1; the strip job scales it per column)."""
        return self.edit_list("edits")

    def seed_list(self) -> list[int]:
        """The seeds, in the order given."""
        return iio.parse_range(self.seeds, "seed", max_count=MAX_IMAGES)

    def shift(self) -> tuple[float, float] | None:
        """``--translate X,Y`` as two numbers (None when not given)."""
        if self.translate is None:
            return None
        try:
            numbers = [float(p) for p in self.translate.split(",")]
        except ValueError:
            numbers = []
        if len(numbers) != 2 or not all(TRANSLATE_RANGE.contains(v) for v in numbers):
            raise self.refuse("{translate} takes two finite numbers X,Y in " + TRANSLATE_RANGE.text()
                              + " (e.g. 0.1,-0.2), got " + escape(short_repr(self.translate)))
        return numbers[0], numbers[1]

    @property
    def sample_config(self) -> SampleConfig:
        """How the images are sampled."""
        return SampleConfig(self.trunc, self.trunc_cutoff, self.noise_mode, self.class_idx, self.shift(), self.rotate)


@dataclass(frozen=True, kw_only=True)
class EditRequest(GenerateRequest):
    """``edit``: each seed rendered along direction edits, one grid column per strength factor."""

    command: ClassVar[str] = "edit"
    edits: tuple[str, ...] = option(REQUIRED, EDIT_HELP, flag="--edit", metavar="SPEC", many=True)
    strengths: str = option("-3,0,3", "Columns of the grid: factors of each edit's strength.")

    def __post_init__(self) -> None:
        super().__post_init__()
        StripConfig(tuple(self.seed_list()), self.strength_list())

    def strength_list(self) -> tuple[float, ...]:
        """The grid's columns: factors of every edit's strength."""
        return parse_strengths(self.strengths)


@dataclass(frozen=True, kw_only=True)
class TrainRequest(TrainConfig, JobRequest):
    """``train``: a generator trained on a prepared dataset; the hyper-parameters are :class:`TrainConfig`'s
    (``--z-dim`` sets both z and w sizes)."""

    command: ClassVar[str] = "train"
    data: str = option(REQUIRED, "Prepared dataset (insetgan prepare): images + dataset.json.", metavar="DIR|ZIP")
    resume: str | None = option(None, "Continue a run from a saved training state.", metavar="STATE.pt")
    init: str | None = option(None, "Warm start: G and G_ema from a generator file (a snapshot, a shipped model, a "
                              ".pkl/.pt); a new discriminator. Our snapshots continue at their kimg.",
                              metavar="NETWORK")
    w_dim: int = dataclasses.field(default=TrainConfig.w_dim, init=False, repr=False)  # the config's is z_dim

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.resume is not None and not Path(self.resume).is_file():
            raise self.refuse("{resume}: state not found: " + escape(self.resume))
        if self.init is not None and self.resume is not None:
            raise self.refuse("{init} and {resume} exclude each other (a state already holds its networks)")
        if self.init is not None and not Path(self.init_path or "").is_file():
            raise self.refuse("{init}: network not found: " + escape(str(self.init_path)))
        if self.init is None and self.resume is None and self.d_warmup_kimg > 0:
            raise self.refuse("{d_warmup_kimg} needs {init} (a new run has nothing to warm the discriminator up "
                              "for)")

    @property
    def init_path(self) -> str | None:
        """The warm start's network file (a built-in model's name resolved)."""
        return resolve_network(self.init) if self.init is not None else None

    @property
    def config(self) -> TrainConfig:
        """The run's hyper-parameters."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)}
        return TrainConfig(**{**values, "w_dim": self.z_dim})


@dataclass(frozen=True, kw_only=True)
class TrainEncoderRequest(EncoderTrainConfig, JobRequest):
    """``train-encoder``: an image → W+ encoder for a generator; the settings are :class:`EncoderTrainConfig`'s."""

    command: ClassVar[str] = "train-encoder"
    network: str = option(REQUIRED, "The generator (a file or default-face, default-body).", metavar="G")
    data: str = option(REQUIRED, "Prepared dataset at the generator's size.", metavar="DIR|ZIP")
    resume: bool = option(False, "Continue from the newest state-*.pt in --outdir.")

    @property
    def config(self) -> EncoderTrainConfig:
        """The run's settings."""
        return EncoderTrainConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(EncoderTrainConfig)})
