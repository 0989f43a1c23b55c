"""What every command group shares: error handling, option types, shared options, devices, outputs."""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable

import click

from insetgan import outputs
from insetgan.devices import DEVICES
from insetgan.errors import InsetganError
from insetgan.jobs import progress as job_progress
from insetgan.jobs.options import OptionSpec, flag_name, has_default, is_flag, option_fields
from insetgan.limits import Range
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


def range_type(rng: Range) -> click.ParamType:
    """The click type of a :class:`~insetgan.limits.Range` (the same bounds as the config that owns it)."""
    if rng.integer:
        return click.IntRange(int(rng.lo), int(rng.hi), min_open=rng.lo_open, max_open=rng.hi_open)
    return FiniteFloat(min=rng.lo, max=rng.hi, min_open=rng.lo_open, max_open=rng.hi_open)


device_option = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                             help="Where to run (auto: CUDA when available).")
outdir_option = click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Output folder.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
progress_option = click.option("--progress", "progress_mode", type=click.Choice(["auto", "bar", "lines", "off"]),
                               default="auto", show_default=True,
                               help="auto: a bar on a terminal, a line every few percent otherwise.")


def _click_param(f: dataclasses.Field, spec: OptionSpec) -> Callable[[Callable], Callable]:
    """The click argument or option of one request field (see :func:`click_options`)."""
    if spec.argument:
        return click.argument(f.name, metavar=spec.metavar, nargs=-1 if spec.many else 1, required=not has_default(f))
    flag = flag_name(f.name, spec)
    if is_flag(f):
        if f.default:
            return click.option(f"{flag}/--no-{flag[2:]}", f.name, default=True, show_default=True,
                                help=spec.help or None)
        return click.option(flag, f.name, is_flag=True, help=spec.help or None)
    default = f.default if has_default(f) else None
    text = spec.help
    if default is None and spec.shown is not None:  # the help shows it; the request's own default applies
        text = f"{text}  [default: {spec.shown}]".strip()
    kind = range_type(spec.range) if spec.range is not None else \
        click.Choice(spec.choices) if spec.choices is not None else None
    return click.option(flag, f.name, type=kind, default=default, required=not has_default(f), multiple=spec.many,
                        show_default=default not in (None, ()), metavar=spec.metavar, help=text or None)


def click_options(request_type: type) -> Callable[[Callable], Callable]:
    """Decorate a command with one click option (or argument) per option field of ``request_type``.

    In declaration order, with the field's help, default, metavar and flag; a :class:`Range`
    becomes an ``IntRange`` / finite float range, choices a ``Choice``, a yes/no field a flag
    (``--x/--no-x`` when it defaults to yes). The command passes :func:`given_options` on to
    :func:`insetgan.jobs.options.request_from`, so the request's defaults are the only ones.
    """
    params = [_click_param(f, spec) for f, spec in option_fields(request_type) if spec.cli]

    def decorate(fn: Callable) -> Callable:
        for param in reversed(params):
            fn = param(fn)
        return fn

    return decorate


def given_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave (command line or environment); the rest take the request's defaults."""
    return {name: value for name, value in options.items() if given(name)}


def job_progress_factory(mode: str, keys: Callable[[str], bool] | None = job_progress.shown, unit: str = "step"
                         ) -> Callable[[str, str | None], ProgressBar]:
    """Progress bars for a job's loops (``--progress``), showing the values ``keys`` picks (None: all)."""
    return lambda desc, notice: progress_bar(desc, mode, notice, keys, unit)


def write_files(outdir: str | Path, files: dict[str, bytes]) -> Path:
    """Write a job's already-encoded outputs as one set: all of them appear, or none (:mod:`insetgan.outputs`)."""
    return outputs.write_set(outdir, files)


def progress_bar(desc: str, mode: str = "auto", notice: str | None = None,
                 keys: Callable[[str], bool] | None = None, unit: str = "step") -> ProgressBar:
    """A progress reporter for ``--progress`` (silent with ``--quiet`` or ``off``)."""
    tty = {"bar": True, "lines": False}.get(mode)
    return ProgressBar(desc, quiet=root_flag("quiet") or mode == "off", stream=sys.stderr, notice=notice, keys=keys,
                       unit=unit, tty=tty)
