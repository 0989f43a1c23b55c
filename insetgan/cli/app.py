"""The app command: ``insetgan app`` serves the local web page (insetgan.app)."""
from __future__ import annotations

from pathlib import Path

import click

from insetgan.app.page import AppConfig, serve
from insetgan.app.runner import StageLimits
from insetgan.cli.common import device_option, handle_errors
from insetgan.devices import torch_device
from insetgan.jobs.requests import STEPS_SHOWN


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on (the default keeps the page on this machine).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--body", default="default", show_default=True, metavar="CKPT",
              help="Body generator offered and preselected.")
@click.option("--face-net", default="default", show_default=True, metavar="CKPT",
              help="Face generator offered and preselected.")
@click.option("--shoes-net", default=None, metavar="CKPT", help="Shoes generator offered and preselected (optional).")
@click.option("--queue-size", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Requests that may wait while one job runs; more are told the app is busy.")
@click.option("--max-file-mb", type=click.IntRange(1, 1024), default=25, show_default=True,
              help="Largest upload accepted.")
@click.option("--invert-steps", type=click.IntRange(1, 100000), default=None,
              help=f"Projector steps for uploaded photos.  [default: {STEPS_SHOWN}]")
@click.option("--workdir", default=None, type=click.Path(file_okay=False),
              help="Folder for job folders and the upload cache (default: a new temporary folder, removed when "
                   "the server stops).")
@click.option("--models-dir", default=None, type=click.Path(file_okay=False), metavar="DIR",
              help="Offer every checkpoint file in DIR (.pkl, .pt, .pth, .safetensors) in the page's network menus.")
@click.option("--directions", multiple=True, metavar="FILE[:NAME][@ROWS][%T]",
              help="Offer this direction file in the page's body-edit menu, by its file name, with a strength the "
                   "user picks; repeatable (editing.md).")
@click.option("--stage-timeout", multiple=True, metavar="[STAGE=]SECONDS",
              help="Time limit of a job stage (loading, inversion, optimisation, writing), or of every stage "
                   f"without STAGE=; repeatable. A job over its limit is stopped.  [default: {StageLimits().text()}]")
@device_option
@handle_errors
def app(host: str, port: int, body: str, face_net: str, shoes_net: str | None, queue_size: int, max_file_mb: int,
        invert_steps: int | None, workdir: str | None, models_dir: str | None, directions: tuple[str, ...],
        stage_timeout: tuple[str, ...], device: str) -> None:
    """Serve a local web page for the three jobs: compose, many bodies, fix a face (needs insetgan[app]).

    A request can name only the built-in models, the --body/--face-net/--shoes-net checkpoints
    and those in --models-dir, and only the --directions files; never a path or an uploaded file.
    The built-in body's directions are sliders whenever the body menu names the built-in body.

    \b
    Examples:
      insetgan app                                  # http://127.0.0.1:7860, the built-in models
      insetgan app --body body.pkl --face-net ffhq.pkl --device cuda --port 8000
      insetgan app --models-dir models/ --stage-timeout optimisation=600
      insetgan app --directions smile.npy --directions sefa.npz:sefa0@4-7
    """
    torch_device(device)  # an error now for --device cuda without a GPU, not at the first job
    cfg = AppConfig(host=host, port=port, body=body, face_net=face_net, shoes_net=shoes_net, device=device,
                    queue_size=queue_size, max_file_mb=max_file_mb, workdir=Path(workdir) if workdir else None,
                    invert_steps=invert_steps, models_dir=Path(models_dir) if models_dir else None,
                    directions=tuple(directions),
                    limits=StageLimits.parse(stage_timeout))
    serve(cfg)


COMMANDS = (app,)
