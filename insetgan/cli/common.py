"""What every command group shares: error handling, option types, shared options, devices, outputs."""
from __future__ import annotations

import functools
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable

import click

from insetgan import outputs
from insetgan.devices import DEVICES, torch_device  # noqa: F401 - the commands import torch_device from here
from insetgan.errors import InsetganError
from insetgan.limits import MAX_SEED, Range
from insetgan.progress import ProgressBar
from insetgan.torch_utils.errors import OpArgumentError

log = logging.getLogger("insetgan")


class UserError(click.ClickException):
    """A one-line error for the user (exit code 1)."""


def handle_errors(fn: Callable) -> Callable:
    """Turn user errors (:class:`InsetganError`, checkpoint errors, bad op arguments, OS errors) into one-line messages.

    Anything else is a bug and keeps its traceback. ``--debug`` shows tracebacks for all.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (InsetganError, OpArgumentError, OSError) as exc:
            if root_flag("debug"):
                raise
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(msg) from None

    return wrapper


def given(name: str) -> bool:
    """True when the option with parameter name ``name`` was set by the user (command line or environment)."""
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source(name) if ctx else None
    return source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


def root_flag(name: str) -> bool:
    """A flag of the top-level group (``--debug``, ``--quiet``) from within a command."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get(name))


class FiniteFloat(click.FloatRange):
    """A float option that must be finite (no nan/inf), optionally within a range."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse, reject nan and inf (nan passes every comparison), then range-check."""
        number = click.types.FloatParamType.convert(self, value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def finite(min: float | None = None, max: float | None = None, min_open: bool = False) -> FiniteFloat:
    """The click type of a finite float in [min, max] (``min_open``: strictly above min)."""
    return FiniteFloat(min=min, max=max, min_open=min_open)


def range_type(rng: Range) -> click.ParamType:
    """The click type of a :class:`~insetgan.limits.Range` (the same bounds as the config that owns it)."""
    if rng.integer:
        return click.IntRange(int(rng.lo), int(rng.hi), min_open=rng.lo_open, max_open=rng.hi_open)
    return FiniteFloat(min=rng.lo, max=rng.hi, min_open=rng.lo_open, max_open=rng.hi_open)


SEED = click.IntRange(0, MAX_SEED)

device_option = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                             help="Where to run (auto: CUDA when available).")
outdir_option = click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Output folder.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
progress_option = click.option("--progress", "progress_mode", type=click.Choice(["auto", "bar", "lines", "off"]),
                               default="auto", show_default=True,
                               help="auto: a bar on a terminal, a line every few percent otherwise.")


def perceptual_options(fn: Callable) -> Callable:
    """``--perceptual`` and ``--weights``."""
    from insetgan.inversion.perceptual import PERCEPTUAL_SPECS

    fn = click.option("--weights", default=None, metavar="PATH",
                      help="LPIPS backbone file or folder (else $INSETGAN_WEIGHTS, then the torch hub cache).")(fn)
    return click.option("--perceptual", type=click.Choice(PERCEPTUAL_SPECS), default="auto", show_default=True,
                        help="Perceptual loss: LPIPS when its backbone weights are found (auto), or the l1-ssim "
                             "fallback.")(fn)


def job_options(fn: Callable) -> Callable:
    """The options of every optimisation job: perceptual loss, device, output folder, progress."""
    for opt in (progress_option, outdir_option, device_option):
        fn = opt(fn)
    return perceptual_options(fn)


def write_files(outdir: str | Path, files: dict[str, bytes]) -> Path:
    """Write a job's already-encoded outputs as one set: all of them appear, or none (:mod:`insetgan.outputs`)."""
    return outputs.write_set(outdir, files)


def progress_bar(desc: str, mode: str = "auto", notice: str | None = None,
                 keys: Callable[[str], bool] | None = None, unit: str = "step") -> ProgressBar:
    """A progress reporter for ``--progress`` (silent with ``--quiet`` or ``off``)."""
    tty = {"bar": True, "lines": False}.get(mode)
    return ProgressBar(desc, quiet=root_flag("quiet") or mode == "off", stream=sys.stderr, notice=notice, keys=keys,
                       unit=unit, tty=tty)
