"""Encoding images with a learned encoder, and finding the encoder that belongs to a generator.

An encoder file (:mod:`insetgan.networks.encoder_files`) records the SHA-256 of its generator's
state tensors. :func:`find_encoder` looks for a file whose hash matches a given generator: first the
file named for the generator's own file (``face.safetensors`` → ``face-encoder.safetensors`` in
the same folder), then every ``*-encoder.safetensors`` of the built-in models folder. Only the
header metadata of each candidate is read until one matches. :func:`encode` turns images into the
generator's W+ in one forward pass: the start that inversion then refines.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from insetgan import io as iio
from insetgan.errors import InsetganError
from insetgan.models import models_dir
from insetgan.networks.encoder import Encoder
from insetgan.networks.encoder_files import ENCODER_FORMAT, load_encoder, network_sha256, read_encoder_header
from insetgan.networks.native import read_metadata
from insetgan.networks.stylegan3 import AnyGenerator

log = logging.getLogger(__name__)

ENCODER_SUFFIX = "-encoder.safetensors"
MAX_CANDIDATES = 64  # encoder files looked at in one folder
INIT_CHOICES = ("auto", "encoder", "mean")
INIT_HELP = ("Where inversion starts: the encoder trained for the network, then a short refinement (auto: when one "
             "is found; encoder: required), or w_avg and the full optimisation (mean).")
ENCODER_HELP = ("An encoder file (insetgan train-encoder) for one of the job's networks, found by its hash: the "
                "photo inverted into that network starts from it.")


def encoder_name(generator_path: str | os.PathLike) -> Path:
    """The encoder file named for the generator in ``generator_path``: ``<stem>-encoder.safetensors`` beside it."""
    path = Path(generator_path)
    return path.with_name(path.stem + ENCODER_SUFFIX)


def _candidates(generator_path: str | os.PathLike | None, folders: tuple[Path, ...]) -> list[Path]:
    """Encoder files to look at, the one named for the generator first, each once."""
    out: list[Path] = []
    if generator_path is not None:
        out.append(encoder_name(generator_path))
    for folder in folders:
        if folder.is_dir():
            out += sorted(folder.glob("*" + ENCODER_SUFFIX))[:MAX_CANDIDATES]
    unique: dict[Path, Path] = {}
    for p in out:
        if p.is_file():
            unique.setdefault(p.resolve(), p)
    return list(unique.values())


def find_encoder(G: AnyGenerator, generator_path: str | os.PathLike | None = None,
                 folders: tuple[Path, ...] | None = None) -> Path | None:
    """The encoder file trained for ``G`` (matched by hash), or None.

    ``folders`` default to the built-in models folder (:func:`insetgan.models.models_dir`).
    Unreadable candidates are skipped with a warning.
    """
    folders = (models_dir(),) if folders is None else folders
    want = None
    for path in _candidates(generator_path, folders):
        try:
            meta = read_metadata(path)
        except InsetganError as exc:
            log.warning("skipping encoder candidate: %s", exc)
            continue
        if meta.get("format") != ENCODER_FORMAT:
            continue
        want = want or network_sha256(G)
        if meta.get("generator_sha256") == want:
            return path
    return None


def encoder_for(G: AnyGenerator, path: str | os.PathLike | None = None,
                generator_path: str | os.PathLike | None = None,
                device: str | torch.device = "cpu") -> tuple[Encoder, Path] | None:
    """The encoder for ``G``: the file ``path`` (which must match), else :func:`find_encoder`'s, else None."""
    found = Path(path) if path is not None else find_encoder(G, generator_path)
    if found is None:
        return None
    encoder, _ = load_encoder(found, G, device)
    return encoder, found


def encode(encoder: Encoder, G: AnyGenerator, image: torch.Tensor) -> torch.Tensor:
    """W+ [N, num_ws, w_dim] of images [N, 3, H, W] in [-1, 1] at ``G``'s resolution, in one forward pass."""
    want = tuple(G.img_shape)
    if image.ndim != 4 or tuple(image.shape[1:]) != want:
        raise InsetganError(f"the encoder takes images [N, {want[0]}, {want[1]}, {want[2]}] for this generator, "
                            f"got {list(image.shape)}")
    if (encoder.cfg.num_ws, encoder.cfg.w_dim) != (G.num_ws, G.w_dim):
        raise InsetganError(f"the encoder predicts W+ {encoder.cfg.num_ws}x{encoder.cfg.w_dim}, the generator "
                            f"takes {G.num_ws}x{G.w_dim}")
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            return encoder(image.to(encoder.w_avg.device, torch.float32)).to(torch.float32)
    finally:
        encoder.train(was_training)


@dataclass(frozen=True)
class StartConfig:
    """The user's choice of an inversion's start: ``init`` (one of :data:`INIT_CHOICES`) and an encoder file."""

    init: str = "auto"
    encoder: str | None = None

    def __post_init__(self) -> None:
        if self.init not in INIT_CHOICES:
            raise InsetganError(f"init must be one of {', '.join(INIT_CHOICES)}, got {self.init!r}")
        if self.encoder is not None and self.init == "mean":
            raise InsetganError("an encoder file and init 'mean' exclude each other")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"init": self.init, "encoder": self.encoder}


@dataclass
class Start:
    """A resolved start: the encoder (None: start at ``w_avg``), its file and the file's SHA-256."""

    encoder: Encoder | None = None
    path: Path | None = None
    sha256: str | None = None

    def describe(self) -> dict[str, Any]:
        """The report entry: ``{"init": "encoder", "encoder": path, "encoder_sha256": …}`` or ``{"init": "mean"}``."""
        if self.encoder is None:
            return {"init": "mean"}
        return {"init": "encoder", "encoder": str(self.path), "encoder_sha256": self.sha256}


def choose_start(cfg: StartConfig, G: AnyGenerator, generator_path: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu") -> Start:
    """The start ``cfg`` asks for ``G``: its encoder file, the one found for it (``auto``, ``encoder``), or w_avg.

    With ``init='auto'`` an ``encoder`` file trained for another generator is passed over (it is
    for another network of the job: compose inverts a selfie and an outfit photo) and the search
    goes on; with ``init='encoder'`` it is a one-line error, as is finding no encoder at all.
    """
    if cfg.init == "mean":
        return Start()
    if cfg.encoder is not None:
        _, meta = read_encoder_header(cfg.encoder)  # the tensors are read once, for the network they belong to
        if cfg.init == "encoder" or meta["generator_sha256"] == network_sha256(G):
            encoder, _ = load_encoder(cfg.encoder, G, device)  # the checks and their messages
            return Start(encoder, Path(cfg.encoder), iio.sha256(cfg.encoder))
    found = encoder_for(G, None, generator_path, device)
    if found is None:
        if cfg.init == "encoder":
            raise InsetganError("no encoder was trained for this network: give one with --encoder, train one with "
                                "insetgan train-encoder, or use --init mean")
        return Start()
    encoder, path = found
    return Start(encoder, path, iio.sha256(path))
