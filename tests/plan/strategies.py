"""Hypothesis strategies: small schemas, documents valid under them, and a target schema
derived from a source by random edits, together with the hints and consent that make the
edit plannable."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from engine.schema.models import (
    ArrayV,
    BooleanV,
    Consent,
    DbIndex,
    FieldDef,
    Float64V,
    LiteralV,
    MigrationOp,
    ObjectV,
    Schema,
    StringV,
    Table,
    UnionV,
)

LITS = ("a", "b", "c", "d")


def lit_union(values: tuple[str, ...]) -> Any:
    members = tuple(LiteralV(value=v) for v in values)
    return members[0] if len(members) == 1 else UnionV(members=members)


base_types = st.sampled_from([
    StringV(), Float64V(), BooleanV(), ArrayV(element=Float64V()),
    lit_union(("a", "b")), lit_union(("a", "b", "c")),
    ObjectV(fields={"x": FieldDef(type=StringV()), "y": FieldDef(type=Float64V(), optional=True)}),
    UnionV(members=(StringV(), Float64V())),
])


def value_for(t: Any) -> st.SearchStrategy[Any]:
    if isinstance(t, StringV):
        return st.text(max_size=5)
    if isinstance(t, Float64V):
        return st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False, width=32))
    if isinstance(t, BooleanV):
        return st.booleans()
    if isinstance(t, LiteralV):
        return st.just(t.value)
    if isinstance(t, ArrayV):
        return st.lists(value_for(t.element), max_size=3)
    if isinstance(t, UnionV):
        return st.one_of(*[value_for(m) for m in t.members])
    if isinstance(t, ObjectV):
        return doc_for_fields(t.fields)
    raise AssertionError(t)


def doc_for_fields(fields: dict[str, FieldDef]) -> st.SearchStrategy[dict[str, Any]]:
    parts = {}
    for name, f in fields.items():
        v = value_for(f.type)
        parts[name] = st.one_of(st.none(), v.map(lambda x: (x,))) if f.optional else v.map(lambda x: (x,))

    def build(values: dict[str, Any]) -> dict[str, Any]:
        return {k: v[0] for k, v in values.items() if v is not None}

    return st.fixed_dictionaries(parts).map(build)


@st.composite
def tables(draw: Any, name: str) -> Table:
    n = draw(st.integers(1, 4))
    fields = {f"f{i}": FieldDef(type=draw(base_types), optional=draw(st.booleans())) for i in range(n)}
    plain = [k for k, f in fields.items() if not isinstance(f.type, (ObjectV, ArrayV))]
    indexes = (DbIndex(name="by_f0", fields=("f0",)),) if "f0" in plain else ()
    return Table(name=name, fields=fields, indexes=indexes)


@st.composite
def schemas(draw: Any) -> Schema:
    names = draw(st.lists(st.sampled_from(["t1", "t2", "t3"]), min_size=1, max_size=3, unique=True))
    return Schema(tables={n: draw(tables(n)) for n in sorted(names)})


EDITS = ("add_optional", "add_required", "drop", "rename", "make_required", "make_optional",
         "narrow", "widen", "retype", "index", "none")


@st.composite
def evolutions(draw: Any) -> tuple[Schema, Schema, tuple[MigrationOp, ...], Consent, set[str]]:
    """(a, b, hints, consent, edited "table.field" names)."""

    a = draw(schemas())
    new_tables: dict[str, Table] = {}
    hints: list[MigrationOp] = []
    drops: list[str] = []
    drop_tables: list[str] = []
    edited: set[str] = set()
    for name, t in a.tables.items():
        if draw(st.integers(0, 9)) == 0:
            drop_tables.append(name)
            edited.add(f"{name}.*")
            continue
        fields = dict(t.fields)
        indexes = list(t.indexes)
        for k, edit in enumerate(draw(st.lists(st.sampled_from(EDITS), max_size=3))):
            names = sorted(fields)
            target = draw(st.sampled_from(names)) if names else None
            if target is not None and f"{name}.{target}" in edited:
                continue
            key = f"{name}.{target}"
            f = fields.get(target) if target else None
            if edit == "add_optional":
                fields[f"n{k}"] = FieldDef(type=draw(base_types), optional=True)
            elif edit == "add_required":
                ty = draw(base_types)
                fields[f"n{k}"] = FieldDef(type=ty)
                hints.append(MigrationOp(op="backfill", table=name, field=f"n{k}",
                                         value=draw(value_for(ty))))
                edited.add(f"{name}.n{k}")
            elif f is None:
                continue
            elif edit == "drop" and not any(target in ix.fields for ix in indexes):
                del fields[target]
                drops.append(key)
                edited.add(key)
            elif edit == "rename" and not any(target in ix.fields for ix in indexes):
                fields[f"r{k}"] = fields.pop(target)
                hints.append(MigrationOp(op="rename", table=name, from_field=target, field=f"r{k}"))
                edited |= {key, f"{name}.r{k}"}
            elif edit == "make_required" and f.optional:
                fields[target] = FieldDef(type=f.type)
                hints.append(MigrationOp(op="backfill", table=name, field=target,
                                         value=draw(value_for(f.type))))
                edited.add(key)
            elif edit == "make_optional":
                fields[target] = FieldDef(type=f.type, optional=True)
            elif edit == "narrow" and f.type == lit_union(("a", "b", "c")):
                fields[target] = FieldDef(type=lit_union(("a", "b")), optional=f.optional)
                hints.append(MigrationOp(op="map_values", table=name, field=target,
                                         mapping={"c": draw(st.sampled_from(["a", "b"]))}))
                edited.add(key)
            elif edit == "widen" and f.type == lit_union(("a", "b")):
                fields[target] = FieldDef(type=lit_union(("a", "b", "d")), optional=f.optional)
            elif edit == "retype" and f.type == StringV():
                fields[target] = FieldDef(type=Float64V(), optional=f.optional)
                hints.append(MigrationOp(op="convert", table=name, field=target, mapping={"1": 1},
                                         default=0))
                edited.add(key)
            elif edit == "index" and not isinstance(f.type, (ObjectV, ArrayV)):
                if all(ix.fields != (target,) for ix in indexes):
                    indexes.append(DbIndex(name=f"by_{target}_{k}", fields=(target,)))
        new_tables[name] = Table(name=name, fields=fields, indexes=tuple(indexes))
    if draw(st.booleans()):
        new_tables["t9"] = draw(tables("t9"))
    consent = Consent(drop_fields=tuple(drops), drop_tables=tuple(drop_tables))
    return a, Schema(tables=new_tables), tuple(hints), consent, edited
