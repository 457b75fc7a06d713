"""Help text of configuration fields, kept on the dataclass fields themselves (as peft does).

A config dataclass declares each field as `field(default=..., metadata={"help": "..."})`; a
command-line flag that sets the field takes its `help=` from `field_help(Config, "name")`, so
the flag and the field never describe the same setting two ways.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def field_help(config: Any, name: str) -> str:
    """The `help` metadata of field `name` of the dataclass `config` (a class or an instance).

    Raises:
        TypeError: `config` is not a dataclass.
        KeyError: it has no field `name`, or that field has no help.
    """
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{config!r} is not a dataclass")
    found = {f.name: f for f in dataclasses.fields(config)}
    if name not in found:
        raise KeyError(f"{_name(config)} has no field {name!r}; it has {sorted(found)}")
    text = found[name].metadata.get("help")
    if not text:
        raise KeyError(f"{_name(config)}.{name} has no help metadata")
    return str(text)


def _name(config: Any) -> str:
    return getattr(config, "__name__", type(config).__name__)


__all__ = ["field_help"]
