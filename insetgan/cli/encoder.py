"""The train-encoder command: an image → W+ encoder for a generator (one forward pass, not an optimisation)."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

import click

from insetgan import io as iio
from insetgan import outputs
from insetgan.cli.common import device_option, handle_errors, log, progress_bar, progress_option, range_type
from insetgan.devices import torch_device
from insetgan.errors import InsetganError
from insetgan.inversion.encoder_run import train_encoder as run_training
from insetgan.inversion.encoder_training import EncoderTrainConfig
from insetgan.limits import field_range
from insetgan.models import resolve_network
from insetgan.networks.checkpoints import load_checkpoint
from insetgan.networks.generator import Generator
from insetgan.train.data import ImageSet, load_dataset

_STATE = re.compile(r"state-(\d{6,})\.pt")
# Options that set EncoderTrainConfig fields of the same name (their ranges come from the config).
_NUMBERS = (("kimg", "Train until this many thousand images were shown."),
            ("batch_fake", "Generator samples per step (their W+ is known: latent loss)."),
            ("batch_real", "Dataset photos per step."),
            ("lr", "Adam learning rate."),
            ("psi_min", "Samples: smallest truncation ψ."),
            ("psi_max", "Samples: largest truncation ψ."),
            ("style_mixing", "Samples: probability of a style-mixed W+."),
            ("latent_weight", "Weight of the samples' latent (W+) error."),
            ("pixel_weight", "Weight of the pixel (L2) error."),
            ("perceptual_weight", "Weight of the EfficientNet-Lite0 feature distance."),
            ("perceptual_size", "Smallest input side of the feature distance (pixels)."),
            ("identity_weight", "Face datasets: weight of the MobileFaceNet identity loss."),
            ("delta_weight", "Weight of e4e's L2 penalty on the per-row deltas (keeps W+ near W)."),
            ("unlock_kimg", "Progressive training: one more W+ row gets its own delta every K kimg (0: all at once)."),
            ("snapshot_kimg", "Snapshot (state, encoder, grid, metrics) every K kimg."),
            ("holdout", "Dataset images held out for the snapshots' numbers (every 97th from the first)."),
            ("grid", "Input | reconstruction pairs per grid row."),
            ("width", "Channels of the feature pyramid and heads."),
            ("input_scale", "Encoder input size as a multiple of the generator's image (then a multiple of 32)."),
            ("seed", "Seed of the heads and of every step's random draws."))


def _config_options(fn: Callable) -> Callable:
    """One option per number of :class:`EncoderTrainConfig`, typed with the config's own range."""
    for name, text in reversed(_NUMBERS):
        fn = click.option(f"--{name.replace('_', '-')}", name, type=range_type(field_range(EncoderTrainConfig, name)),
                          default=getattr(EncoderTrainConfig, name), show_default=True, help=text)(fn)
    return fn


def latest_state(outdir: Path) -> Path:
    """The newest ``state-KKKKKK.pt`` of a run folder; a one-line error when there is none."""
    states = sorted((int(m.group(1)), p) for p in outdir.glob("state-*.pt") if (m := _STATE.fullmatch(p.name)))
    if not states:
        raise InsetganError(f"--resume: no state-*.pt in {outdir} to continue from")
    return states[-1][1]


def _load_inputs(network: str, data: str, device: Any) -> tuple[Generator, ImageSet]:
    """The generator (a StyleGAN2 one) and the prepared dataset, with one-line errors."""
    path = resolve_network(network)
    if not Path(path).is_file():
        raise InsetganError(f"--network: checkpoint not found (no such file): {path}")
    G = load_checkpoint(path, device).generator
    if not isinstance(G, Generator):
        raise InsetganError(f"--network: {path} holds a {G.cfg.family} generator; the encoder needs a StyleGAN2 one")
    if not Path(data).exists():
        raise InsetganError(f"--data: no such dataset: {data}")
    return G, load_dataset(data)


@click.command("train-encoder")
@click.option("--network", required=True, metavar="G", help="The generator (a file or default-face, default-body).")
@click.option("--data", required=True, metavar="DIR|ZIP", help="Prepared dataset at the generator's size.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Run folder (states, encoders, grids).")
@click.option("--resume", is_flag=True, help="Continue from the newest state-*.pt in --outdir.")
@click.option("--xflip/--no-xflip", default=True, show_default=True, help="Mirror dataset photos at random.")
@_config_options
@device_option
@progress_option
@handle_errors
def train_encoder(network: str, data: str, outdir: str, resume: bool, xflip: bool, device: str, progress_mode: str,
                  **numbers: Any) -> None:
    """Train an encoder from images to W+ of a generator (EfficientNet-Lite0 backbone, pSp/e4e heads).

    Trains on the generator's own samples (whose W+ is known) and on the dataset's photos. Writes
    resumable states, encoder files (with the generator's SHA-256), input | reconstruction grids
    and metrics.jsonl every --snapshot-kimg.

    \b
    Examples:
      insetgan train-encoder --network default-face --data data/faces64 --outdir runs/enc-face --kimg 200
      insetgan train-encoder --network default-face --data data/faces64 --outdir runs/enc-face --resume
    """
    cfg = EncoderTrainConfig(xflip=xflip, **numbers)
    state_path = latest_state(Path(outdir)) if resume else None
    if not resume and any(Path(outdir).glob("state-*.pt")):
        raise InsetganError(f"--outdir {outdir} already holds a run (state-*.pt): add --resume or choose another folder")
    dev = torch_device(device)
    G, dataset = _load_inputs(network, data, dev)
    with outputs.made_folder(outdir) as out:
        t0 = time.perf_counter()
        bar = progress_bar("train-encoder", progress_mode, unit="img")
        try:
            state = run_training(G, dataset, cfg, out, dev, str(state_path) if state_path else None, bar)
        finally:
            bar.close()
        report = {"command": "train-encoder", "network": network, "data": str(data), "config": cfg.to_dict(),
                  "encoder": state.encoder.cfg.to_dict(), "generator_sha256": state.generator_sha256,
                  "resumed_from": str(state_path) if state_path else None, "steps": state.step,
                  "kimg": state.nimg / 1000, "seconds": round(time.perf_counter() - t0, 2),
                  "versions": iio.versions()}
        iio.atomic_write_bytes(out / "report.json", iio.json_bytes(report))
    log.info("trained the encoder to %.1f kimg; files in %s", state.nimg / 1000, out)


COMMANDS = [train_encoder]
