"""Config dataclasses checked field by field: what a model directory's JSON holds is read back only when every field
has the type and range its dataclass declares, and an error names the field, the value found and what was expected.

Types come from the dataclass annotations (config_from_json checks them before building the config, so a config's
own rules never meet a string where a number belongs); ranges are each config's own `__post_init__`, written with
`at_least` / `one_of` / `within` below so the messages read alike.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


class ConfigError(ValueError):
    """A config field with a value of the wrong type or out of range; the message names the field."""


def _show(value: Any) -> str:
    """A value as the JSON file has it ("wide", null, [1, 2]), or its repr when it is not JSON."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _fail(name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{name} is {_show(value)}; expected {expected}")


# ---------------------------------------------------------------------------------------------------------------
# Types, from the annotations


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Each field's annotation, resolved (configs use `from __future__ import annotations`)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def describe(hint: Any) -> str:
    """What a value of type `hint` looks like in JSON, for an error message."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if hint is str:
        return "text"
    if origin is Literal:
        return "one of " + ", ".join(_show(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return "a list of " + ", ".join(describe(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    return getattr(hint, "__name__", str(hint))


def _plural(hint: Any) -> str:
    return {int: "whole numbers", float: "numbers", str: "texts", bool: "true/false values"}.get(hint, describe(hint))


def matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value (lists for tuples) fits the annotation `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if origin is Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
    if origin in (Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if origin is dict:
        return isinstance(value, dict)
    return True   # a type this checker does not know: the config's own rules decide


def _as_field(value: Any) -> Any:
    """JSON has no tuples: lists become tuples again (every sequence field of a config is a tuple, which keeps
    configs hashable and comparable)."""
    return tuple(_as_field(v) for v in value) if isinstance(value, list) else value


def config_from_json(cls: type[T], data: Any) -> T:
    """A config dataclass back from its JSON form (dataclasses.asdict), every field checked: ConfigError names the
    first field that is unknown, of the wrong type or out of range. Fields the JSON lacks take their defaults (a
    config written before the field existed)."""
    if not isinstance(data, dict):
        raise ConfigError(f"the {cls.__name__} is {_show(data)}; expected a JSON object of its fields")
    hints = field_types(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field {', '.join(unknown)}; its fields are {', '.join(hints)}")
    for name, value in data.items():
        if not matches(value, hints[name]):
            raise _fail(name, value, describe(hints[name]))
    try:
        return cls(**{k: _as_field(v) for k, v in data.items()})
    except ConfigError:
        raise
    except (ValueError, TypeError, ArithmeticError) as exc:   # a rule across fields, in the config's own words
        raise ConfigError(str(exc)) from None


# ---------------------------------------------------------------------------------------------------------------
# Ranges, for a config's __post_init__


def at_least(config: Any, minimum: float, *names: str) -> None:
    """Each named field (a number, or a list of numbers) is >= minimum."""
    for name in names:
        value = getattr(config, name)
        numbers = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(v, (int, float)) and v >= minimum for v in numbers) or not numbers:
            what = "a list of numbers" if isinstance(value, tuple) else "a number"
            raise _fail(name, value, f"{what} >= {minimum:g}")


def above(config: Any, bound: float, *names: str) -> None:
    """Each named field is a number > bound."""
    for name in names:
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and value > bound):
            raise _fail(name, value, f"a number > {bound:g}")


def one_of(config: Any, name: str, choices: tuple[Any, ...]) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise _fail(name, value, "one of " + ", ".join(_show(c) for c in choices))


def within(config: Any, name: str, low: float, high: float, high_open: bool = False) -> None:
    """low <= field <= high (or < high)."""
    value = getattr(config, name)
    ok = isinstance(value, (int, float)) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        raise _fail(name, value, f"a number from {low:g} to {high:g}" + (" (not included)" if high_open else ""))
