"""A ``params.yaml`` value's YAML type checked against its config field's annotation, and
refused in words a reader of the file uses ("a whole number", "a list")."""

from __future__ import annotations

from types import UnionType
from typing import Any, get_args, get_origin

from stockcast.errors import ConfigError

# What a reader of params.yaml calls each type a key can take.
TYPE_WORDS = {
    int: "a whole number",
    float: "a number",
    str: "a string",
    bool: "true or false",
    type(None): "null",
    tuple: "a list",
    dict: "a mapping",
}


def check_type(name: str, value: Any, expected: Any) -> None:
    """Refuse a value of the wrong YAML type before any rule compares it (a string where a
    number belongs would otherwise fail as ``'<=' not supported between 'str' and 'int'``).

    Raises:
        ConfigError: names the key (and the list item), the value, its type and the type
            expected.
    """
    item = _list_item(expected)
    if item is not None and isinstance(value, list | tuple):
        for k, v in enumerate(value):
            check_type(f"{name}[{k}]", v, item)
        return
    if _type_fits(value, expected):
        return
    wanted = " or ".join(TYPE_WORDS.get(t, t.__name__) for t in _outer_types(expected))
    given = TYPE_WORDS.get(type(value), type(value).__name__)
    hint = ""
    if isinstance(value, str) and float in _outer_types(expected):
        hint = " (YAML reads 2e-3 as text: write 0.002 or 2.0e-3)"
    raise ConfigError(f"{name}={value!r} is {given}; expected {wanted}{hint}")


def _list_item(expected: Any) -> Any | None:
    """The item type of ``tuple[X, ...]`` (alone or in a union with None), else None."""
    for option in get_args(expected) if isinstance(expected, UnionType) else (expected,):
        if get_origin(option) is tuple:
            return get_args(option)[0]
    return None


def _outer_types(expected: Any) -> tuple[type, ...]:
    args = get_args(expected) if isinstance(expected, UnionType) else (expected,)
    return tuple(get_origin(a) or a for a in args)


def _type_fits(value: Any, expected: Any) -> bool:
    if isinstance(expected, UnionType):
        return any(_type_fits(value, option) for option in get_args(expected))
    if expected is Any:
        return True
    origin = get_origin(expected)
    if origin is tuple:  # tuple[X, ...]; YAML gives a list
        (item, *_) = get_args(expected)
        return isinstance(value, list | tuple) and all(_type_fits(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is float:  # YAML writes 1 for 1.0
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)
