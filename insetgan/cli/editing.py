"""Commands on latent directions: ``directions sefa|samples|boundary`` and the strip job ``edit``."""
from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from insetgan import io as iio
from insetgan.cli.common import device_option, handle_errors, log, range_type, torch_device, write_files
from insetgan.editing.boundary import KINDS, BoundaryConfig, fit_boundary
from insetgan.editing.directions import load_edits
from insetgan.editing.layers import generator_shape
from insetgan.editing.samples import MAX_SAMPLES, read_labels, read_latents, samples_files
from insetgan.editing.sefa import sefa
from insetgan.editing.spec import parse_edit, parse_rows
from insetgan.editing.strip import StripConfig, parse_strengths, render_strip, strip_files, strip_report
from insetgan.errors import InsetganError
from insetgan.jobs.requests import MAX_CLASSES, MAX_IMAGES, MAX_LAYERS, NETWORK_HELP
from insetgan.limits import MAX_SEED, field_range
from insetgan.models import load_network
from insetgan.networks.generator import NOISE_MODES
from insetgan.sampling import PSI_RANGE, SampleConfig

EDIT_HELP = ("Direction to apply, FILE[:NAME][@ROWS][%THRESHOLD][=STRENGTH]: a W direction (.npy, .npz, .pt, "
             ".pkl) or a style-space one (a folder of style_vect_mean_<i>.pkl, an .npz of s<i>); "
             "default-body:upper_length names a built-in one. Repeat to combine.")


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
@click.option("--network", required=True, metavar="CKPT", help=NETWORK_HELP)
@click.option("--seeds", required=True, help="Seeds (rows of the grid), e.g. 0-3,7.")
@click.option("--edit", "edit_specs", multiple=True, required=True, metavar="SPEC", help=EDIT_HELP)
@click.option("--strengths", default="-3,0,3", show_default=True,
              help="Columns of the grid: factors of each edit's strength.")
@click.option("--trunc", type=range_type(PSI_RANGE), default=1.0, show_default=True, help="Truncation psi.")
@click.option("--trunc-cutoff", type=click.IntRange(0, MAX_LAYERS), default=None,
              help="Truncate only the first N layers.")
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True)
@click.option("--class", "class_idx", type=click.IntRange(0, MAX_CLASSES), default=None,
              help="Class label for conditional networks.")
@device_option
@click.option("--raw", is_flag=True, help="Also write each float32 CHW image as seedNNNN_K.npy.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@handle_errors
def edit(network: str, seeds: str, edit_specs: tuple[str, ...], strengths: str, trunc: float,
         trunc_cutoff: int | None, noise_mode: str, class_idx: int | None, device: str, raw: bool,
         outdir: str) -> None:
    """Render seeds along edits: a grid with one row per seed and one column per strength.

    \b
    Examples:
      insetgan edit --network default-body --seeds 0-3 --edit default-body:upper_length --outdir strip/
      insetgan edit --network ffhq.pkl --seeds 0 --edit smile_boundary.npy@0-7 --strengths -2,0,2 --outdir s/
      insetgan edit --network shhq.pkl --seeds 1 --edit ss/upper_length%0.2@5=1 --strengths 0,10 --outdir s/
    """
    parsed = [parse_edit(spec, strength_required=False) for spec in edit_specs]
    cfg = StripConfig(tuple(iio.parse_range(seeds, "seed", max_count=MAX_IMAGES)), parse_strengths(strengths),
                      SampleConfig(trunc, trunc_cutoff, noise_mode, class_idx))
    t0 = time.perf_counter()
    G, info = _network(network, device)
    loaded = load_edits(parsed, generator_shape(G))
    load_s = time.perf_counter() - t0
    images, seconds = render_strip(G, loaded, cfg)
    files = strip_files(images, cfg, raw)
    report = strip_report(info, loaded, cfg, list(files), seconds)
    report["timings_s"]["load"] = round(load_s, 4)
    files["report.json"] = iio.json_bytes(report)
    out = write_files(outdir, files)
    log.info("wrote a %d×%d strip (grid.png) and report.json to %s", len(cfg.seeds), len(cfg.strengths), out)


COMMANDS = [directions, edit]
