"""The inverse of a value conversion is keyed the way the generated mutation looks values
up (``String(value)``), so rolling back finds every converted value or is refused."""

from __future__ import annotations

from engine.plan.datasteps import apply_step, js_string
from engine.plan.diff import diff
from engine.schema.models import (
    FieldDef,
    Float64V,
    LiteralV,
    MigrationOp,
    NullV,
    Schema,
    StringV,
    Table,
    UnionV,
)


def _schemas(target: FieldDef) -> tuple[Schema, Schema]:
    a = Schema(tables={"t": Table(name="t", fields={"x": FieldDef(type=StringV())})})
    b = Schema(tables={"t": Table(name="t", fields={"x": target})})
    return a, b


def test_js_string_renders_null_as_javascript_does() -> None:
    assert js_string(None) == "null"
    assert js_string(True) == "true" and js_string(2.0) == "2"


def test_inverse_of_a_conversion_to_null_maps_null_back() -> None:
    a, b = _schemas(FieldDef(type=UnionV(members=(Float64V(), NullV()))))
    conv = MigrationOp(op="convert", table="t", field="x", mapping={"one": 1, "none": None})
    change = diff(a, b, [conv]).changes[0]
    back = change.inverse_change
    assert back is not None and len(back.steps) == 1
    step = back.steps[0]
    assert step.params["mapping"] == {"1": "one", "null": "none"}  # String(null) in TS
    assert apply_step({"x": None}, step) == {"x": "none"}
    assert apply_step({"x": 1}, step) == {"x": "one"}


def test_targets_with_the_same_string_form_are_not_inverted() -> None:
    a, b = _schemas(FieldDef(type=UnionV(members=(Float64V(), LiteralV(value="1")))))
    conv = MigrationOp(op="convert", table="t", field="x", mapping={"a": 1, "b": "1"})
    d = diff(a, b, [conv])
    assert d.changes[0].code == "BYOD-D208"
    assert d.changes[0].inverse() is None  # String(1) == String("1"): "a" would be lost
