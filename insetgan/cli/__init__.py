"""The ``insetgan`` command line: thin wrappers that parse, load, call library functions and write files.

One module per command group: :mod:`~insetgan.cli.checkpoints` (generate, inspect, convert,
models, doctor), :mod:`~insetgan.cli.compose` (compose, sample-bodies, refine-face),
:mod:`~insetgan.cli.photos` (align, invert), :mod:`~insetgan.cli.training` (prepare,
train), :mod:`~insetgan.cli.editing` (directions, edit) and :mod:`~insetgan.cli.app` (app); shared options and error handling live in :mod:`~insetgan.cli.common`.
"""
from __future__ import annotations

import logging
import sys

import click

import insetgan
from insetgan import outputs
from insetgan.cli import app, checkpoints, compose, editing, encoder, photos, training
from insetgan.torch_utils.cpu_alloc import tune_cpu_allocator


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(insetgan.__version__, prog_name="insetgan")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("--quiet", is_flag=True, help="Only print errors.")
def cli(debug: bool, quiet: bool) -> None:
    """Compose full-body humans from canvas and inset StyleGAN2 generators."""
    level = logging.DEBUG if debug else (logging.ERROR if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)


for _module in (checkpoints, compose, photos, training, app, editing, encoder):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI with one-line user errors and proper exit codes.

    User errors (bad input) print one line and exit 1; usage errors exit 2; anything else is
    a bug and shows its traceback. Ctrl-C, SIGTERM and SIGHUP raise inside the command (so
    temporary files and unfinished output sets are removed on the way out) and exit with
    128 + the signal number (130, 143, 129).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    with outputs.interrupts_as_exceptions():
        try:
            tune_cpu_allocator()
            cli.main(args=argv, prog_name="insetgan", standalone_mode=False)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt) as exc:
            cause = exc.__cause__ if isinstance(exc, click.Abort) else exc
            click.echo("Terminated." if isinstance(cause, outputs.Terminated) else "Aborted.", err=True)
            sys.exit(outputs.exit_status(cause))
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
