"""Commands that build models: prepare (training sets from photos) and train."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import click

from insetgan import outputs
from insetgan.cli.common import (click_options, given_options, handle_errors, job_progress_factory, log, progress_bar,
                                 progress_option, range_type)
from insetgan.data.prepare import (LIMIT, MAX_SIDE, BodiesConfig, FacesConfig, ShoesConfig, prepare_bodies,
                                   prepare_faces, prepare_shoes)
from insetgan.errors import InsetganError
from insetgan.jobs.options import request_from
from insetgan.jobs.network_requests import TrainRequest
from insetgan.jobs.train import run_train
from insetgan.limits import field_range

_SIDE = click.IntRange(8, MAX_SIDE)


@click.command()
@click_options(TrainRequest)
@click.option("--outdir", required=True, type=click.Path(file_okay=False),
              help="Run folder (states, samples, networks).")
@progress_option
@handle_errors
def train(outdir: str, progress_mode: str, **options: Any) -> None:
    """Train a StyleGAN2 generator (canvas or inset) on a prepared dataset.

    Runs single-process, or data-parallel under torchrun (NCCL on GPUs, gloo on CPU) with the
    same global --batch. Writes resumable states, sample grids and the G_ema in our safetensors
    format (with the dataset's region priors) every --snapshot-kimg.

    \b
    Examples:
      insetgan train --data data/faces64 --outdir runs/face64 --kimg 500 --batch 32
      torchrun --nproc_per_node=2 -m insetgan train --data data/bodies --outdir runs/body --batch 32
      insetgan train --data data/faces64 --outdir runs/face64 --resume runs/face64/state-000100.pt
      insetgan train --data data/faces64 --outdir runs/face64b --init default-face --d-warmup-kimg 12 --kimg 300
    """
    req = request_from(TrainRequest, given_options(options))
    report = run_train(req, outdir, job_progress_factory(progress_mode, keys=None, unit="img"))
    if report is not None:
        log.info("trained to %.1f kimg in %.0f s; networks in %s", report["kimg"], report["timings_s"]["train"],
                 outdir)


@click.group()
def prepare() -> None:
    """Build training sets from photos: full-body crops, aligned faces, shoe crops (PNGs + dataset.json)."""


def _dataset_file(name: str) -> bool:
    """A file that a prepared dataset replaces: its numbered images (``00000.png``, …) and ``images.zip``."""
    stem, _, suffix = name.rpartition(".")
    return name == "images.zip" or (suffix == "png" and stem.isdigit() and len(stem) >= 5)


def _run_prepare(desc: str, progress_mode: str, fn: Callable[..., dict[str, Any]], *args: Any, out: str,
                 sources: Sequence[str | None], **kwargs: Any) -> None:
    """Run a prepare function into a staging folder; the dataset appears in ``out`` whole, or not at all."""
    if Path(out).is_dir() and any(s is not None and Path(out).resolve() == Path(s).resolve() for s in sources):
        raise InsetganError(f"--out {out} is a source folder: choose another output folder")
    bar = progress_bar(desc, progress_mode, unit="photo")
    try:
        with outputs.staged_set(out, last="dataset.json", stale=_dataset_file) as staging:
            meta = fn(*args, out=staging, progress=bar, **kwargs)
    finally:
        bar.close()
    c = meta["counts"]
    skipped = ", ".join(f"{k} {v}" for k, v in c["skipped"].items()) or "none"
    log.info("%s: wrote %d images from %d sources to %s (skipped: %s)", desc, c["written"], c["sources"], out, skipped)
    if meta.get("priors"):
        log.info("region priors (relative x, y, w, h): face %s, shoes %s", meta["priors"]["face"],
                 meta["priors"]["shoes"])


def _prepare_options(fn: Callable) -> Callable:
    for opt in (progress_option,
                click.option("--zip", "zip_output", is_flag=True, help="Store the images in OUT/images.zip."),
                click.option("--limit", type=range_type(LIMIT), default=None,
                             help="Use only the first N sources (sorted)."),
                click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")):
        fn = opt(fn)
    return fn


@prepare.command("bodies")
@click.argument("src", metavar="SRC_PHOTOS")
@click.option("--labels", default=None, metavar="DIR", help="Label maps (same stem .png, 0 = background).")
@click.option("--height", type=_SIDE, default=256, show_default=True, help="Canvas height (a power of two).")
@click.option("--width", type=_SIDE, default=128, show_default=True, help="Canvas width (--height or half of it).")
@_prepare_options
@handle_errors
def prepare_bodies_cmd(src: str, labels: str | None, height: int, width: int, out: str, limit: int | None,
                       zip_output: bool, progress_mode: str) -> None:
    """Person-centred full-body crops with face/shoe boxes and median region priors.

    \b
    Example:
      insetgan prepare bodies ccp/photos --labels ccp/labels --out data/bodies --zip
    """
    cfg = BodiesConfig(height=height, width=width, limit=limit)
    _run_prepare("bodies", progress_mode, prepare_bodies, src, out=out, sources=[src, labels], cfg=cfg, labels=labels,
                 zip_output=zip_output)


@prepare.command("faces")
@click.argument("srcs", nargs=-1, required=True, metavar="SRC...")
@click.option("--size", type=_SIDE, default=64, show_default=True, help="Output side (px, a power of two).")
@click.option("--min-face", type=range_type(field_range(FacesConfig, "min_face")), default=24.0, show_default=True,
              help="Smallest FFHQ quad side (source px).")
@_prepare_options
@handle_errors
def prepare_faces_cmd(srcs: tuple[str, ...], size: int, min_face: float, out: str, limit: int | None,
                      zip_output: bool, progress_mode: str) -> None:
    """FFHQ-aligned face crops from face or full-body photos (small photos upscaled for detection).

    \b
    Example:
      insetgan prepare faces aaf/faces ccp/photos --size 64 --out data/faces
    """
    cfg = FacesConfig(size=size, min_face=min_face, limit=limit)
    _run_prepare("faces", progress_mode, prepare_faces, list(srcs), out=out, sources=srcs, cfg=cfg,
                 zip_output=zip_output)


@prepare.command("shoes")
@click.argument("src", metavar="SRC_PHOTOS")
@click.option("--labels", required=True, metavar="DIR", help="Label maps (same stem .png) with footwear labels.")
@click.option("--size", type=_SIDE, default=32, show_default=True, help="Output side (px, a power of two).")
@click.option("--pad", type=range_type(field_range(ShoesConfig, "pad")), default=0.25, show_default=True,
              help="Margin on each edge, fraction of the side.")
@click.option("--min-px", type=range_type(field_range(ShoesConfig, "min_px")), default=6, show_default=True,
              help="Ignore components smaller than this (px).")
@_prepare_options
@handle_errors
def prepare_shoes_cmd(src: str, labels: str, size: int, pad: float, min_px: int, out: str, limit: int | None,
                      zip_output: bool, progress_mode: str) -> None:
    """Square crops around each shoe (left and right) of the footwear labels.

    \b
    Example:
      insetgan prepare shoes ccp/photos --labels ccp/labels --size 32 --out data/shoes
    """
    cfg = ShoesConfig(size=size, pad=pad, min_px=min_px, limit=limit)
    _run_prepare("shoes", progress_mode, prepare_shoes, src, labels, out=out, sources=[src, labels], cfg=cfg,
                 zip_output=zip_output)


COMMANDS = (prepare, train)
