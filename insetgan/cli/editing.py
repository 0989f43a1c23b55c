"""Commands on latent directions: ``directions sefa|samples|boundary`` and the strip job ``edit``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from insetgan import io as iio
from insetgan.cli.common import (click_options, device_option, given_options, handle_errors, log, outdir_option,
                                 range_type, write_files)
from insetgan.devices import torch_device
from insetgan.editing.boundary import KINDS, BoundaryConfig, fit_boundary
from insetgan.editing.samples import MAX_SAMPLES, read_labels, read_latents, samples_files
from insetgan.editing.sefa import sefa
from insetgan.editing.spec import parse_rows
from insetgan.errors import InsetganError
from insetgan.jobs.edit import run_edit
from insetgan.jobs.options import request_from
from insetgan.jobs.network_requests import EditRequest
from insetgan.jobs.requests import NETWORK_HELP
from insetgan.limits import MAX_SEED, field_range
from insetgan.models import load_network
from insetgan.sampling import PSI_RANGE, SampleConfig


def _network(network: str, device: str):  # noqa: ANN202 - (generator, report entry)
    ckpt, info = load_network(network, torch_device(device), "--network")
    G = ckpt.generator.eval().requires_grad_(False)
    return G, {"network": network, **info, "architecture": G.cfg.family, "num_ws": G.num_ws, "w_dim": G.w_dim}


@click.group()
def directions() -> None:
    """Compute latent directions: SeFa, samples to label, InterFaceGAN boundaries."""


@directions.command("sefa")
@click.option("--network", required=True, metavar="CKPT", help=NETWORK_HELP)
@click.option("--rows", default=None, metavar="A-B", help="W+ rows whose style layers to factorise (default: all).")
@click.option("--num", type=click.IntRange(1, 4096), default=10, show_default=True, help="Directions to keep.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npz (sefa0, sefa1, ...).")
@device_option
@handle_errors
def sefa_command(network: str, rows: str | None, num: int, out: str, device: str) -> None:
    """Closed-form factorisation (SeFa) of the style layers' affine weights.

    \b
    Example:
      insetgan directions sefa --network default-body --rows 4-7 --num 8 --out body_sefa.npz
      insetgan edit --network default-body --seeds 0-3 --edit body_sefa.npz:sefa0@4-7 --strengths -3,0,3 --outdir s/
    """
    G, _ = _network(network, device)
    result = sefa(G, parse_rows(rows) if rows is not None else None, num)
    iio.atomic_write_bytes(out, result.npz_bytes())
    log.info("wrote %d directions of rows %d-%d (%d style layers) to %s; eigenvalues %s", num, *result.rows,
             len(result.layers), out, ", ".join(f"{v:.3g}" for v in result.eigenvalues[:8]))


@directions.command("samples")
@click.option("--network", required=True, metavar="CKPT", help=NETWORK_HELP)
@click.option("--num", type=click.IntRange(1, MAX_SAMPLES), default=64, show_default=True, help="Samples to label.")
@click.option("--first-seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--trunc", type=range_type(PSI_RANGE), default=1.0, show_default=True, help="Truncation psi.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: grid.png, latents.npz, labels.csv.")
@device_option
@handle_errors
def samples_command(network: str, num: int, first_seed: int, trunc: float, out: str, device: str) -> None:
    """Write samples to label: a numbered grid, their W codes and an empty labels.csv.

    Write 0 or 1 after each seed in labels.csv that you can judge, then run
    ``insetgan directions boundary --latents OUT/latents.npz --labels OUT/labels.csv --out d.npy``.
    """
    if (Path(out) / "labels.csv").exists():
        raise InsetganError(f"{Path(out) / 'labels.csv'} exists: choose another --out (it may hold your labels)")
    if first_seed + num - 1 > MAX_SEED:
        raise InsetganError(f"seeds {first_seed}..{first_seed + num - 1} go beyond {MAX_SEED}")
    G, info = _network(network, device)
    seeds = list(range(first_seed, first_seed + num))
    files = samples_files(G, seeds, SampleConfig(truncation_psi=trunc))
    files["report.json"] = iio.json_bytes({"command": "directions samples", "inputs": {"network": info},
                                           "seeds": seeds, "truncation_psi": trunc,
                                           "outputs": sorted(files) + ["report.json"], "versions": iio.versions()})
    log.info("wrote %d samples to %s: label them in labels.csv", num, write_files(out, files))


@directions.command("boundary")
@click.option("--latents", required=True, type=click.Path(dir_okay=False), help="latents.npz of directions samples.")
@click.option("--labels", required=True, type=click.Path(dir_okay=False), help="labels.csv: seed,label (0 or 1).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npy: the unit normal [1, w_dim].")
@click.option("--classifier", type=click.Choice(KINDS), default="logistic", show_default=True)
@click.option("--holdout", type=range_type(field_range(BoundaryConfig, "holdout")),
              default=0.2, show_default=True, help="Share of the labelled samples held out to measure accuracy.")
@handle_errors
def boundary_command(latents: str, labels: str, out: str, classifier: str, holdout: float) -> None:
    """Fit an InterFaceGAN boundary in W from labelled samples; print its held-out accuracy."""
    w, seeds = read_latents(latents)
    index, y = read_labels(labels, seeds)
    result = fit_boundary(w[index], y, BoundaryConfig(kind=classifier, holdout=holdout))
    iio.atomic_write_bytes(out, iio.npy_bytes(result.normal.reshape(1, -1).astype(np.float32)))
    acc = "n/a" if result.heldout_accuracy is None else f"{result.heldout_accuracy:.3f}"
    click.echo(f"held-out accuracy {acc} ({result.n_heldout} samples; training {result.train_accuracy:.3f} of "
               f"{result.n_train}); wrote {out}")


@click.command("edit")
@click_options(EditRequest)
@outdir_option
@handle_errors
def edit(outdir: str, **options: Any) -> None:
    """Render seeds along edits: a grid with one row per seed and one column per strength.

    \b
    Examples:
      insetgan edit --network default-body --seeds 0-3 --edit default-body:upper_length --outdir strip/
      insetgan edit --network ffhq.pkl --seeds 0 --edit smile_boundary.npy@0-7 --strengths -2,0,2 --outdir s/
      insetgan edit --network shhq.pkl --seeds 1 --edit ss/upper_length%0.2@5=1 --strengths 0,10 --outdir s/
    """
    req = request_from(EditRequest, given_options(options))
    res = run_edit(req)
    out = write_files(outdir, res.files)
    log.info("wrote a %d×%d strip (grid.png) and report.json to %s", len(res.report["seeds"]),
             len(res.report["strengths"]), out)


COMMANDS = [directions, edit]
