"""From a Convex schema export (what ``defineSchema(...).export()`` returns) back to the
engine's models, and from a schema to the text of a version file.

The inverse of the models' ``to_convex_json``: ``byod init`` evaluates an existing app's
``convex/schema.ts`` with the real ``convex`` library and turns the export into version 1.
Pure: JSON in, models and text out. Anything the version format cannot say (a table
declared without a validator, or whose document is not an object) is a ``VersionError``
naming the table.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any, Mapping

from engine.errors import VersionError
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
    Location,
    NullV,
    ObjectV,
    RecordV,
    Schema,
    SearchIndex,
    StringV,
    Table,
    UnionV,
    VectorIndex,
)
from engine.schema.types import format_type

__all__ = ["render_version_file", "schema_from_export", "validator_from_json"]

_SIMPLE = {"string": StringV, "number": Float64V, "bigint": Int64V, "boolean": BooleanV,
           "null": NullV, "bytes": BytesV, "any": AnyV}
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_()\[\]]*$")


def _field(j: Mapping[str, Any], where: str) -> FieldDef:
    return FieldDef(type=validator_from_json(j["fieldType"], where),
                    optional=bool(j.get("optional", False)))


def validator_from_json(j: Mapping[str, Any], where: str = "") -> Any:
    """One validator from its export JSON (``{"type": "string"}``, ...)."""

    kind = j.get("type") if isinstance(j, Mapping) else None
    if kind in _SIMPLE:
        return _SIMPLE[kind]()
    if kind == "id":
        return IdV(table=str(j["tableName"]))
    if kind == "literal":
        value = j["value"]
        if isinstance(value, Mapping) and "$integer" in value:
            (n,) = struct.unpack("<q", base64.b64decode(value["$integer"]))
            return LiteralV(value=n, bigint=True)
        return LiteralV(value=value)
    if kind == "array":
        return ArrayV(element=validator_from_json(j["value"], where))
    if kind == "object":
        return ObjectV(fields={name: _field(f, f"{where}.{name}")
                               for name, f in j["value"].items()})
    if kind == "record":
        return RecordV(keys=validator_from_json(j["keys"], where),
                       values=validator_from_json(j["values"]["fieldType"], where))
    if kind == "union":
        return UnionV(members=tuple(validator_from_json(m, where) for m in j["value"]))
    raise VersionError(f"{where}: the validator {dict(j) if isinstance(j, Mapping) else j!r} "
                       "has no equivalent in the version format")


def _table(j: Mapping[str, Any], location: Location) -> Table:
    name = str(j["tableName"])
    doc = j.get("documentType")
    if not isinstance(doc, Mapping) or doc.get("type") != "object":
        what = "no validator" if doc is None or doc.get("type") == "any" else \
            f"a {doc.get('type')} document"
        raise VersionError(f"table {name!r} has {what}; the version format needs its fields: "
                           f"declare them in schema.ts (defineTable({{...}})) and run init again")

    def db(items: Any, staged: bool) -> list[DbIndex]:
        return [DbIndex(name=i["indexDescriptor"], fields=tuple(i["fields"]), staged=staged)
                for i in items or ()]

    def search(items: Any, staged: bool) -> list[SearchIndex]:
        return [SearchIndex(name=i["indexDescriptor"], search_field=i["searchField"],
                            filter_fields=tuple(i.get("filterFields", ())), staged=staged)
                for i in items or ()]

    def vector(items: Any, staged: bool) -> list[VectorIndex]:
        return [VectorIndex(name=i["indexDescriptor"], vector_field=i["vectorField"],
                            dimensions=int(i["dimensions"]),
                            filter_fields=tuple(i.get("filterFields", ())), staged=staged)
                for i in items or ()]

    return Table(
        name=name, location=location,
        fields={f: _field(v, f"{name}.{f}") for f, v in doc["value"].items()},
        indexes=(*db(j.get("indexes"), False), *db(j.get("stagedDbIndexes"), True)),
        search_indexes=(*search(j.get("searchIndexes"), False),
                        *search(j.get("stagedSearchIndexes"), True)),
        vector_indexes=(*vector(j.get("vectorIndexes"), False),
                        *vector(j.get("stagedVectorIndexes"), True)))


def schema_from_export(export: Mapping[str, Any], location: Location = Location.USER) -> Schema:
    """The schema an export describes, every table at ``location``."""

    tables = [_table(t, location) for t in export.get("tables", ())]
    return Schema(tables={t.name: t for t in tables},
                  schema_validation=bool(export.get("schemaValidation", True)))


def _scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when it cannot be misread, else single-quoted."""

    return text if _PLAIN.match(text) else "'" + text.replace("'", "''") + "'"


def _list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(_scalar(i) for i in items) + "]"


def render_version_file(schema: Schema, *, description: str) -> str:
    """The text of a first version file (no parents, no hints) declaring ``schema``."""

    lines = [f"description: {_scalar(description) if description else chr(39) * 2}",
             "parents: []",
             f"schemaValidation: {'true' if schema.schema_validation else 'false'}",
             "", "tables:"]
    for name, t in schema.tables.items():
        lines += [f"  {name}:", f"    location: {t.location.value}"]
        lines.append("    fields:" if t.fields else "    fields: {}")
        for field, f in t.fields.items():
            key = f"{field}?" if f.optional else field
            lines.append(f"      {key}: {_scalar(format_type(f.type))}")
        if t.indexes:
            lines.append("    indexes:")
            for i in t.indexes:
                value = (f"{{fields: {_list(i.fields)}, staged: true}}" if i.staged
                         else _list(i.fields))
                lines.append(f"      {i.name}: {value}")
        if t.search_indexes:
            lines.append("    search_indexes:")
            for s in t.search_indexes:
                parts = [f"field: {_scalar(s.search_field)}"]
                if s.filter_fields:
                    parts.append(f"filters: {_list(s.filter_fields)}")
                if s.staged:
                    parts.append("staged: true")
                lines.append(f"      {s.name}: {{{', '.join(parts)}}}")
        if t.vector_indexes:
            lines.append("    vector_indexes:")
            for vi in t.vector_indexes:
                parts = [f"field: {_scalar(vi.vector_field)}", f"dimensions: {vi.dimensions}"]
                if vi.filter_fields:
                    parts.append(f"filters: {_list(vi.filter_fields)}")
                if vi.staged:
                    parts.append("staged: true")
                lines.append(f"      {vi.name}: {{{', '.join(parts)}}}")
        lines.append("")
    lines += ["migrations: []", "consent: {}", ""]
    return "\n".join(lines)
