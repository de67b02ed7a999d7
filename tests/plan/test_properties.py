"""Property tests: widen accepts both sides, the data steps reach the target, nothing
unrelated changes, and reversible diffs round-trip."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.plan.datasteps import apply_step
from engine.plan.diff import diff
from engine.plan.widen import data_steps_for, widen, widen_all
from engine.schema.models import Schema
from engine.schema.validate_doc import validate_document
from tests.plan.strategies import doc_for_fields, evolutions, schemas

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _docs(data: Any, schema: Schema) -> dict[str, list[dict[str, Any]]]:
    return {name: data.draw(st.lists(doc_for_fields(t.fields), max_size=4), label=name)
            for name, t in schema.tables.items()}


def _run(steps: list, docs: dict[str, list[dict[str, Any]]], check: Schema | None = None
         ) -> dict[str, list[dict[str, Any]]]:
    out = {k: [dict(d) for d in v] for k, v in docs.items()}
    for step in steps:
        rows = []
        for doc in out.get(step.table, []):
            new = apply_step(doc, step)
            if new is not None:
                rows.append(new)
                if check is not None:  # every write must pass the deployed (widened) schema
                    assert validate_document(new, check.tables[step.table]) == [], (step, new)
        out[step.table] = rows
    return out


def _valid(docs: dict[str, list[dict[str, Any]]], schema: Schema) -> None:
    for name, rows in docs.items():
        if name not in schema.tables:
            continue
        for doc in rows:
            assert validate_document(doc, schema.tables[name]) == [], (name, doc)


@SETTINGS
@given(evo=evolutions(), data=st.data())
def test_widen_accepts_both_sides(evo: Any, data: Any) -> None:
    a, b, *_ = evo
    w = widen(a, b)
    _valid(_docs(data, a), w)
    _valid(_docs(data, b), w)


@SETTINGS
@given(evo=evolutions(), data=st.data())
def test_widened_schema_is_deployable(evo: Any, data: Any) -> None:
    """Convex accepts it: index fields exist, no duplicate field lists, within limits."""

    a, b, *_ = evo
    w = widen(a, b)
    for t in w.tables.values():
        keys = [ix.fields for ix in t.indexes]
        assert len(keys) == len(set(keys))
        assert len({ix.name for ix in t.indexes}) == len(t.indexes)
        for ix in t.indexes:
            assert all(f in t.fields for f in ix.fields)


@SETTINGS
@given(evo=evolutions(), data=st.data())
def test_steps_reach_target_and_touch_nothing_else(evo: Any, data: Any) -> None:
    a, b, hints, consent, edited = evo
    steps = data_steps_for(a, b, hints, consent)
    before = _docs(data, a)
    after = _run(steps, before, check=widen(a, b))
    _valid(after, b)
    for name, rows in before.items():
        if f"{name}.*" in edited:
            continue
        assert len(after[name]) == len(rows)  # no delete hints: counts are preserved
        for old, new in zip(rows, after[name]):
            for key, value in old.items():
                if f"{name}.{key}" not in edited and key in b.tables[name].fields:
                    assert new.get(key) == value, (name, key)


@SETTINGS
@given(evo=evolutions(), data=st.data())
def test_reversible_diffs_round_trip(evo: Any, data: Any) -> None:
    a, b, hints, consent, _ = evo
    d = diff(a, b, hints, consent)
    assert not d.blocking
    if d.irreversible:
        return
    inv = d.inverse()
    assert not inv.blocking
    forward = _run(list(d.steps), _docs(data, a), check=widen(a, b))
    back = _run(list(inv.steps), forward, check=widen(b, a))
    _valid(back, a)
    # the inverse of the inverse names the same changes again
    twice = [c.inverse() for c in inv.changes]
    if all(c is not None for c in twice):
        assert sorted((c.code, c.subject) for c in twice) == sorted(
            (c.code, c.subject) for c in d.changes)


@SETTINGS
@given(chain=st.lists(schemas(), min_size=2, max_size=4), data=st.data())
def test_widen_all_accepts_every_schema_on_a_path(chain: list[Schema], data: Any) -> None:
    w = widen_all(chain)
    for s in chain:
        _valid(_docs(data, s), w)


@SETTINGS
@given(a=schemas())
def test_widen_is_identity_on_equal_schemas(a: Schema) -> None:
    assert widen(a, a) == a
    assert diff(a, a).changes == ()
