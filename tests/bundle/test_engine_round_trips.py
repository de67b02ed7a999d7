"""The bundle functions that keep a rollout to a few round trips, run by convex-test (which
enforces Convex's one paginated query per function): ``byodMigrations:runSteps`` runs a
page of the first step and every following step that fits whole, journaling each in
``byodSteps`` in the same transaction, and refuses to run on a bundle other than the one
it expects; ``byod:verify`` counts every table in one call within a read budget and says
where to resume when the tables hold more."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.bundle.compiler import compile_bundle
from engine.bundle.write import write_bundle
from engine.config import EngineConfig
from engine.plan.datasteps import make_step
from engine.schema.models import FieldDef, Schema, StringV, Table

from .test_bundles import _ok, _run  # the node runner of the generated functions

pytestmark = pytest.mark.toolchain

S, OPT = FieldDef(type=StringV()), FieldDef(type=StringV(), optional=True)


def _steps_call(steps, cursor=None, batch=8, expect=None) -> dict:
    args = {"steps": [{"stepId": s.id, "version": "0002_x", "processed": 0, "limit": 100}
                      for s in steps], "cursor": cursor, "batchSize": batch}
    if expect is not None:
        args["expect"] = expect
    return {"kind": "mutation", "path": "byodMigrations:runSteps", "args": args}


def test_run_steps_and_verify_on_the_convex_runtime(toolchain, tmp_path: Path) -> None:
    schema = Schema(tables={"notes": Table(name="notes", fields={"text": S, "title": OPT}),
                            "tags": Table(name="tags", fields={"name": S, "color": OPT})})
    s1 = make_step("notes", "backfill", {"field": "title", "value": "untitled"})
    s2 = make_step("tags", "backfill", {"field": "color", "value": "red"})
    bundle = compile_bundle(schema, version_id="0001_x__0002_x__widen", kind="widen",
                            data_steps=[s1, s2], config=EngineConfig())
    assert bundle.manifest["functions"]["byodMigrations:runSteps"] == "internalMutation"
    out = write_bundle(bundle, tmp_path / "bundle")
    toolchain.link_node_modules(out)
    me = {"version": bundle.version_id, "fingerprint": bundle.fingerprint}
    calls = [
        {"kind": "mutation", "path": "byod:importPage",
         "args": {"table": "notes", "documents": [{"text": f"n{i}"} for i in range(7)]}},
        {"kind": "mutation", "path": "byod:importPage",
         "args": {"table": "tags", "documents": [{"name": f"t{i}"} for i in range(3)]}},
        _steps_call([s1, s2], expect={**me, "fingerprint": "0" * 64}),
        {"kind": "query", "path": "byod:appliedSteps"},
        _steps_call([s1, s2], batch=4, expect=me),  # a page of s1 only
        _steps_call([s1, s2], batch=8),  # s1 whole (7), s2 does not fit in the 1 left
        _steps_call([s2], batch=8),
        {"kind": "query", "path": "byod:appliedSteps"},
        _steps_call([s1, s2], batch=20),  # both in one call; a re-run changes nothing
        {"kind": "query", "path": "byod:appliedSteps"},
        {"kind": "query", "path": "byod:verify", "args": {}},
        {"kind": "query", "path": "byod:verify", "args": {"budget": 5}},
        {"kind": "query", "path": "byod:verify",
         "args": {"budget": 5, "from": {"table": "notes", "cursor": None}}},
        {"kind": "query", "path": "byod:verify",
         "args": {"budget": 8, "from": {"table": "notes", "cursor": None}}},
        {"kind": "query", "path": "byod:verify",
         "args": {"from": {"table": "tags", "cursor": None}}},
        {"kind": "query", "path": "byod:exportPage",
         "args": {"table": "tags", "cursor": None, "numItems": 10}},
    ]
    (_, _, refused, none, first, s1_done, s2_done, rows, both, rows2, whole, over, part,
     resumed, rest, tags) = _run(toolchain, out, calls)

    assert not refused["ok"] and "the deploy did not take" in refused["error"]
    assert _ok(none) == []  # the refused call wrote nothing
    [page] = _ok(first)["results"]
    assert (page["stepId"], page["processed"], page["isDone"], page["total"]) == (
        s1.id, 4, False, 4)
    assert [(r["stepId"], r["processed"], r["isDone"]) for r in _ok(s1_done)["results"]] == [
        (s1.id, 7, True)]
    assert [(r["stepId"], r["processed"]) for r in _ok(s2_done)["results"]] == [(s2.id, 3)]
    journal = {r["stepId"]: r for r in _ok(rows)}
    assert {k: (r["status"], r["processed"], r.get("cursor")) for k, r in journal.items()} == {
        s1.id: ("completed", 7, None), s2.id: ("completed", 3, None)}
    results = _ok(both)["results"]
    assert [(r["stepId"], r["processed"], r["changed"], r["isDone"]) for r in results] == [
        (s1.id, 7, 0, True), (s2.id, 3, 0, True)]
    assert len(_ok(rows2)) == 2  # one row per step, updated in place
    assert {d["color"] for d in _ok(tags)["page"]} == {"red"}

    counts = _ok(whole)
    assert (counts["version"], counts["fingerprint"], counts["kind"], counts["next"]) == (
        bundle.version_id, bundle.fingerprint, "widen", None)
    assert counts["counts"] == {"notes": 7, "tags": 3, "byodVersions": 0, "byodSteps": 2}
    assert (_ok(over)["counts"], _ok(over)["next"]) == ({}, {"table": "notes", "cursor": None})
    assert _ok(part)["counts"] == {"notes": 5} and _ok(part)["next"]["table"] == "notes"
    assert _ok(part)["next"]["cursor"]
    assert _ok(resumed)["counts"] == {"notes": 7}
    assert _ok(resumed)["next"] == {"table": "tags", "cursor": None}
    assert _ok(rest)["counts"] == {"tags": 3, "byodVersions": 0, "byodSteps": 2}
    assert _ok(rest)["next"] is None
