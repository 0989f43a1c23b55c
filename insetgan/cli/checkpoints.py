"""Commands on checkpoints: generate, inspect, convert, models, doctor."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import torch

from insetgan.cli.common import (click_options, given_options, handle_errors, json_option, log, outdir_option,
                                 write_files)
from insetgan.errors import InsetganError
from insetgan.jobs.generate import run_generate
from insetgan.jobs.options import request_from
from insetgan.jobs.network_requests import GenerateRequest
from insetgan.models import BUILTIN, describe_builtin, load_network
from insetgan.networks import native
from insetgan.networks.checkpoints import describe
from insetgan.torch_utils.ops.dispatch import ops_report


@click.command()
@click_options(GenerateRequest)
@outdir_option
@handle_errors
def generate(outdir: str, **options: Any) -> None:
    """Generate images for the given seeds.

    \b
    Examples:
      insetgan generate --network ffhq.pkl --seeds 0-3,7 --trunc 0.7 --outdir out/
      insetgan generate --network default-face --seeds 0-15 --outdir out/faces
      insetgan generate --network stylegan3-r-ffhq.pkl --seeds 0 --translate 0.2,0 --rotate 10 --outdir out/t
    """
    res = run_generate(request_from(GenerateRequest, given_options(options)))
    out = write_files(outdir, res.files)
    log.info("wrote %d images, grid.png and report.json to %s", len(res.report["seeds"]), out)


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
