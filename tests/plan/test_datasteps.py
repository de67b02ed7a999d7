"""Data steps: stable ids, batch sizes within Convex limits, reference semantics, and the
generated TypeScript (snapshotted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.bundle.migrations import render_data_steps_module
from engine.plan.datasteps import (
    MAX_BATCH_SIZE,
    TX_MAX_BYTES,
    apply_step,
    estimate_doc_bytes,
    make_step,
    suggest_batch_size,
)
from engine.plan.graph import VersionGraph
from engine.plan.planner import plan
from engine.schema.loader import load_versions
from engine.schema.models import ArrayV, FieldDef, Float64V, StringV, Table, VectorIndex

TARGET = {"type": "union", "value": [{"type": "literal", "value": "a"}, {"type": "literal", "value": "b"}]}


def test_ids_are_content_derived() -> None:
    one = make_step("tasks", "backfill", {"field": "priority", "value": "medium"})
    two = make_step("tasks", "backfill", {"value": "medium", "field": "priority"})
    other = make_step("tasks", "backfill", {"field": "priority", "value": "low"})
    assert one.id == two.id != other.id
    assert one.id.startswith("backfill_tasks_priority_")
    assert one.function_path == f"byodMigrations:{one.id}"


def test_batch_size_stays_inside_transaction_limits() -> None:
    small = Table(name="t", fields={"x": FieldDef(type=StringV())})
    assert suggest_batch_size(small) == MAX_BATCH_SIZE
    vec = Table(name="m", fields={"e": FieldDef(type=ArrayV(element=Float64V()))},
                vector_indexes=(VectorIndex(name="v", vector_field="e", dimensions=1536),))
    size = suggest_batch_size(vec)
    assert size * estimate_doc_bytes(vec) <= TX_MAX_BYTES // 2
    assert 1 <= size < MAX_BATCH_SIZE
    assert suggest_batch_size(small, avg_doc_bytes=1 << 20) == 8  # 1 MiB documents
    assert suggest_batch_size(small, avg_doc_bytes=64 << 20) == 1


@pytest.mark.parametrize("op,params,doc,expected", [
    ("backfill", {"field": "p", "value": 1}, {}, {"p": 1}),
    ("backfill", {"field": "p", "value": 1}, {"p": 2}, {"p": 2}),
    ("rename", {"from": "a", "to": "b"}, {"a": 1}, {"b": 1}),
    ("rename", {"from": "a", "to": "b"}, {"a": 1, "b": 2}, {"b": 2}),
    ("copy", {"from": "a", "to": "b"}, {"a": 1}, {"a": 1, "b": 1}),
    ("map_values", {"field": "s", "mapping": {"c": "a"}, "target": TARGET}, {"s": "c"}, {"s": "a"}),
    ("map_values", {"field": "s", "mapping": {"c": "a"}, "target": TARGET}, {"s": "b"}, {"s": "b"}),
    ("convert", {"field": "s", "mapping": {}, "default": "a", "target": TARGET}, {"s": "z"}, {"s": "a"}),
    ("drop_field", {"field": "x"}, {"x": 1, "y": 2}, {"y": 2}),
    ("delete_rows", {"where": {"k": "g"}}, {"k": "g"}, None),
    ("delete_rows", {"where": {"k": "g"}}, {"k": "u"}, {"k": "u"}),
])
def test_reference_semantics_are_idempotent(op, params, doc, expected) -> None:
    step = make_step("t", op, params)
    once = apply_step(doc, step)
    assert once == expected
    if once is not None:
        assert apply_step(once, step) == once


def test_unmapped_value_is_an_error() -> None:
    step = make_step("t", "map_values", {"field": "s", "mapping": {}, "target": TARGET})
    with pytest.raises(ValueError, match="no mapping"):
        apply_step({"s": "q"}, step)


def test_generated_module_snapshot(versions_dir: Path, snapshot) -> None:
    g = VersionGraph(load_versions(versions_dir))
    steps = plan(g, 1, "head").data_steps
    text = render_data_steps_module(steps)
    assert text == render_data_steps_module(list(steps))  # deterministic
    # one mutation per step, plus runSteps (consecutive steps in one call, each journaled
    # in its own transaction's byodSteps row)
    assert text.count("internalMutationGeneric({") == len(steps) + 1 == 8
    assert "export const runSteps = internalMutationGeneric({" in text
    assert "ctx.db\n    .query(table)\n    .paginate(" in text
    assert text == snapshot


def test_every_op_renders(snapshot) -> None:
    steps = [
        make_step("t", "backfill", {"field": "p", "value": {"nested": [1, 2]}}),
        make_step("t", "rename", {"from": "a", "to": "b"}),
        make_step("t", "copy", {"from": "a", "to": "c"}),
        make_step("t", "map_values", {"field": "s", "mapping": {"c": "a"}, "default": "b", "target": TARGET}),
        make_step("t", "convert", {"field": "n", "code": "return Number(value);", "target": {"type": "number"}}),
        make_step("t", "drop_field", {"field": "x"}),
        make_step("t", "delete_rows", {"where": {}}),
        make_step("t", "custom", {"code": "return null;"}),
    ]
    assert render_data_steps_module(steps) == snapshot
