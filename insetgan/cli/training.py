"""Commands that build models: prepare (training sets from photos) and train."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from insetgan import io as iio
from insetgan import outputs
from insetgan.cli.common import (SEED, device_option, finite, handle_errors, log, progress_bar, progress_option,
                                 range_type, torch_device)
from insetgan.data.prepare import LIMIT, MAX_SIDE, FacesConfig, ShoesConfig
from insetgan.limits import field_range
from insetgan.method.losses import WEIGHT_RANGE
from insetgan.io import versions
from insetgan.errors import InsetganError
from insetgan.networks.discriminator import ARCHITECTURES
from insetgan.torch_utils.ops.dispatch import device_ops
from insetgan.train.config import TrainConfig

_SIDE = click.IntRange(8, MAX_SIDE)
MAX_KIMG = 100_000.0  # 10^8 images (StyleGAN2's FFHQ run showed 25,000 kimg)
_KIMG = finite(0.001, MAX_KIMG)
_NON_NEGATIVE_KIMG = finite(0, MAX_KIMG)
_LR = finite(0, 1.0, min_open=True)
_BATCH = click.IntRange(1, 4096)
_CHANNEL_BASE = click.IntRange(1, 1 << 17)
_CHANNEL_MAX = click.IntRange(1, 4096)


@click.command()
@click.option("--data", required=True, metavar="DIR|ZIP", help="Prepared dataset (insetgan prepare): images + dataset.json.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Run folder (states, samples, networks).")
@click.option("--kimg", type=_KIMG, default=TrainConfig.kimg, show_default=True,
              help="Train until this many thousand real images were shown.")
@click.option("--batch", type=_BATCH, default=TrainConfig.batch, show_default=True, help="Global batch size.")
@click.option("--batch-gpu", type=_BATCH, default=None, help="Samples per forward pass (gradient accumulation).")
@click.option("--gamma", type=finite(0, 10_000), default=TrainConfig.gamma, show_default=True, help="R1 weight.")
@click.option("--ema-kimg", type=_NON_NEGATIVE_KIMG, default=TrainConfig.ema_kimg, show_default=True)
@click.option("--lr", type=_LR, default=TrainConfig.lr, show_default=True)
@click.option("--lr-d", type=_LR, default=None, help="Discriminator lr (two time-scale updates)  [default: --lr]")
@click.option("--lr-drop-kimg", type=_NON_NEGATIVE_KIMG, default=None, metavar="K",
              help="Halve both lrs from K kimg on (a run that has flattened out continues finer)  [default: never]")
@click.option("--channel-base", type=_CHANNEL_BASE, default=TrainConfig.channel_base, show_default=True)
@click.option("--channel-max", type=_CHANNEL_MAX, default=TrainConfig.channel_max, show_default=True)
@click.option("--d-channel-base", type=_CHANNEL_BASE, default=None,
              help="Discriminator channel base (a wider teacher for a small generator)  [default: --channel-base]")
@click.option("--d-channel-max", type=_CHANNEL_MAX, default=None,
              help="Discriminator channel maximum  [default: --channel-max]")
@click.option("--d-arch", type=click.Choice(ARCHITECTURES), default=TrainConfig.d_arch, show_default=True,
              help="Discriminator: StyleGAN2's residual one, plain strided convolutions (learns sooner and "
                   "runs faster at small widths on a CPU; use --lr-d 0.001), or projected (frozen ImageNet "
                   "features, hinge loss, no R1; use --aug color,translation,cutout).")
@click.option("--d-feature-res", type=click.IntRange(64, 1024), default=None, metavar="PIXELS",
              help="Projected discriminator: the feature network's input size, long side (a power of two; "
                   "smaller is faster)  [default: the image's]")
@click.option("--d-head-width", type=finite(0.0625, 4), default=TrainConfig.d_head_width, show_default=True,
              help="Projected discriminator: width multiplier of its projections and per-scale discriminators.")
@click.option("--face-d", type=range_type(WEIGHT_RANGE), default=TrainConfig.face_d, show_default=True,
              metavar="WEIGHT",
              help="Body datasets: a second discriminator (same kind) that sees only a square around the face "
                   "prior; WEIGHT scales its loss in G's (0: off).")
@click.option("--face-d-arch", type=click.Choice(ARCHITECTURES), default=None,
              help="The face discriminator's architecture  [default: --d-arch]")
@click.option("--proj-d", type=range_type(WEIGHT_RANGE), default=TrainConfig.proj_d, show_default=True,
              metavar="WEIGHT",
              help="A projected discriminator beside the resnet/conv one (hinge loss, no R1, --d-feature-res, "
                   "--d-head-width); WEIGHT scales its loss in G's (0: off).")
@click.option("--mbstd-channels", type=click.IntRange(1, 64), default=TrainConfig.mbstd_channels, show_default=True,
              help="Discriminator minibatch-std features (channel groups, each its own statistic).")
@click.option("--map-layers", type=click.IntRange(1, 32), default=TrainConfig.map_layers, show_default=True)
@click.option("--z-dim", type=click.IntRange(1, 4096), default=TrainConfig.z_dim, show_default=True,
              help="z and w size.")
@click.option("--aug", default=TrainConfig.aug, show_default=True, help="DiffAugment policies ('' for none).")
@click.option("--xflip/--no-xflip", default=True, show_default=True, help="Mirror real images at random.")
@click.option("--noise/--no-noise", default=True, show_default=True,
              help="Per-pixel noise inputs (--no-noise: strengths stay 0, details come from the latents only).")
@click.option("--snapshot-kimg", type=_KIMG, default=TrainConfig.snapshot_kimg, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--resume", default=None, metavar="STATE.pt", help="Continue a run from a saved training state.")
@click.option("--init", default=None, metavar="NETWORK",
              help="Warm start: G and G_ema from a generator file (a snapshot, a shipped model, a .pkl/.pt); "
                   "a new discriminator. Our snapshots continue at their kimg.")
@click.option("--d-warmup-kimg", type=_NON_NEGATIVE_KIMG, default=TrainConfig.d_warmup_kimg, show_default=True,
              help="With --init: train only the new discriminator for this many kimg first.")
@device_option
@progress_option
@handle_errors
def train(data: str, outdir: str, kimg: float, batch: int, batch_gpu: int | None, gamma: float, ema_kimg: float,
          lr: float, lr_d: float | None, lr_drop_kimg: float | None, channel_base: int, channel_max: int,
          d_channel_base: int | None, d_channel_max: int | None, d_arch: str, d_feature_res: int | None,
          d_head_width: float, face_d: float, face_d_arch: str | None, proj_d: float,
          mbstd_channels: int, map_layers: int,
          z_dim: int, aug: str, xflip: bool, noise: bool, snapshot_kimg: float, seed: int, resume: str | None,
          init: str | None, d_warmup_kimg: float, device: str, progress_mode: str) -> None:
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
    from insetgan.models import resolve_network
    from insetgan.train.distributed import torchrun_world
    from insetgan.train.data import load_dataset
    from insetgan.train.loop import train as run_training

    cfg = TrainConfig(kimg=kimg, batch=batch, batch_gpu=batch_gpu, gamma=gamma, ema_kimg=ema_kimg, lr=lr, lr_d=lr_d,
                      lr_drop_kimg=lr_drop_kimg,
                      channel_base=channel_base, channel_max=channel_max, d_channel_base=d_channel_base,
                      d_channel_max=d_channel_max, d_arch=d_arch, d_feature_res=d_feature_res,
                      d_head_width=d_head_width, face_d=face_d, face_d_arch=face_d_arch, proj_d=proj_d,
                      mbstd_channels=mbstd_channels, map_layers=map_layers,
                      z_dim=z_dim, w_dim=z_dim, aug=aug, xflip=xflip, noise=noise,
                      snapshot_kimg=snapshot_kimg, seed=seed, d_warmup_kimg=d_warmup_kimg)
    if resume is not None and not Path(resume).is_file():
        raise InsetganError(f"--resume: state not found: {resume}")
    if init is not None:
        if resume is not None:
            raise InsetganError("--init and --resume exclude each other (a state already holds its networks)")
        init = resolve_network(init)
        if not Path(init).is_file():
            raise InsetganError(f"--init: network not found: {init}")
    elif d_warmup_kimg > 0 and resume is None:
        raise InsetganError("--d-warmup-kimg needs --init (a new run has nothing to warm the discriminator up for)")
    with torchrun_world(torch_device(device), batch) as world:
        dataset = load_dataset(data)
        # Rank 0 owns the run folder; it is removed again if the run fails before writing anything
        # (a refused --resume or --init leaves no empty folder).
        run_folder = outputs.made_folder(outdir) if world.rank == 0 else contextlib.nullcontext(Path(outdir))
        with run_folder as out:
            t0 = time.perf_counter()
            bar = progress_bar("train", progress_mode, unit="img") if world.rank == 0 else None
            try:
                state = run_training(dataset, cfg, out, world.device, resume, bar, init=init)
            finally:
                if bar is not None:
                    bar.close()
        if world.rank == 0:
            seconds = time.perf_counter() - t0
            last = {k: round(v, 5) for k, v in (bar.last or {}).items() if k not in ("kimg", "img/s")} \
                if bar and bar.last else None
            report = {"command": "train", "data": str(data), "dataset": {k: v for k, v in dataset.meta.items()
                                                                       if k not in ("records",)},
                      "images": list(dataset.images.shape), "config": cfg.to_dict(), "processes": world.size,
                      "device": str(world.device), "resumed_from": resume, "initialised_from": init, "steps": state.step,
                      "kimg": state.nimg / 1000, "seconds": round(seconds, 2), "last_losses": last,
                      "versions": versions(), "ops": device_ops(world.device)}
            iio.atomic_write_bytes(out / "report.json", iio.json_bytes(report))
            log.info("trained to %.1f kimg in %.0f s; networks in %s", state.nimg / 1000, seconds, out)


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
    from insetgan.data import BodiesConfig, prepare_bodies
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
    from insetgan.data import FacesConfig, prepare_faces
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
    from insetgan.data import ShoesConfig, prepare_shoes
    cfg = ShoesConfig(size=size, pad=pad, min_px=min_px, limit=limit)
    _run_prepare("shoes", progress_mode, prepare_shoes, src, labels, out=out, sources=[src, labels], cfg=cfg,
                 zip_output=zip_output)


COMMANDS = (prepare, train)
