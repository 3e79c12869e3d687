"""Range checks for config.json fields, run before anything is built from a config.

Every size a config can set is bounded (generously: several times the largest Kandinsky model), so a corrupt
or hostile config.json gets a message naming the field, its value and the allowed range instead of a
ZeroDivisionError deep in a constructor, a build that runs for minutes, or a terabyte allocation. The
loader adds the file's path to the message (`config_error`). Shared by every config dataclass.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any


class ConfigRangeError(ValueError):
    """A config field holds a value of the wrong type or outside its allowed range."""


def _fail(where: str, key: str, value: Any, allowed: str) -> None:
    raise ConfigRangeError(f"{where}: {key}={value!r} is out of range; allowed: {allowed}.")


def check_int(where: str, key: str, value: Any, low: int, high: int) -> int:
    """An integer field in [low, high] (`where` names the config, e.g. "UNet config")."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(where, key, value, f"an integer from {low} to {high}")
    return value


def check_optional_int(where: str, key: str, value: Any, low: int, high: int) -> int | None:
    return None if value is None else check_int(where, key, value, low, high)


def check_float(where: str, key: str, value: Any, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> float:
    """A finite number in the interval low..high (ends excluded where `*_open`)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        _fail(where, key, value, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")
    return float(value)


def check_bool(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(where, key, value, "true or false")
    return value


def check_int_list(where: str, key: str, values: Any, low: int, high: int, max_len: int) -> tuple[int, ...]:
    """A non-empty list of at most `max_len` integers, each in [low, high]."""
    if not isinstance(values, (list, tuple)) or not 1 <= len(values) <= max_len:
        _fail(where, key, values, f"a list of 1 to {max_len} integers from {low} to {high}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            _fail(where, key, list(values), f"a list of 1 to {max_len} integers from {low} to {high}")
    return tuple(values)


def config_error(path: str | Path, error: Exception) -> ValueError:
    """`error` raised while reading the config at `path`, with the file named (raise it `from error`)."""
    return ValueError(f"{path}: {error} Fix or re-download this file.")
