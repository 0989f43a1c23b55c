"""The train-encoder command: an image → W+ encoder for a generator (one forward pass, not an optimisation)."""
from __future__ import annotations

from typing import Any

import click

from insetgan.cli.common import (click_options, given_options, handle_errors, job_progress_factory, log,
                                 outdir_option, progress_option)
from insetgan.jobs.options import request_from
from insetgan.jobs.network_requests import TrainEncoderRequest
from insetgan.jobs.train_encoder import run_train_encoder


@click.command("train-encoder")
@click_options(TrainEncoderRequest)
@outdir_option
@progress_option
@handle_errors
def train_encoder(outdir: str, progress_mode: str, **options: Any) -> None:
    """Train an encoder from images to W+ of a generator (EfficientNet-Lite0 backbone, pSp/e4e heads).

    Trains on the generator's own samples (whose W+ is known) and on the dataset's photos. Writes
    resumable states, encoder files (with the generator's SHA-256), input | reconstruction grids
    and metrics.jsonl every --snapshot-kimg.

    \b
    Examples:
      insetgan train-encoder --network default-face --data data/faces64 --outdir runs/enc-face --kimg 200
      insetgan train-encoder --network default-face --data data/faces64 --outdir runs/enc-face --resume
    """
    req = request_from(TrainEncoderRequest, given_options(options))
    report = run_train_encoder(req, outdir, job_progress_factory(progress_mode, keys=None, unit="img"))
    log.info("trained the encoder to %.1f kimg; files in %s", report["kimg"], outdir)


COMMANDS = [train_encoder]
