"""The engine's model of a Convex schema and of one schema version.

Pure data (pydantic, frozen): no file or network access here. Loading lives in
``loader.py``, rules in ``rules.py``. Every validator can render itself as the JSON that
``defineSchema(...).export()`` of the real ``convex`` library produces, which is how the
compiled bundles are checked against the engine's own model.
"""

from __future__ import annotations

import base64
import struct
from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AnyValidator",
    "ArrayV",
    "BooleanV",
    "BytesV",
    "Consent",
    "DbIndex",
    "FieldDef",
    "Float64V",
    "LintSettings",
    "IdV",
    "Int64V",
    "LiteralV",
    "Location",
    "MigrationOp",
    "NullV",
    "ObjectV",
    "RecordV",
    "Schema",
    "SchemaVersion",
    "SearchIndex",
    "SourceInfo",
    "StringV",
    "Table",
    "UnionV",
    "Validator",
    "VectorIndex",
    "WARNING_CODES",
    "AnyV",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------------------
# Validators (one class per Convex validator type; ``kind`` is the discriminator)
# ---------------------------------------------------------------------------------------


class StringV(_Frozen):
    kind: Literal["string"] = "string"

    def to_convex_json(self) -> dict[str, Any]:
        return {"type": "string"}


class Float64V(_Frozen):
    """``v.number()`` / ``v.float64()``."""

    kind: Literal["number"] = "number"

    def to_convex_json(self) -> dict[str, Any]:
        return {"type": "number"}


class Int64V(_Frozen):
    """``v.int64()`` / ``v.bigint()``."""

    kind: Literal["int64"] = "int64"

    def to_convex_json(self) -> dict[str, Any]:
        return {"type": "bigint"}


class BooleanV(_Frozen):
    kind: Literal["boolean"] = "boolean"

    def to_convex_json(self) -> dict[str, Any]:
        return {"type": "boolean"}


class NullV(_Frozen):
    kind: Literal["null"] = "null"

    def to_convex_json(self) -> dict[str, Any]:
        return {"type": "null"}


class BytesV(_Frozen):
    kind: Literal["bytes"] = "bytes"

    def to_convex_json(self) -> dict[str, Any]:
        return {"type": "bytes"}


class AnyV(_Frozen):
    kind: Literal["any"] = "any"

    def to_convex_json(self) -> dict[str, Any]:
        return {"type": "any"}


class IdV(_Frozen):
    """``v.id(table)``: a document id of ``table`` on the same deployment."""

    kind: Literal["id"] = "id"
    table: str

    def to_convex_json(self) -> dict[str, Any]:
        return {"type": "id", "tableName": self.table}


class LiteralV(_Frozen):
    """``v.literal(x)``; ``bigint`` marks an int64 literal (``5n`` in TypeScript)."""

    kind: Literal["literal"] = "literal"
    value: Union[bool, int, float, str]
    bigint: bool = False

    def _identity(self) -> tuple[bool, Any, bool]:
        # Python has True == 1, Convex does not: a boolean literal never equals a number
        return (isinstance(self.value, bool), self.value, self.bigint)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LiteralV):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def to_convex_json(self) -> dict[str, Any]:
        if self.bigint:
            raw = struct.pack("<q", int(self.value))
            return {"type": "literal", "value": {"$integer": base64.b64encode(raw).decode()}}
        return {"type": "literal", "value": self.value}


class ArrayV(_Frozen):
    kind: Literal["array"] = "array"
    element: "Validator"

    def to_convex_json(self) -> dict[str, Any]:
        return {"type": "array", "value": self.element.to_convex_json()}


class FieldDef(_Frozen):
    """One field of an object: its validator and whether it may be absent."""

    type: "Validator"
    optional: bool = False

    def to_convex_json(self) -> dict[str, Any]:
        return {"fieldType": self.type.to_convex_json(), "optional": self.optional}


class ObjectV(_Frozen):
    kind: Literal["object"] = "object"
    fields: dict[str, FieldDef] = Field(default_factory=dict)

    def to_convex_json(self) -> dict[str, Any]:
        return {
            "type": "object",
            "value": {name: f.to_convex_json() for name, f in self.fields.items()},
        }


class RecordV(_Frozen):
    """``v.record(keys, values)``; keys must be string-like (string, id or their union)."""

    kind: Literal["record"] = "record"
    keys: "Validator"
    values: "Validator"

    def to_convex_json(self) -> dict[str, Any]:
        return {
            "type": "record",
            "keys": self.keys.to_convex_json(),
            "values": {"fieldType": self.values.to_convex_json(), "optional": False},
        }


class UnionV(_Frozen):
    kind: Literal["union"] = "union"
    members: tuple["Validator", ...]

    def to_convex_json(self) -> dict[str, Any]:
        return {"type": "union", "value": [m.to_convex_json() for m in self.members]}


Validator = Annotated[
    Union[
        StringV,
        Float64V,
        Int64V,
        BooleanV,
        NullV,
        BytesV,
        AnyV,
        IdV,
        LiteralV,
        ArrayV,
        ObjectV,
        RecordV,
        UnionV,
    ],
    Field(discriminator="kind"),
]
AnyValidator = Union[
    StringV, Float64V, Int64V, BooleanV, NullV, BytesV, AnyV, IdV, LiteralV, ArrayV, ObjectV,
    RecordV, UnionV,
]

for _cls in (ArrayV, FieldDef, ObjectV, RecordV, UnionV):
    _cls.model_rebuild()


# ---------------------------------------------------------------------------------------
# Tables and schemas
# ---------------------------------------------------------------------------------------


class Location(str, Enum):
    """Where a table lives: on each user's own deployment or on the app's main one."""

    USER = "user"
    MAIN = "main"


class DbIndex(_Frozen):
    name: str
    fields: tuple[str, ...]
    staged: bool = False

    def to_convex_json(self) -> dict[str, Any]:
        return {"indexDescriptor": self.name, "fields": list(self.fields)}


class SearchIndex(_Frozen):
    name: str
    search_field: str
    filter_fields: tuple[str, ...] = ()
    staged: bool = False

    def to_convex_json(self) -> dict[str, Any]:
        return {
            "indexDescriptor": self.name,
            "searchField": self.search_field,
            "filterFields": list(self.filter_fields),
        }


class VectorIndex(_Frozen):
    name: str
    vector_field: str
    dimensions: int
    filter_fields: tuple[str, ...] = ()
    staged: bool = False

    def to_convex_json(self) -> dict[str, Any]:
        return {
            "indexDescriptor": self.name,
            "vectorField": self.vector_field,
            "dimensions": self.dimensions,
            "filterFields": list(self.filter_fields),
        }


class Table(_Frozen):
    """One table: its document fields (an object validator) and its indexes."""

    name: str
    location: Location = Location.USER
    fields: dict[str, FieldDef] = Field(default_factory=dict)
    indexes: tuple[DbIndex, ...] = ()
    search_indexes: tuple[SearchIndex, ...] = ()
    vector_indexes: tuple[VectorIndex, ...] = ()

    @property
    def document(self) -> ObjectV:
        return ObjectV(fields=self.fields)

    def to_convex_json(self) -> dict[str, Any]:
        """The table entry exactly as ``defineSchema(...).export()`` emits it."""

        return {
            "tableName": self.name,
            "indexes": [i.to_convex_json() for i in self.indexes if not i.staged],
            "stagedDbIndexes": [i.to_convex_json() for i in self.indexes if i.staged],
            "searchIndexes": [i.to_convex_json() for i in self.search_indexes if not i.staged],
            "stagedSearchIndexes": [
                i.to_convex_json() for i in self.search_indexes if i.staged
            ],
            "vectorIndexes": [i.to_convex_json() for i in self.vector_indexes if not i.staged],
            "stagedVectorIndexes": [
                i.to_convex_json() for i in self.vector_indexes if i.staged
            ],
            "documentType": self.document.to_convex_json(),
        }


class Schema(_Frozen):
    """A whole schema: every table, wherever it lives."""

    tables: dict[str, Table] = Field(default_factory=dict)
    schema_validation: bool = True

    def located(self, location: Location) -> "Schema":
        """The part of this schema that is deployed to one kind of deployment."""

        return Schema(
            tables={n: t for n, t in self.tables.items() if t.location == location},
            schema_validation=self.schema_validation,
        )

    def to_convex_json(self) -> dict[str, Any]:
        """The schema JSON of ``defineSchema(...).export()`` for the tables given.

        Callers usually want ``schema.located(Location.USER).to_convex_json()``: only
        user-located tables are deployed to a user's deployment.
        """

        return {
            "tables": [t.to_convex_json() for t in self.tables.values()],
            "schemaValidation": self.schema_validation,
        }


# ---------------------------------------------------------------------------------------
# Migration hints (what the engine cannot infer) and consent
# ---------------------------------------------------------------------------------------


class MigrationOp(_Frozen):
    """One declarative data-migration hint from a version file.

    ``op`` is one of: ``backfill`` (set ``field`` to ``value`` where missing),
    ``rename`` (``from_field`` → ``field``), ``copy`` (``from_field`` → ``field``, keeping
    the source), ``map_values`` (``mapping`` old → new, optional ``default``),
    ``convert`` (type change of ``field`` through ``mapping`` / ``default`` or ``code``),
    ``drop_field``, ``delete_rows`` (where ``where`` matches), ``custom`` (``code``: a
    TypeScript per-document transform body). The planner decides which edge an op applies
    to; unknown combinations are reported by the rules, not guessed.
    """

    op: Literal[
        "backfill", "rename", "copy", "map_values", "convert", "drop_field", "delete_rows",
        "custom",
    ]
    table: str
    field: str | None = None
    from_field: str | None = None
    value: Any = None
    mapping: dict[str, Any] | None = None
    default: Any = None
    where: dict[str, Any] | None = None
    code: str | None = None
    description: str | None = None


class Consent(_Frozen):
    """Explicit consent for destructive changes: ``table`` or ``table.field`` entries."""

    drop_tables: tuple[str, ...] = ()
    drop_fields: tuple[str, ...] = ()
    delete_rows: tuple[str, ...] = ()


#: The lint codes ``byod check`` reports as warnings (docs/lint-codes.md); only these can be
#: acknowledged in a version file's ``lint`` key.
WARNING_CODES: frozenset[str] = frozenset({
    "BYOD-W119", "BYOD-W124", "BYOD-W128", "BYOD-W138", "BYOD-W145", "BYOD-W140", "BYOD-W142",
    "BYOD-W147", "BYOD-W148", "BYOD-W149", "BYOD-W157",
})


class LintSettings(_Frozen):
    """Per-version lint settings: ``acknowledge`` maps a warning code (``BYOD-W140``) to
    the reason it is accepted in this version. ``byod check`` stops printing that code's
    warnings for this version and counts them as acknowledged instead; errors can never be
    acknowledged (the loader rejects an error code here). ``ignore`` lists warning codes
    this version does not report at all: stricter-than-Convex opinions it opts out of."""

    acknowledge: dict[str, str] = Field(default_factory=dict)
    ignore: tuple[str, ...] = ()


class SourceInfo(_Frozen):
    """Where a version came from, so every problem can name its file and line.

    ``lines`` maps a dotted location inside the file (``tables.messages.fields.embedding``)
    to its 1-based line number. Not part of the fingerprint.
    """

    path: str
    lines: dict[str, int] = Field(default_factory=dict)

    def line_of(self, location: str) -> int | None:
        """The line of ``location`` or of its nearest ancestor that has one."""

        parts = location.split(".")
        while parts:
            line = self.lines.get(".".join(parts))
            if line is not None:
                return line
            parts.pop()
        return None


class SchemaVersion(_Frozen):
    """One version file: identity, place in the graph, the whole schema, and hints."""

    id: str
    number: int
    parents: tuple[str, ...] = ()
    description: str = ""
    schema_: Schema = Field(alias="schema")
    migrations: tuple[MigrationOp, ...] = ()
    consent: Consent = Field(default_factory=Consent)
    lint: LintSettings = Field(default_factory=LintSettings)
    source: SourceInfo | None = Field(default=None, exclude=True)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @property
    def schema(self) -> Schema:  # type: ignore[override]  # pydantic: deprecated BaseModel.schema()
        return self.schema_
