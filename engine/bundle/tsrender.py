"""Rendering the schema model as TypeScript source (``convex/schema.ts`` expressions).

Pure string building, kept apart from the bundle assembly so the templates stay simple and
the formatting rules (one place) stay consistent: short validators on one line, anything
that would pass the line width broken over lines with two-space indentation.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Final, Union

from engine.errors import CompileError
from engine.schema.models import (
    AnyV,
    ArrayV,
    BooleanV,
    BytesV,
    DbIndex,
    FieldDef,
    Float64V,
    IdV,
    Int64V,
    LiteralV,
    NullV,
    ObjectV,
    RecordV,
    SearchIndex,
    StringV,
    Table,
    UnionV,
    VectorIndex,
)

__all__ = ["render_fields", "render_table", "render_validator", "ts_key", "ts_string"]

_WIDTH = 88
_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_MAX_SAFE = 2**53
_INT64 = (-(2**63), 2**63 - 1)

_SIMPLE: Final[dict[type, str]] = {
    StringV: "v.string()",
    Float64V: "v.number()",
    Int64V: "v.int64()",
    BooleanV: "v.boolean()",
    NullV: "v.null()",
    BytesV: "v.bytes()",
    AnyV: "v.any()",
}


def ts_string(value: str) -> str:
    """A TypeScript string literal (JSON syntax, ASCII only, so the output is stable)."""

    return json.dumps(value, ensure_ascii=True)


def ts_key(name: str) -> str:
    """An object-literal key. ``__proto__`` must be computed, or it would set the prototype
    instead of defining a property."""

    if name == "__proto__":
        return '["__proto__"]'
    return name if _IDENT.match(name) else ts_string(name)


def _literal(lit: LiteralV, where: str) -> str:
    value = lit.value
    if lit.bigint:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (_INT64[0] <= value <= _INT64[1])
        ):
            raise CompileError(f"{where}: int64 literal {value!r} is not a 64-bit integer")
        return f"v.literal({value}n)"
    if isinstance(value, bool):
        return f"v.literal({'true' if value else 'false'})"
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE:
            raise CompileError(
                f"{where}: number literal {value} cannot be represented exactly as a "
                "float64; declare it as an int64 literal (e.g. 7n)"
            )
        return f"v.literal({value})"
    if isinstance(value, float):
        if not math.isfinite(value) or (value == 0.0 and math.copysign(1.0, value) < 0):
            raise CompileError(f"{where}: number literal {value!r} is not supported")
        if value.is_integer() and abs(value) <= _MAX_SAFE:
            return f"v.literal({int(value)})"
        return f"v.literal({value!r})"
    return f"v.literal({ts_string(value)})"


# A tiny layout tree: atoms, calls and object literals. A call goes on one line when it
# fits the width, otherwise one argument per line; a call whose only argument is an object
# literal hugs it (``v.object({``); non-empty object literals always take one line per key.


@dataclass(frozen=True)
class _Obj:
    entries: tuple[tuple[str, "_Doc"], ...]


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple["_Doc", ...]


_Doc = Union[str, _Obj, _Call]


def _flat(doc: _Doc) -> str | None:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, _Obj):
        return "{}" if not doc.entries else None
    parts = [_flat(a) for a in doc.args]
    if any(p is None for p in parts):
        return None
    return f"{doc.name}({', '.join(p for p in parts if p is not None)})"


def _layout(doc: _Doc, indent: str, used: int) -> str:
    flat = _flat(doc)
    if flat is not None and (used + len(flat) <= _WIDTH or isinstance(doc, str)):
        return flat
    inner = indent + "  "
    if isinstance(doc, _Obj):
        lines = [
            f"{inner}{key}: {_layout(value, inner, len(inner) + len(key) + 2)},\n"
            for key, value in doc.entries
        ]
        return "{\n" + "".join(lines) + indent + "}"
    assert isinstance(doc, _Call)
    if len(doc.args) == 1 and isinstance(doc.args[0], _Obj):
        return f"{doc.name}({_layout(doc.args[0], indent, used + len(doc.name) + 1)})"
    lines = [f"{inner}{_layout(arg, inner, len(inner))},\n" for arg in doc.args]
    return f"{doc.name}(\n" + "".join(lines) + indent + ")"


def _fields_doc(fields: dict[str, FieldDef], where: str) -> _Obj:
    entries = []
    for name, field in fields.items():
        doc = _validator_doc(field.type, f"{where}.{name}")
        if field.optional:
            doc = _Call("v.optional", (doc,))
        entries.append((ts_key(name), doc))
    return _Obj(tuple(entries))


def _validator_doc(validator: object, where: str) -> _Doc:
    simple = _SIMPLE.get(type(validator))
    if simple is not None:
        return simple
    if isinstance(validator, IdV):
        return f"v.id({ts_string(validator.table)})"
    if isinstance(validator, LiteralV):
        return _literal(validator, where or "literal")
    if isinstance(validator, ArrayV):
        return _Call("v.array", (_validator_doc(validator.element, where + "[]"),))
    if isinstance(validator, ObjectV):
        return _Call("v.object", (_fields_doc(validator.fields, where),))
    if isinstance(validator, RecordV):
        return _Call(
            "v.record",
            (
                _validator_doc(validator.keys, where + "<keys>"),
                _validator_doc(validator.values, where + "<values>"),
            ),
        )
    if isinstance(validator, UnionV):
        return _Call("v.union", tuple(_validator_doc(m, where) for m in validator.members))
    raise CompileError(f"{where}: unsupported validator {type(validator).__name__}")


def render_fields(fields: dict[str, FieldDef], indent: str = "", where: str = "") -> str:
    """An object literal of field validators (the argument of ``v.object``/``defineTable``)."""

    return _layout(_fields_doc(fields, where), indent, len(indent))


def render_validator(validator: object, indent: str = "", where: str = "") -> str:
    """The ``v.*`` expression of one validator, laid out to start at column ``len(indent)``."""

    return _layout(_validator_doc(validator, where), indent, len(indent))


def _str_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(ts_string(i) for i in items) + "]"


def _options(pairs: list[tuple[str, str]], indent: str, used: int) -> str:
    flat = "{ " + ", ".join(f"{k}: {v}" for k, v in pairs) + " }"
    if used + len(flat) <= _WIDTH:
        return flat
    inner = indent + "  "
    return "{\n" + "".join(f"{inner}{k}: {v},\n" for k, v in pairs) + indent + "}"


def _index_call(index: DbIndex | SearchIndex | VectorIndex, indent: str) -> str:
    name = ts_string(index.name)
    pairs: list[tuple[str, str]]
    if isinstance(index, DbIndex):
        method = "index"
        if not index.staged:
            head = f".{method}({name}, "
            return head + _str_list(index.fields) + ")"
        pairs = [("fields", _str_list(index.fields))]
    elif isinstance(index, SearchIndex):
        method = "searchIndex"
        pairs = [
            ("searchField", ts_string(index.search_field)),
            ("filterFields", _str_list(index.filter_fields)),
        ]
    else:
        method = "vectorIndex"
        pairs = [
            ("vectorField", ts_string(index.vector_field)),
            ("dimensions", str(int(index.dimensions))),
            ("filterFields", _str_list(index.filter_fields)),
        ]
    if index.staged:
        pairs.append(("staged", "true"))
    head = f".{method}({name}, "
    return head + _options(pairs, indent, len(indent) + len(head) + 1) + ")"


def render_table(table: Table, indent: str = "  ") -> str:
    """``defineTable({...}).index(...)...`` for one table, without the trailing comma."""

    text = f"defineTable({render_fields(table.fields, indent, table.name)})"
    call_indent = indent + "  "
    calls = [
        *(_index_call(i, call_indent) for i in table.indexes),
        *(_index_call(i, call_indent) for i in table.search_indexes),
        *(_index_call(i, call_indent) for i in table.vector_indexes),
    ]
    for call in calls:
        text += f"\n{indent}  {call}"
    return text
