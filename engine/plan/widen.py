"""Widen and narrow: the schema both old and new documents satisfy, and the data steps
that move every document to the new shape.

The widen–migrate–narrow pattern Convex recommends, computed: deploy ``widen(a, b)``
(Convex accepts it without rewriting anything, since every stored document already
matches), run ``data_steps_for(a, b, hints)``, then deploy ``b`` (the narrowing is simply
the target). Pure.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from engine.plan.datasteps import DataStep
from engine.plan.diff import diff
from engine.schema.models import (
    ArrayV,
    Consent,
    DbIndex,
    FieldDef,
    Float64V,
    MigrationOp,
    ObjectV,
    Schema,
    SearchIndex,
    StringV,
    Table,
)
from engine.schema.typeops import flatten, table_key, widen_fields

__all__ = ["MAX_INDEXES_PER_TABLE", "data_steps_for", "narrow", "table_key", "widen", "widen_all"]

MAX_INDEXES_PER_TABLE = 32  # documented limit (db + search + vector)
MAX_SEARCH_OR_VECTOR = 4


def _field_type(fields: dict[str, FieldDef], path: str) -> Any | None:
    """The validator at a dotted ``path``, or None when the path does not exist."""

    parts = path.split(".")
    current: dict[str, FieldDef] | None = fields
    found: Any = None
    for part in parts:
        if current is None or part not in current:
            return None
        found = current[part].type
        objs = [m for m in flatten(found) if isinstance(m, ObjectV)]
        current = {}
        for obj in objs:
            for k, f in obj.fields.items():
                current.setdefault(k, f)
    return found


def _valid_index(ix: Any, fields: dict[str, FieldDef]) -> bool:
    if isinstance(ix, DbIndex):
        return all(_field_type(fields, f) is not None for f in ix.fields)
    if not all(_field_type(fields, f) is not None for f in ix.filter_fields):
        return False
    if isinstance(ix, SearchIndex):
        return _field_type(fields, ix.search_field) == StringV()
    vec = _field_type(fields, ix.vector_field)
    return vec == ArrayV(element=Float64V())


def _merge_indexes(ia: Sequence[Any], ib: Sequence[Any], fields: dict[str, FieldDef],
                   limit: int) -> list[Any]:
    """``b``'s indexes, then ``a``'s that stay valid and do not clash (same name, or the
    same field list, which Convex rejects), within ``limit``."""

    out: list[Any] = [ix for ix in ib if _valid_index(ix, fields)]
    names = {ix.name for ix in out}
    keys = {ix.fields for ix in out if isinstance(ix, DbIndex)}
    for ix in ia:
        if len(out) >= limit or ix.name in names or not _valid_index(ix, fields):
            continue
        if isinstance(ix, DbIndex):
            if ix.fields in keys:
                continue
            keys.add(ix.fields)
        out.append(ix)
        names.add(ix.name)
    return out


def _widen_table(a: Table, b: Table) -> Table:
    fields = widen_fields(a.fields, b.fields)
    search = _merge_indexes(a.search_indexes, b.search_indexes, fields, MAX_SEARCH_OR_VECTOR)
    vector = _merge_indexes(a.vector_indexes, b.vector_indexes, fields, MAX_SEARCH_OR_VECTOR)
    room = MAX_INDEXES_PER_TABLE - len(search) - len(vector)
    db = _merge_indexes(a.indexes, b.indexes, fields, max(room, 0))
    # Built from already-validated parts: skip re-validation (planning hot path).
    return Table.model_construct(name=b.name, location=b.location, fields=fields,
                                 indexes=tuple(db), search_indexes=tuple(search),
                                 vector_indexes=tuple(vector))


def widen(a: Schema, b: Schema, *, covered: frozenset[str] = frozenset()) -> Schema:
    """A schema every document valid under ``a`` or ``b`` satisfies, and Convex accepts.

    Tables of either side are kept (``b``'s order first); shared tables merge field by
    field: a field on one side only becomes optional, differing types become a flattened
    union, optional wins. Indexes of both sides are kept while they stay valid: index
    fields exist, search fields are strings, vector fields are ``float64[]``.

    ``covered`` names tables whose ``b`` side already accepts ``a``'s documents (the
    planner knows this when ``b`` is a widening that includes an equal table).
    """

    tables: dict[str, Table] = {}
    for name in list(b.tables) + [n for n in a.tables if n not in b.tables]:
        ta, tb = a.tables.get(name), b.tables.get(name)
        if tb is None:
            tables[name] = a.tables[name]  # only in a (the names come from a and b)
        elif ta is None:
            tables[name] = tb
        elif name in covered or ta is tb or table_key(ta) == table_key(tb):
            tables[name] = tb
        else:
            tables[name] = _widen_table(ta, tb)
    return Schema.model_construct(tables=tables,
                                  schema_validation=a.schema_validation and b.schema_validation)


def widen_all(schemas: Sequence[Schema]) -> Schema:
    """The widening of a whole path of schemas (right fold: the last one's order wins)."""

    if not schemas:
        raise ValueError("widen_all needs at least one schema")
    out = schemas[-1]
    for s in reversed(schemas[:-1]):
        out = widen(s, out)
    return out


def narrow(a: Schema, b: Schema) -> Schema:
    """The narrowed schema of the pattern is the target itself."""

    return b


def data_steps_for(a: Schema, b: Schema, hints: Iterable[MigrationOp] = (),
                   consent: Consent = Consent(), *, label: str = "") -> list[DataStep]:
    """The data steps that make every document valid under ``a`` valid under ``b``.

    Raises ``UnsafeChange`` (a ``PlanError``) naming each table/field that needs a hint or
    consent the version file does not give (for example a required field added without a
    backfill).
    """

    d = diff(a, b, hints, consent)
    d.raise_if_blocked(label or "migration")
    return list(d.steps)

