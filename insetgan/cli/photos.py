"""Commands on photos: align (FFHQ or 5-point crops) and invert (GAN inversion, PTI)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from insetgan import io as iio
from insetgan.cli.common import (click_options, given_options, handle_errors, job_progress_factory, log, outdir_option,
                                 progress_option, write_files)
from insetgan.errors import InsetganError
from insetgan.images import open_rgb
from insetgan.inversion import align as al
from insetgan.jobs.invert import run_invert
from insetgan.jobs.options import request_from
from insetgan.jobs.requests import InvertRequest


@click.command()
@click.argument("image", metavar="IMAGE")
@click.option("--size", type=click.IntRange(8, 4096), default=1024, show_default=True, help="Output side in pixels.")
@click.option("--five-point", is_flag=True, help="5-point similarity crop for identity networks (ArcFace layout).")
@click.option("--out", "out_path", required=True, metavar="FILE.png", help="Output image (PNG).")
@handle_errors
def align(image: str, size: int, five_point: bool, out_path: str) -> None:
    """Align the largest face of a photo: the FFHQ crop, or the 5-point identity crop.

    \b
    Example:
      insetgan align selfie.jpg --size 1024 --out aligned.png
      insetgan align selfie.jpg --five-point --size 112 --out id.png
    """
    out = Path(out_path)
    if out.is_dir() or not out.parent.exists():
        raise InsetganError(f"--out {out_path}: not a file path in an existing folder")
    img = open_rgb(image)
    face = al.LandmarkDetector().largest(img, image)
    aligned = al.align_five(img, al.five_points(face.landmarks), size) if five_point else \
        al.align_ffhq(img, face.landmarks, size)
    iio.atomic_write_bytes(out, iio.png_bytes(np.asarray(aligned)))
    log.info("wrote %s (%dx%d, %s)", out, size, size, "5-point" if five_point else "FFHQ")


@click.command()
@click_options(InvertRequest)
@outdir_option
@progress_option
@handle_errors
def invert(outdir: str, progress_mode: str, **options: Any) -> None:
    """Project photos into a generator (GAN inversion): latents, reconstructions, metrics.

    Several images are inverted together as one batch. Writes latents.npz (ws [B, L, D] and the
    noise maps; usable as --face-latent/--body-latent), target.png, reconstruction.png,
    compare.png (target | start | result), report.json (PSNR, SSIM, perceptual distance, dlib
    identity distance) and, with --mode pti, tuned.safetensors (the tuned generator).

    \b
    Examples:
      insetgan invert selfie.jpg --network ffhq.pkl --outdir out/me
      insetgan invert a.jpg b.jpg --network ffhq.pkl --mode pti --steps 500 --outdir out/pti
      insetgan invert selfie.jpg --network default-face --outdir out/me
    """
    req = request_from(InvertRequest, given_options(options))
    res = run_invert(req, job_progress_factory(progress_mode, keys=None))
    out = write_files(outdir, res.files)
    m = res.report["metrics"]
    log.info("inverted %d image(s): PSNR %s dB (start %s); wrote %s", len(req.images),
             ", ".join(f"{v:.2f}" for v in (m.get("tuned") or m["projected"])["psnr"]),
             ", ".join(f"{v:.2f}" for v in m["start"]["psnr"]), out)


COMMANDS = (align, invert)
