"""One base for the typed records edgenas writes as JSON and reads back: products, reports, verdicts.

A record is a frozen dataclass. `to_dict()` writes it, nested records included, as JSON types; `from_dict()` reads
it back from the field types themselves, so a field that holds a record, a list of them or an optional one comes
back typed without a hand-written reader. A field added later has a default, so a record written before it reads.
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, fields
from functools import lru_cache

from edgenas.errors import BadInput
from edgenas.jsonio import dataclass_fields


class Record:
    """Mixin for frozen dataclasses written to JSON and read back."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "record"):
        if not isinstance(d, dict):
            raise BadInput(f"{where}: expected {cls.__name__} as a JSON object, found {d!r}")
        kwargs = dataclass_fields(cls, d, where, cls.__name__)
        hints = _hints(cls)
        return cls(**{name: read_typed(hints[name], value, where) for name, value in kwargs.items()})


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return {f.name: typing.get_type_hints(cls)[f.name] for f in fields(cls)}


def read_typed(tp, value, where: str):
    """`value` as JSON held it, made the type `tp` names where that is a record (or holds records)."""
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return read_typed(inner[0], value, where) if len(inner) == 1 else value
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value, where)
    if origin is list and args and isinstance(value, list):
        return [read_typed(args[0], v, where) for v in value]
    if origin is tuple and isinstance(value, list):
        return tuple(read_typed(args[0], v, where) for v in value) if len(args) == 2 and args[1] is Ellipsis else tuple(value)
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {k: read_typed(args[1], v, where) for k, v in value.items()}
    return value
