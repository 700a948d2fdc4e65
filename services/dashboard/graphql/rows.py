"""Lazy views of database rows for GraphQL: a field is formatted (formatting.Shape, the REST
API's own formatting) only when the query asks for it, not every column of every row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.dashboard.formatting import Shape


class Row:
    __slots__ = ("_record", "_shape")

    def __init__(self, record: Mapping[str, Any], shape: Shape):
        self._record = record
        self._shape = shape

    def field(self, name: str) -> Any:
        if name == "wad":
            return RawRow(self._record, self._shape)
        return self._shape.field(self._record, name)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.field(name)
        except KeyError:
            raise AttributeError(name) from None


class RawRow:
    """`wad { ... }`: the raw integers of the WAD columns."""

    __slots__ = ("_record", "_shape")

    def __init__(self, record: Mapping[str, Any], shape: Shape):
        self._record = record
        self._shape = shape

    def __getattr__(self, name: str) -> Any:
        try:
            return self._shape.raw(self._record, name)
        except KeyError:
            raise AttributeError(name) from None
