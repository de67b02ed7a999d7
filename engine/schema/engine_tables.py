"""The engine's own tables, added to every compiled user bundle.

Each deployment records on itself which versions were deployed to it and which data steps
ran, so the registry can be checked against (and rebuilt from) the fleet. App schemas may
not declare tables with these names.
"""

from __future__ import annotations

from engine.schema.models import (
    DbIndex,
    FieldDef,
    Float64V,
    LiteralV,
    Location,
    NullV,
    StringV,
    Table,
    UnionV,
)

__all__ = ["ENGINE_TABLES", "ENGINE_TABLE_NAMES"]

_STR = FieldDef(type=StringV())
_NUM = FieldDef(type=Float64V())

ENGINE_TABLES: dict[str, Table] = {
    "byodVersions": Table(
        name="byodVersions",
        location=Location.USER,
        fields={
            "version": _STR,
            "fingerprint": _STR,
            "kind": FieldDef(type=UnionV(members=(LiteralV(value="version"), LiteralV(value="widen")))),
            "planId": FieldDef(type=StringV(), optional=True),
            "appliedAt": _NUM,
        },
        indexes=(DbIndex(name="by_version", fields=("version",)),),
    ),
    "byodSteps": Table(
        name="byodSteps",
        location=Location.USER,
        fields={
            "stepId": _STR,
            "version": _STR,
            "status": FieldDef(type=UnionV(members=(LiteralV(value="running"), LiteralV(value="completed")))),
            "cursor": FieldDef(type=UnionV(members=(StringV(), NullV())), optional=True),
            "processed": _NUM,
            "updatedAt": _NUM,
        },
        indexes=(DbIndex(name="by_step", fields=("stepId",)),),
    ),
}

ENGINE_TABLE_NAMES = frozenset(ENGINE_TABLES)
