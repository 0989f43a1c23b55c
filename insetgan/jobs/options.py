"""A job's options, declared once on its request dataclass and read by every front end.

A request field is declared with :func:`option`: its default, its help text and how a user
gives it (the command-line flag, a metavar, a :class:`~insetgan.limits.Range`, a list of
choices). The command line builds its click options from these declarations
(:func:`insetgan.cli.common.click_options`); the page and the scripts build a request from
plain values with :func:`request_from`, which turns what a user typed (text, numbers, None
for "not given") into the field's type. The request's ``__post_init__`` then checks the
values (:func:`check_values` and its own rules) and refuses with an :class:`OptionError`,
whose message names each option the way the front end that made the request names it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, TypeVar

from insetgan.errors import InsetganError
from insetgan.limits import Range, short_repr

REQUIRED: Any = dataclasses.MISSING  # the default of an option the user must give
R = TypeVar("R")


@dataclass(frozen=True)
class OptionSpec:
    """How a user gives one request field.

    ``flag``: the command-line spelling (default ``--`` and the field name with dashes);
    ``argument``: a positional argument instead (``many``: one or more values); ``shown``: the
    default the help text names when the field's own default is None ("not given");
    ``cli``: False for a field only the page or the scripts set.
    """

    help: str
    flag: str | None = None
    metavar: str | None = None
    range: Range | None = None
    choices: tuple[str, ...] | None = None
    argument: bool = False
    many: bool = False
    cli: bool = True
    shown: str | None = None


def option(default: Any, help: str, *, flag: str | None = None, metavar: str | None = None,
           range: Range | None = None, choices: tuple[str, ...] | None = None, argument: bool = False,
           many: bool = False, cli: bool = True, shown: str | None = None) -> Any:
    """A dataclass field with ``default`` (:data:`REQUIRED`: none) that carries its :class:`OptionSpec`."""
    spec = OptionSpec(help, flag, metavar, range, tuple(choices) if choices is not None else None, argument, many,
                      cli, shown)
    if default is REQUIRED:
        return dataclasses.field(metadata={"option": spec})
    return dataclasses.field(default=default, metadata={"option": spec})


def option_fields(request_type: type) -> Iterator[tuple[dataclasses.Field, OptionSpec]]:
    """The fields of ``request_type`` declared with :func:`option`, in declaration order, with their specs."""
    for f in dataclasses.fields(request_type):
        if "option" in f.metadata:
            yield f, f.metadata["option"]


def flag_name(name: str, spec: OptionSpec) -> str:
    """How the command line names a field: its flag, or an argument's metavar."""
    if spec.argument:
        return spec.metavar or name.upper()
    return spec.flag or "--" + name.replace("_", "-")


def flags(request_type: type) -> dict[str, str]:
    """Every option field of ``request_type`` by the name the command line gives it."""
    return {f.name: flag_name(f.name, spec) for f, spec in option_fields(request_type)}


def is_flag(f: dataclasses.Field) -> bool:
    """True for a yes/no option (a bool default)."""
    return isinstance(f.default, bool)


def has_default(f: dataclasses.Field) -> bool:
    """False for an option the user must give."""
    return f.default is not dataclasses.MISSING


def escape(text: str) -> str:
    """``text`` as literal text inside an :class:`OptionError` template."""
    return text.replace("{", "{{").replace("}", "}}")


class OptionError(InsetganError):
    """A refused request whose message names options as ``{field}`` placeholders.

    ``str()`` names them as the command line does; :meth:`renamed` gives the same refusal in
    the words of another front end (the page says "the face seed" for ``--face-seed``).
    """

    def __init__(self, template: str, names: Mapping[str, str]) -> None:
        self.template, self.names = template, dict(names)
        super().__init__(template.format_map(self.names))

    def renamed(self, names: Mapping[str, str]) -> "OptionError":
        """The same refusal with some options named by ``names``."""
        return OptionError(self.template, {**self.names, **names})


def refusal(request: Any, template: str) -> OptionError:
    """An :class:`OptionError` of ``request`` (its ``{field}`` placeholders name the command-line options)."""
    return OptionError(template, flags(type(request)))


def unset(value: object) -> bool:
    """True for a value that means "not given": None or blank text."""
    return value is None or (isinstance(value, str) and not value.strip())


def not_given(value: object, f: dataclasses.Field, spec: OptionSpec) -> bool:
    """True when ``value`` leaves field ``f`` at its default: None, or blank text for a number or for an
    option that is off by default (blank text is a value of a text option with a default, e.g. no policy)."""
    if value is None:
        return True
    return unset(value) and (spec.range is not None or not has_default(f) or f.default is None)


def parse_int(value: object, what: str) -> int:
    """An int from an int, a finite integral float, or the text of either; a one-line error otherwise."""
    number: object = None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
        with contextlib.suppress(ValueError):
            number = float(value)
    elif isinstance(value, float):
        number = value
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        return int(number)
    raise InsetganError(f"{what} must be a whole number, got {str(value)[:40]!r}")


def parse_float(value: object, what: str) -> float:
    """A finite float from a number or its text; a one-line error otherwise."""
    number: object = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
    if isinstance(number, float) and math.isfinite(number):
        return number
    raise InsetganError(f"{what} must be a finite number, got {str(value)[:40]!r}")


def range_problem(value: object, rng: Range) -> str | None:
    """What is wrong with ``value`` for ``rng`` (``must be in 1..400, got 0``), or None when it fits."""
    typed = not isinstance(value, bool) and isinstance(value, numbers.Integral if rng.integer else numbers.Real)
    if typed and math.isfinite(value) and rng.contains(value):  # type: ignore[arg-type]
        return None
    if typed and rng.integer and not (rng.lo_open or rng.hi_open):
        return f"must be in {int(rng.lo)}..{int(rng.hi)}, got {value}"
    return f"must be {'an integer' if rng.integer else 'a number'} in {rng.text()}, got {short_repr(value)}"


def whole_number(value: object, what: str, lo: int, hi: int) -> int:
    """``value`` (see :func:`parse_int`) as an int in ``lo..hi``; a one-line error otherwise."""
    number = parse_int(value, what)
    problem = range_problem(number, Range(lo, hi, integer=True))
    if problem:
        raise InsetganError(f"{what} {problem}")
    return number


def flag_value(value: object, what: str) -> bool:
    """A yes/no value (true or false, nothing else)."""
    if not isinstance(value, bool):
        raise InsetganError(f"{what} must be true or false")
    return value


def text_value(value: object, what: str) -> str:
    """Text (a path is taken as its text); a one-line error otherwise."""
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str):
        raise InsetganError(f"{what} must be text, got {short_repr(value)}")
    return value


def coerce(value: object, f: dataclasses.Field, spec: OptionSpec, what: str) -> object:
    """``value`` as the type of field ``f``: a whole or finite number for a ranged field, a flag, text or texts."""
    if spec.range is not None:
        return parse_int(value, what) if spec.range.integer else parse_float(value, what)
    if is_flag(f):
        return flag_value(value, what)
    if spec.many:
        if isinstance(value, (str, Path)) or not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(text_value(v, what) for v in value)
    return text_value(value, what)


def request_from(request_type: type[R], options: Mapping[str, object],
                 names: Mapping[str, str] | None = None) -> R:
    """A request of ``request_type`` from user-level ``options`` (field name -> value).

    Values that mean "not given" (:func:`not_given`) are dropped, so the field's default
    applies; the rest are turned into the field's type. ``names`` says how the caller names
    options in its messages (default: the command-line flags); every refusal, the request's
    own checks included, is one line that names them so.
    """
    specs = {f.name: (f, spec) for f, spec in option_fields(request_type)}
    label = {**flags(request_type), **(names or {})}
    unknown = sorted(set(options) - set(specs))
    if unknown:
        raise InsetganError(f"unknown option(s) for {request_type.__name__}: {', '.join(unknown)}")
    values = {name: coerce(value, *specs[name], label[name]) for name, value in options.items()
              if not not_given(value, *specs[name])}
    missing = [label[name] for name, (f, _) in specs.items() if not has_default(f) and name not in values]
    if missing:
        raise InsetganError(f"{missing[0]} is required")
    try:
        return request_type(**values)
    except OptionError as exc:
        raise exc.renamed(names or {}) from None


def check_values(request: Any) -> None:
    """Check every option field of ``request``: numbers in their range, choices among the choices, text as text."""
    for f, spec in option_fields(type(request)):
        value = getattr(request, f.name)
        if value is None and (has_default(f) and f.default is None):
            continue
        if spec.range is not None:
            problem = range_problem(value, spec.range)
        elif is_flag(f):
            problem = None if isinstance(value, bool) else "must be true or false"
        elif spec.many:  # an option with a default (none given) may be empty
            problem = None if isinstance(value, tuple) and (value or has_default(f)) \
                and all(isinstance(v, str) for v in value) else "must be one or more texts"
        elif not isinstance(value, str):
            problem = f"must be text, got {short_repr(value)}"
        elif spec.choices is not None and value not in spec.choices:
            problem = f"must be one of {', '.join(spec.choices)}, got {short_repr(value)}"
        else:
            problem = None
        if problem:
            raise refusal(request, "{" + f.name + "} " + escape(problem))


def settings(request: Any) -> dict[str, Any]:
    """The user-level values of ``request`` (every option field), JSON-able: what a report records."""
    return {f.name: list(v) if isinstance(v := getattr(request, f.name), tuple) else v
            for f, _ in option_fields(type(request))}
