"""The in-memory deployment answers ``byodMigrations:runSteps`` and ``byod:verify`` as the
generated TypeScript does (tests/bundle/test_engine_round_trips.py runs the same calls on
the Convex runtime): a page of the first step and each following step that fits whole,
each journaled with its page and rolled back with it, a refused bundle identity, and
verify's counts within a read budget with the table to resume from."""

from __future__ import annotations

import pytest

from engine.bundle.compiler import compile_bundle, deployed_schema
from engine.config import EngineConfig
from engine.errors import FunctionError
from engine.plan.datasteps import make_step
from engine.schema.models import FieldDef, Schema, StringV, Table
from engine.testing.catalog import BundleCatalog
from engine.testing.deployment import InMemoryDeployment

S, OPT = FieldDef(type=StringV()), FieldDef(type=StringV(), optional=True)
SCHEMA = Schema(tables={"notes": Table(name="notes", fields={"text": S, "title": OPT}),
                        "tags": Table(name="tags", fields={"name": S, "color": OPT})})
S1 = make_step("notes", "backfill", {"field": "title", "value": "untitled"})
S2 = make_step("tags", "backfill", {"field": "color", "value": "red"})


@pytest.fixture()
def dep() -> InMemoryDeployment:
    bundle = compile_bundle(SCHEMA, version_id="0001_x__0002_x__widen", kind="widen",
                            data_steps=[S1, S2], config=EngineConfig())
    catalog = BundleCatalog()
    catalog.note(bundle, deployed_schema(SCHEMA), [S1, S2])
    d = InMemoryDeployment("d", catalog=catalog)
    d.deploy(bundle)
    for i in range(7):
        d.insert("notes", {"text": f"n{i}"})
    for i in range(3):
        d.insert("tags", {"name": f"t{i}"})
    return d


def _steps(d, steps, cursor=None, batch=8, expect=None):
    args = {"steps": [{"stepId": s.id, "version": "0002_x", "processed": 0, "limit": 100}
                      for s in steps], "cursor": cursor, "batchSize": batch}
    if expect is not None:
        args["expect"] = expect
    return d.mutation("byodMigrations:runSteps", args)["results"]


def test_run_steps_pages_the_first_and_runs_what_fits_whole(dep) -> None:
    me = {"version": dep.version, "fingerprint": dep.fingerprint}
    with pytest.raises(FunctionError, match="the deploy did not take"):
        _steps(dep, [S1, S2], expect={**me, "fingerprint": "0" * 64})
    assert dep.recorded_steps == []
    [page] = _steps(dep, [S1, S2], batch=4, expect=me)
    assert (page["stepId"], page["processed"], page["isDone"], page["total"]) == (
        S1.id, 4, False, 4)
    [row] = dep.recorded_steps
    assert (row["status"], row["processed"], row["cursor"]) == (
        "running", 4, page["continueCursor"])
    assert [(r["stepId"], r["processed"]) for r in _steps(dep, [S1, S2], batch=8)] == [
        (S1.id, 7)]  # s2's 3 documents do not fit in the 1 left
    assert [(r["stepId"], r["processed"]) for r in _steps(dep, [S2], batch=8)] == [(S2.id, 3)]
    both = _steps(dep, [S1, S2], batch=20)
    assert [(r["stepId"], r["processed"], r["changed"], r["isDone"]) for r in both] == [
        (S1.id, 7, 0, True), (S2.id, 3, 0, True)]
    assert {r["stepId"]: (r["status"], r["processed"], r["cursor"])
            for r in dep.recorded_steps} == {S1.id: ("completed", 7, None),
                                             S2.id: ("completed", 3, None)}
    assert {d["color"] for d in dep.docs("tags")} == {"red"}


def test_a_failing_step_rolls_back_the_whole_call(dep) -> None:
    def broken(step, path, args):
        raise FunctionError("boom", deployment="d", function=path)

    before = dep.docs("notes")
    original = dep._apply_page

    def second_fails(step, path, cursor, size, dry):
        if step.id == S2.id:
            broken(step, path, None)
        return original(step, path, cursor, size, dry)

    dep._apply_page = second_fails  # type: ignore[method-assign]
    with pytest.raises(FunctionError, match="boom"):
        _steps(dep, [S1, S2], batch=20)
    assert dep.docs("notes") == before and dep.recorded_steps == []


def test_verify_counts_within_a_budget_and_says_where_to_resume(dep) -> None:
    whole = dep.query("byod:verify", {})
    assert (whole["version"], whole["fingerprint"], whole["kind"], whole["next"]) == (
        dep.version, dep.fingerprint, "widen", None)
    assert whole["counts"] == {"notes": 7, "tags": 3, "byodVersions": 0, "byodSteps": 0}
    over = dep.query("byod:verify", {"budget": 5})
    assert (over["counts"], over["next"]) == ({}, {"table": "notes", "cursor": None})
    part = dep.query("byod:verify", {"budget": 5, "from": {"table": "notes", "cursor": None}})
    assert part["counts"] == {"notes": 5} and part["next"]["table"] == "notes"
    rest = dep.query("byod:verify", {"budget": 8, "from": part["next"]})
    assert rest["counts"] == {"notes": 2, "tags": 3, "byodVersions": 0, "byodSteps": 0}
    assert rest["next"] is None
    with pytest.raises(FunctionError, match="unknown table"):
        dep.query("byod:verify", {"from": {"table": "nope", "cursor": None}})
