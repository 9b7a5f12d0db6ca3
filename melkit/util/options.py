"""Each command option declared once, on its options dataclass: default, range or choices, and help.

    calibration_images: int = opt(300, min=2, help="Representative images from the training split.")

``@click_options(Options)`` turns every ``opt`` field into a click option (``--calibration-images``) and
calls the command with ``opts=Options(...)`` built from the parsed values. ``check(opts)`` applies the same
ranges and choices, in the same words, to options built in Python. A field with a plain default is
library-only: no option.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import MISSING, asdict, dataclass, field, fields

import click

from melkit.util.errors import BadInputError
from melkit.util.paths import stored_path

SEED = 0  # every command's default --seed
_KEY = "melkit.option"


@dataclass(frozen=True)
class Option:
    """How one dataclass field appears on the command line (the field itself holds the default)."""

    help: str | None = None
    flag: str | None = None  # default: --field-name
    type: object = None  # a click type, or int/float for a field whose default is None
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # min itself is out of range
    choices: tuple | None = None
    is_flag: bool | None = None  # default: a bool field is a flag; given, it flips the field's default
    off: tuple | None = None  # (flag, help): a second flag that sets the field to None
    switches: dict | None = None  # {name: help}: one flag --name each; the field is the list of names given
    argument: bool = False  # a positional argument instead of an option
    click: dict = field(default_factory=dict)  # passed to click as is (multiple, nargs, ...)


def opt(default=MISSING, help=None, *, default_factory=MISSING, **spec):
    """A dataclass field that is also a command option: ``Option``'s keywords, the rest go to click."""
    known = {f.name for f in fields(Option)}
    option = Option(help=help, **{k: v for k, v in spec.items() if k in known},
                    click={k: v for k, v in spec.items() if k not in known})
    return field(default=default, default_factory=default_factory, metadata={_KEY: option})


def stored_options(opts, folder) -> dict:
    """``asdict(opts)`` as a file in ``folder`` records it: every path option (a ``click.Path`` field) relative
    to that folder (see :mod:`melkit.util.paths`), so that a report's options stay true when it moves."""
    out = asdict(opts)
    for f in fields(opts):
        o, value = option_of(f), out[f.name]
        if o is None or not isinstance(o.type, click.Path) or value is None:
            continue
        out[f.name] = ([stored_path(v, folder) for v in value] if isinstance(value, (list, tuple))
                       else stored_path(value, folder))
    return out


def default_of(function, name):
    """The default of ``function``'s parameter ``name``: for an option whose library function declares it."""
    return inspect.signature(function).parameters[name].default


def option_of(f) -> Option | None:
    """The command-line side of dataclass field ``f`` (None for a library-only field)."""
    return f.metadata.get(_KEY)


def flag_name(f) -> str:
    return option_of(f).flag or "--" + f.name.replace("_", "-")


def _is_flag(f) -> bool:
    o = option_of(f)
    return o.is_flag if o.is_flag is not None else isinstance(f.default, bool)


def _number(f):
    o = option_of(f)
    if o.type in (int, float):
        return o.type
    is_number = isinstance(f.default, (int, float)) and not isinstance(f.default, bool)
    return type(f.default) if is_number else None


def _range_problem(value, lo, hi, lo_open=False) -> str | None:
    above_lo = lo is None or (value > lo if lo_open else value >= lo)
    if above_lo and (hi is None or value <= hi):
        return None
    if hi is None:
        return f"must be {'above' if lo_open else 'at least'} {lo} (got {value})"
    if lo is None:
        return f"must be at most {hi} (got {value})"
    return f"must be in {'(' if lo_open else '['}{lo}, {hi}] (got {value})"


class _Range:
    """click's number range, shown the same in --help, failing in ``check``'s words."""

    number: click.ParamType

    def convert(self, value, param, ctx):
        value = self.number.convert(value, param, ctx)
        problem = _range_problem(value, self.min, self.max, self.min_open)
        if problem:
            self.fail(problem, param, ctx)
        return value


class IntRange(_Range, click.IntRange):
    number = click.INT


class FloatRange(_Range, click.FloatRange):
    number = click.FLOAT


class Epochs(click.ParamType):
    """Epochs per stage: ``15,10`` -> ``[15, 10]``."""

    name = "text"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [int(v) for v in value.split(",")]
        except ValueError:
            self.fail(f"comma-separated integers, one per stage, e.g. 15,10 (got {value!r})", param, ctx)


def _click_type(f):
    o = option_of(f)
    if o.choices:
        return click.Choice(o.choices)
    if o.min is not None or o.max is not None:
        return (FloatRange if _number(f) is float else IntRange)(o.min, o.max, min_open=o.min_open)
    return _number(f) or o.type


def _param_name(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _switch_param(f, name: str) -> str:
    return f"{f.name}__{_param_name(name)}"


def _decorators(f) -> list:
    """click decorators for field ``f``, in --help order."""
    o = option_of(f)
    if o.switches:
        return [click.option(f"--{name}", _switch_param(f, name), is_flag=True, help=text)
                for name, text in o.switches.items()]
    required = f.default is MISSING and f.default_factory is MISSING
    default = {} if f.default in (MISSING, None) else {"default": f.default}
    if o.argument:
        return [click.argument(f.name, type=_click_type(f), **default, **o.click)]
    if _is_flag(f):
        options = [click.option(flag_name(f), f.name, is_flag=True, help=o.help, **o.click)]
    else:
        options = [click.option(flag_name(f), f.name, type=_click_type(f), required=required, help=o.help,
                                show_default=True if default else None, **default, **o.click)]
    if o.off:
        options.append(click.option(o.off[0], _param_name(o.off[0]), is_flag=True, help=o.off[1]))
    return options


def _value(f, params: dict):
    """The field's value from the parsed command line (popped from ``params``)."""
    o = option_of(f)
    if o.switches:
        return [name for name in o.switches if params.pop(_switch_param(f, name))]
    value = params.pop(f.name)
    if isinstance(value, tuple):  # multiple=True or nargs=-1
        value = list(value)
    if _is_flag(f):
        value = (not f.default) if value else f.default
    if o.off and params.pop(_param_name(o.off[0])):
        value = None
    return value


def cli_fields(cls) -> list:
    """The fields of dataclass ``cls`` that are command options."""
    return [f for f in fields(cls) if option_of(f)]


def click_options(cls):
    """Decorator: a click option (or argument) per ``opt`` field of ``cls``; the command gets ``opts=cls(...)``."""
    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **params):
            opts = cls(**{f.name: _value(f, params) for f in cli_fields(cls)})
            return command(*args, opts=opts, **params)

        for f in reversed(cli_fields(cls)):
            for decorator in reversed(_decorators(f)):
                wrapper = decorator(wrapper)
        return wrapper

    return decorate


def check(opts):
    """BadInputError unless every ``opt`` field of ``opts`` is in its range or among its choices (None passes)."""
    for f in cli_fields(type(opts)):
        o, value = option_of(f), getattr(opts, f.name)
        if value is None:
            continue
        if o.choices and value not in o.choices:
            raise BadInputError(f"{flag_name(f)} must be one of {', '.join(map(str, o.choices))} (got {value!r})")
        problem = _range_problem(value, o.min, o.max, o.min_open)
        if problem:
            raise BadInputError(f"{flag_name(f)} {problem}")
    return opts
