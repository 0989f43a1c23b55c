"""Commands on checkpoints: generate, inspect, convert, models, doctor."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch

from insetgan import io as iio
from insetgan.cli.common import device_option, handle_errors, json_option, log, range_type, torch_device, write_files
from insetgan.sampling import PSI_RANGE, ROTATE_RANGE, TRANSLATE_RANGE
from insetgan.limits import MAX_SEED, short_repr
from insetgan.io import versions
from insetgan.models import load_network
from insetgan.errors import InsetganError
from insetgan.networks.generator import NOISE_MODES
from insetgan.torch_utils.ops.dispatch import device_ops

MAX_IMAGES = 1024  # generate keeps every image of a run in memory for the grid
MAX_LAYERS = 64  # W+ layers of the largest networks (18 at 1024 px; StyleGAN3: 16)
MAX_CLASSES = 100_000
NETWORK_HELP = "Generator checkpoint (.pkl, .pt, .safetensors) or a built-in model (default-body, default-face, " \
               "default-shoes)."


@click.command()
@click.option("--network", "network", required=True, metavar="CKPT", help=NETWORK_HELP)
@click.option("--seeds", required=True,
              help=f"Seeds, e.g. 0-3,7 (each in 0..{MAX_SEED}, at most {MAX_IMAGES} of them).")
@click.option("--trunc", "trunc", type=range_type(PSI_RANGE), default=1.0, show_default=True,
              help="Truncation psi.")
@click.option("--trunc-cutoff", type=click.IntRange(0, MAX_LAYERS), default=None,
              help="Truncate only the first N layers (at most the network's num_ws).")
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True)
@click.option("--class", "class_idx", type=click.IntRange(0, MAX_CLASSES), default=None,
              help="Class label for conditional networks (0..c_dim-1).")
@click.option("--translate", default=None, metavar="X,Y",
              help="StyleGAN3 only: translate the images (e.g. 0.1,-0.05; each in [-10, 10]), as the official "
                   "gen_images.py.")
@click.option("--rotate", type=range_type(ROTATE_RANGE), default=None, metavar="DEG",
              help="StyleGAN3 only: rotate the images by DEG degrees, as the official gen_images.py.")
@device_option
@click.option("--raw", is_flag=True, help="Also write each float32 CHW image as seedNNNN.npy.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@handle_errors
def generate(network: str, seeds: str, trunc: float, trunc_cutoff: int | None, noise_mode: str,
             class_idx: int | None, translate: str | None, rotate: float | None, device: str, raw: bool,
             outdir: str) -> None:
    """Generate images for the given seeds.

    \b
    Examples:
      insetgan generate --network ffhq.pkl --seeds 0-3,7 --trunc 0.7 --outdir out/
      insetgan generate --network default-face --seeds 0-15 --outdir out/faces
      insetgan generate --network stylegan3-r-ffhq.pkl --seeds 0 --translate 0.2,0 --rotate 10 --outdir out/t
    """
    from insetgan.sampling import SampleConfig, sample_seeds

    seed_list = iio.parse_range(seeds, "seed", max_count=MAX_IMAGES)
    shift = parse_pair(translate, "--translate") if translate is not None else None
    dev = torch_device(device)
    t0 = time.perf_counter()
    ckpt, info = load_network(network, dev, "--network")
    load_s = time.perf_counter() - t0
    G = ckpt.generator
    cfg = SampleConfig(trunc, trunc_cutoff, noise_mode, class_idx, shift, rotate)
    cfg.validate(G)
    t1 = time.perf_counter()
    images, per_seed = sample_seeds(G, seed_list, cfg)
    gen_s = time.perf_counter() - t1

    # Encode everything before the first write, then write each file atomically.
    arrays = [iio.to_uint8(img) for img in images]
    files: dict[str, bytes] = {}
    for seed, img, arr in zip(seed_list, images, arrays):
        files[f"seed{seed:04d}.png"] = iio.png_bytes(arr)
        if raw:
            files[f"seed{seed:04d}.npy"] = iio.npy_bytes(img.numpy().astype(np.float32))
    files["grid.png"] = iio.png_bytes(iio.grid(arrays))
    report = {
        "command": "generate",
        "inputs": {"network": str(network), "path": info["path"], "sha256": info["sha256"], "format": ckpt.format,
                   "notes": list(ckpt.notes)},
        "seeds": seed_list,
        "settings": {"truncation_psi": trunc, "truncation_cutoff": trunc_cutoff, "noise_mode": noise_mode,
                     "class": class_idx, "device": str(dev), "z": "np.random.RandomState(seed).randn(1, z_dim)",
                     **({"translate": list(shift) if shift else None, "rotate": rotate} if cfg.sets_transform
                        else {})},
        "architecture": G.cfg.family,
        "generator": G.cfg.to_dict(),
        "num_ws": G.num_ws,
        "outputs": sorted(files) + ["report.json"],
        "timings_s": {"load": round(load_s, 4), "generate": round(gen_s, 4),
                      "per_seed": [round(s, 4) for s in per_seed]},
        "versions": versions(),
        "ops": device_ops(dev),
    }
    files["report.json"] = iio.json_bytes(report)
    out = write_files(outdir, files)
    log.info("wrote %d images, grid.png and report.json to %s", len(seed_list), out)


def parse_pair(value: str, option: str) -> tuple[float, float]:
    """Two finite numbers ``X,Y`` (an ``InsetganError`` naming ``option`` otherwise)."""
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 2 or not all(np.isfinite(numbers)) or not all(TRANSLATE_RANGE.contains(v) for v in numbers):
        raise InsetganError(f"{option} takes two finite numbers X,Y in {TRANSLATE_RANGE.text()} (e.g. 0.1,-0.2), "
                            f"got {short_repr(value)}")
    return numbers[0], numbers[1]


@click.command()
@click.argument("checkpoint", metavar="CKPT")
@json_option
@handle_errors
def inspect(checkpoint: str, as_json: bool) -> None:
    """Describe a checkpoint (or a built-in model): format, resolution, dims, channels, parameters.

    \b
    Examples:
      insetgan inspect stylegan_human_v2_1024.pkl --json
      insetgan inspect default-body
    """
    from insetgan.networks.checkpoints import describe

    ckpt, _ = load_network(checkpoint, torch.device("cpu"), "CKPT")
    info = describe(ckpt)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    res = info["resolution"]
    fp16 = ", ".join(map(str, info["fp16_resolutions"])) or "none"
    lines = [
        f"file          {info['path']}",
        f"format        {info['format']}",
        f"resolution    {res['height']}x{res['width']} (HxW), {info['img_channels']} channel(s)",
        f"z/w/c dims    {info['z_dim']} / {info['w_dim']} / {info['c_dim']}",
        f"num_ws        {info['num_ws']}",
        f"mapping       {info['mapping_layers']} layers, lr multiplier {info['mapping_lr_multiplier']}",
        f"architecture  {info['architecture']}",
        "channels      " + ", ".join(f"{r}:{c}" for r, c in info["channels"].items()),
        f"parameters    {info['parameters']:,}",
        f"fp16 blocks   {fp16} (CUDA only); conv_clamp {info['conv_clamp']}",
    ]
    if "transform" in info:
        lines.append("transform     " + " / ".join(" ".join(f"{v:.4g}" for v in row) for row in info["transform"])
                     + " (StyleGAN3 input transform, inverse of the user translate/rotate)")
    lines += [f"note          {n}" for n in info["notes"]]
    click.echo("\n".join(lines))


@click.command()
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="OUT.safetensors")
@click.option("--fp16", is_flag=True, help="Store weights as float16 (half the size).")
@handle_errors
def convert(src: str, dst: str, fp16: bool) -> None:
    """Convert any supported checkpoint (or a built-in model) to insetgan's safetensors format.

    \b
    Example:
      insetgan convert stylegan2-ffhq-config-f.pt ffhq.safetensors
    """
    from insetgan.networks import native

    ckpt, info = load_network(src, torch.device("cpu"), "IN")
    out = Path(dst)
    if out.is_dir():
        raise InsetganError(f"{dst} is a directory")
    if not out.parent.exists():
        raise InsetganError(f"folder {out.parent} does not exist")
    kept = {k: v for k, v in ckpt.metadata.items()
            if k not in ("format", "format_version", "architecture", "config")}
    extra = {**kept, "source_format": ckpt.format, "source_file": Path(info["path"]).name, "notes": list(ckpt.notes)}
    native.save(ckpt.generator, out, extra=extra, dtype=torch.float16 if fp16 else torch.float32)
    log.info("wrote %s (%s -> insetgan-safetensors)", out, ckpt.format)


@click.command()
@json_option
@handle_errors
def models(as_json: bool) -> None:
    """List the built-in models: name, resolution, size and their model-card line.

    \b
    Example:
      insetgan models
      insetgan generate --network default-face --seeds 0-7 --outdir out/faces
    """
    from insetgan.models import BUILTIN, describe_builtin

    rows = [describe_builtin(role) for role in BUILTIN]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        h, w = r["resolution"]
        click.echo(f"{r['name']:<14} {h}x{w:<5} {r['bytes'] / 1e6:5.1f} MB  {r['parameters'] / 1e6:.2f}M params  "
                   f"{r['card']}")
    click.echo("'default' means the built-in model of an option's role (--body, --face-net, --shoes-net).")


@click.command()
@json_option
@handle_errors
def doctor(as_json: bool) -> None:
    """Report which op implementations (compiled or reference) are active, why, and each kernel's self-check.

    \b
    Example:
      insetgan doctor
      INSETGAN_OPS=ref insetgan doctor --json
    """
    from insetgan.torch_utils.ops.dispatch import ops_report

    report = ops_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    lines = [f"torch         {report['torch']}", f"INSETGAN_OPS  {report['INSETGAN_OPS'] or '(unset)'}",
             f"kernel cache  {report['cache']}", f"allocator     {'tuned' if report['allocator_tuned'] else 'default'}"]
    for dev, info in report["devices"].items():
        lines.append(f"{dev:<13} {info['active']}: {info['reason']}")
        if info.get("ops"):
            lines.append(f"{'':<13} {', '.join(f'{op}={impl}' for op, impl in info['ops'].items())}")
        for op, verdict in info.get("self_check", {}).items():
            lines.append(f"{'':<13} self-check {op}: {verdict}")
    if report.get("reference_only_ops"):
        lines.append(f"ref only      {', '.join(report['reference_only_ops'])} (no compiled kernel yet)")
    click.echo("\n".join(lines))


COMMANDS = (generate, inspect, convert, models, doctor)
