"""Unit tests for the diff: every code, its classification, hints, consent, inverses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.errors import PlanError
from engine.plan.diff import CODES, diff
from engine.plan.widen import data_steps_for
from engine.schema.models import (
    ArrayV,
    Consent,
    DbIndex,
    FieldDef,
    Float64V,
    LiteralV,
    Location,
    MigrationOp,
    Schema,
    SearchIndex,
    StringV,
    Table,
    UnionV,
    VectorIndex,
)

S, N = FieldDef(type=StringV()), FieldDef(type=Float64V())
OS, ON = FieldDef(type=StringV(), optional=True), FieldDef(type=Float64V(), optional=True)


def lits(*values: str, optional: bool = False) -> FieldDef:
    return FieldDef(type=UnionV(members=tuple(LiteralV(value=v) for v in values)), optional=optional)


def schema(**tables: Table) -> Schema:
    return Schema(tables=tables)


def table(name: str = "t", **fields: FieldDef) -> Table:
    return Table(name=name, fields=fields)


def codes(d) -> list[tuple[str, str]]:
    return [(c.code, c.status()) for c in d.changes]


def test_table_added_and_removed() -> None:
    a, b = schema(t=table(x=S)), schema(t=table(x=S), u=table("u", y=N))
    d = diff(a, b)
    assert codes(d) == [("BYOD-D101", "safe")]
    back = diff(b, a)
    assert codes(back) == [("BYOD-D102", "needs consent")]
    assert back.blocking
    ok = diff(b, a, consent=Consent(drop_tables=("u",)))
    assert codes(ok) == [("BYOD-D102", "consented")]
    assert [s.op for s in ok.steps] == ["delete_rows"]
    assert d.changes[0].inverse().code == "BYOD-D102"
    assert ok.changes[0].inverse() is None


def test_location_change_is_impossible() -> None:
    a = schema(t=table(x=S))
    b = schema(t=Table(name="t", location=Location.MAIN, fields={"x": S}))
    d = diff(a, b, location=Location.USER)
    assert codes(d) == [("BYOD-D103", "impossible")]
    assert d.blocking


def test_required_field_without_hint_is_refused_with_the_hint_to_add() -> None:
    a, b = schema(t=table(x=S)), schema(t=table(x=S, y=N))
    d = diff(a, b)
    assert codes(d) == [("BYOD-D202", "missing hint")]
    with pytest.raises(PlanError) as exc:
        data_steps_for(a, b)
    assert "t.y" in str(exc.value) and "op: backfill" in str(exc.value)
    hint = MigrationOp(op="backfill", table="t", field="y", value=0)
    d = diff(a, b, [hint])
    assert codes(d) == [("BYOD-D202", "generated")]
    assert d.steps[0].params == {"field": "y", "value": 0}


def test_optional_field_added_is_safe_and_reverses_by_dropping() -> None:
    d = diff(schema(t=table(x=S)), schema(t=table(x=S, y=ON)))
    assert codes(d) == [("BYOD-D201", "safe")]
    assert not d.steps
    inv = d.inverse()
    assert [s.op for s in inv.steps] == ["drop_field"]


def test_field_removed_needs_consent() -> None:
    a, b = schema(t=table(x=S, y=ON)), schema(t=table(x=S))
    assert codes(diff(a, b)) == [("BYOD-D203", "needs consent")]
    d = diff(a, b, consent=Consent(drop_fields=("t.y",)))
    assert codes(d) == [("BYOD-D203", "consented")]
    assert [(s.op, s.params) for s in d.steps] == [("drop_field", {"field": "y"})]
    assert d.irreversible and d.changes[0].inverse() is None


def test_rename_pairs_removed_and_added_fields() -> None:
    a, b = schema(t=table(body=S)), schema(t=table(content=S))
    hint = MigrationOp(op="rename", table="t", from_field="body", field="content")
    d = diff(a, b, [hint])
    assert codes(d) == [("BYOD-D204", "generated")]
    inv = d.inverse()
    assert inv.steps[0].params == {"from": "content", "to": "body"}
    # without the hint the same edit is a destructive drop plus a missing backfill
    assert sorted(codes(diff(a, b))) == [("BYOD-D202", "missing hint"), ("BYOD-D203", "needs consent")]


def test_optionality_changes() -> None:
    a, b = schema(t=table(x=OS)), schema(t=table(x=S))
    assert codes(diff(a, b)) == [("BYOD-D205", "missing hint")]
    d = diff(a, b, [MigrationOp(op="backfill", table="t", field="x", value="")])
    assert codes(d) == [("BYOD-D205", "generated")]
    assert d.changes[0].inverse().code == "BYOD-D206"
    back = diff(b, a)
    assert codes(back) == [("BYOD-D206", "safe")] and back.changes[0].inverse() is None


def test_type_changes() -> None:
    a = schema(t=table(x=S))
    widened = diff(a, schema(t=table(x=FieldDef(type=UnionV(members=(StringV(), Float64V()))))))
    assert codes(widened) == [("BYOD-D207", "safe")]
    b = schema(t=table(x=N))
    assert codes(diff(a, b)) == [("BYOD-D208", "missing hint")]
    conv = MigrationOp(op="convert", table="t", field="x", mapping={"one": 1, "two": 2})
    d = diff(a, b, [conv])
    assert codes(d) == [("BYOD-D208", "generated")]
    assert d.changes[0].inverse() is not None  # injective mapping over strings
    lossy = MigrationOp(op="convert", table="t", field="x", code="return Number(value);")
    assert diff(a, b, [lossy]).changes[0].inverse() is None


def test_literal_sets() -> None:
    a = schema(t=table(s=lits("a", "b", "c")))
    assert codes(diff(a, schema(t=table(s=lits("a", "b", "c", "d"))))) == [("BYOD-D209", "safe")]
    b = schema(t=table(s=lits("a", "b")))
    missing = diff(a, b)
    assert codes(missing) == [("BYOD-D210", "missing hint")]
    assert "c: ..." in missing.changes[0].hint
    partial = diff(a, b, [MigrationOp(op="map_values", table="t", field="s", mapping={"x": "a"})])
    assert partial.blocking
    d = diff(a, b, [MigrationOp(op="map_values", table="t", field="s", mapping={"c": "a"})])
    assert codes(d) == [("BYOD-D210", "generated")]
    assert d.changes[0].inverse().code == "BYOD-D209"


def test_index_changes() -> None:
    emb = FieldDef(type=ArrayV(element=Float64V()), optional=True)
    a = Table(name="t", fields={"x": S, "e": emb}, indexes=(DbIndex(name="by_x", fields=("x",)),))
    b = Table(name="t", fields={"x": S, "e": emb},
              indexes=(DbIndex(name="by_x", fields=("x",), staged=True),
                       DbIndex(name="by_x2", fields=("x", "e"))),
              search_indexes=(SearchIndex(name="s", search_field="x"),),
              vector_indexes=(VectorIndex(name="v", vector_field="e", dimensions=4),))
    d = diff(schema(t=a), schema(t=b))
    assert sorted(c.code for c in d.changes) == ["BYOD-D301", "BYOD-D303", "BYOD-D311", "BYOD-D321"]
    assert all(c.classification == "safe" for c in d.changes)
    back = d.inverse()
    assert sorted(c.code for c in back.changes) == ["BYOD-D302", "BYOD-D303", "BYOD-D312", "BYOD-D322"]


def test_schema_validation_toggle() -> None:
    on, off = schema(t=table(x=S)), Schema(tables={"t": table(x=S)}, schema_validation=False)
    assert codes(diff(on, off)) == [("BYOD-D104", "safe")]
    assert codes(diff(off, on)) == [("BYOD-D105", "missing hint")]


def test_data_only_hints_and_inapplicable_hints() -> None:
    a = b = schema(t=table(x=S, tag=lits("a", "b")))
    hints = [
        MigrationOp(op="delete_rows", table="t", where={"tag": "b"}),
        MigrationOp(op="custom", table="t", code="return null;"),
        MigrationOp(op="rename", table="t", from_field="gone", field="x"),
    ]
    d = diff(a, b, hints)
    assert codes(d) == [("BYOD-D401", "needs consent"), ("BYOD-D402", "generated")]
    assert len(d.skipped_hints) == 1 and "gone" in d.skipped_hints[0]
    ok = diff(a, b, hints, Consent(delete_rows=("t",)))
    assert [s.op for s in ok.steps] == ["delete_rows", "custom"]


def test_every_code_is_documented() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "lint-codes.md").read_text()
    section = text.split("## Diff codes", 1)[1]
    documented = set(re.findall(r"BYOD-D\d{3}", section))
    assert documented == set(CODES)
