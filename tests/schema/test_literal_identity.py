"""A boolean literal is never equal to a number literal (Python's ``True == 1`` is not
Convex's): otherwise a change from ``true`` to ``1`` is invisible to the diff and a union
``1 | true`` loses a member when widened."""

from __future__ import annotations

from engine.plan.diff import diff
from engine.schema.models import FieldDef, LiteralV, Schema, Table, UnionV
from engine.schema.typeops import flatten, is_subtype, widen_type


def _schema(t: object) -> Schema:
    return Schema(tables={"t": Table(name="t", fields={"x": FieldDef(type=t)})})


def test_boolean_and_number_literals_differ() -> None:
    assert LiteralV(value=True) != LiteralV(value=1)
    assert LiteralV(value=False) != LiteralV(value=0.0)
    assert LiteralV(value=1) == LiteralV(value=1.0)  # one float64 value in Convex
    assert hash(LiteralV(value="a")) == hash(LiteralV(value="a"))
    assert not is_subtype(LiteralV(value=True), LiteralV(value=1))


def test_changing_true_to_one_is_a_narrowing_the_diff_reports() -> None:
    d = diff(_schema(LiteralV(value=True)), _schema(LiteralV(value=1)))
    assert [(c.code, c.status()) for c in d.changes] == [("BYOD-D210", "missing hint")]


def test_widening_keeps_both_literals() -> None:
    both = UnionV(members=(LiteralV(value=1), LiteralV(value=True)))
    assert len(flatten(both)) == 2
    widened = widen_type(LiteralV(value=1), LiteralV(value=True))
    assert {(type(m.value), m.value) for m in flatten(widened)} == {(int, 1), (bool, True)}
