"""The composition jobs: compose, sample-bodies, refine-face.

Each command's options are generated from its request (:mod:`insetgan.jobs.requests`); the
command builds the request from what the user gave, runs the job and writes its files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from insetgan.cli.common import (click_options, given_options, handle_errors, job_progress_factory, log, outdir_option,
                                 progress_option, write_files)
from insetgan.jobs.compose import run_compose
from insetgan.jobs.options import request_from
from insetgan.jobs.refine import run_refine
from insetgan.jobs.report import RequestOutput, summary
from insetgan.jobs.requests import ComposeRequest, RefineRequest, SampleBodiesRequest


def _write_job(res: RequestOutput, outdir: str) -> None:
    """Write a job's files (and new inversion cache entries into OUTDIR/cache), all at the end."""
    files = {f"cache/{name}": data for name, data in res.cache_files.items()}
    files.update(res.job.files)
    path = write_files(outdir, files)
    rep = res.job.report
    log.info("wrote %d files to %s (%d steps in %.1f s)", len(res.job.files), path, rep["steps"],
             rep["timings_s"]["optimize"])
    log.info("%s", summary(rep))


@click.command()
@click_options(ComposeRequest)
@outdir_option
@progress_option
@handle_errors
def compose(outdir: str, progress_mode: str, **options: Any) -> None:
    """Compose one full body: canvas and insets optimised jointly so the seams vanish.

    With --face, your selfie is aligned, inverted into the face generator (cached in
    OUTDIR/cache) and kept yours by L_face and an identity loss; with --outfit, the body
    starts from your full-body photo.

    \b
    Examples:
      insetgan compose --face selfie.jpg --outdir out/me          # the built-in models
      insetgan compose --body body.pkl --face-net ffhq.pkl --face selfie.jpg --outdir out/me
      insetgan compose --body stylegan_human_v2_1024.pkl --face-net ffhq.pkl \\
          --body-seed 3 --face-seed 7 --outdir out/compose
    """
    req = request_from(ComposeRequest, given_options(options))
    _write_job(run_compose(req, job_progress_factory(progress_mode), Path(outdir) / "cache"), outdir)


@click.command("sample-bodies")
@click_options(SampleBodiesRequest)
@outdir_option
@progress_option
@handle_errors
def sample_bodies(outdir: str, progress_mode: str, **options: Any) -> None:
    """Many bodies for one face, optimised together in one batch, each kept close to that face.

    \b
    Examples:
      insetgan sample-bodies --face selfie.jpg --num 8 --outdir out/bodies   # the built-in models
      insetgan sample-bodies --body body.pkl --face-net ffhq.pkl --face-seed 7 --outdir out/bodies
    """
    req = request_from(SampleBodiesRequest, given_options(options))
    _write_job(run_compose(req, job_progress_factory(progress_mode), Path(outdir) / "cache"), outdir)


@click.command("refine-face")
@click_options(RefineRequest)
@outdir_option
@progress_option
@handle_errors
def refine_face(outdir: str, progress_mode: str, **options: Any) -> None:
    """Refine the face of an existing image (a photo or a generated body); no body generator needed.

    Only the face latent is optimised (coarse + border losses against the image); the result
    is blended back and pixels outside the face box are left untouched. With --reference the
    face is replaced by yours (inverted from your selfie, kept by L_face and the identity loss).

    \b
    Examples:
      insetgan refine-face body.png --face-net ffhq.pkl --face-box 200,40,96,96 --outdir out/refined
      insetgan refine-face photo.jpg --face-net ffhq.pkl --reference selfie.jpg --outdir out/me
    """
    req = request_from(RefineRequest, given_options(options))
    _write_job(run_refine(req, job_progress_factory(progress_mode), Path(outdir) / "cache"), outdir)


COMMANDS = (compose, sample_bodies, refine_face)
