"""Planner: shipped paths (snapshotted), fusion and splitting, down paths, errors, drift,
fleets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import (
    DestructivePath,
    DriftDetected,
    MultipleHeads,
    NoPath,
    UnknownVersion,
    UnsafeChange,
)
from engine.plan.graph import VersionGraph
from engine.plan.planner import plan, plan_deployment, plan_fleet
from engine.schema.loader import load_versions
from engine.schema.models import (
    Consent,
    FieldDef,
    Float64V,
    MigrationOp,
    Schema,
    SchemaVersion,
    StringV,
    Table,
)

S, N = FieldDef(type=StringV()), FieldDef(type=Float64V())


@pytest.fixture(scope="module")
def shipped(versions_dir: Path) -> VersionGraph:
    return VersionGraph(load_versions(versions_dir))


def version(vid: str, parents: tuple[str, ...], fields: dict[str, FieldDef],
            hints: tuple[MigrationOp, ...] = (), consent: Consent = Consent()) -> SchemaVersion:
    return SchemaVersion(id=vid, number=int(vid.split("_")[0]), parents=parents,
                         schema=Schema(tables={"t": Table(name="t", fields=fields)}),
                         migrations=hints, consent=consent)


def rename(a: str, b: str) -> MigrationOp:
    return MigrationOp(op="rename", table="t", from_field=a, field=b)


@pytest.mark.parametrize("src,dst", [(1, 5), (1, 6), (3, 5), (4, 6), (5, 6), (3, 4), (3, 1)])
def test_shipped_plans(shipped: VersionGraph, snapshot, src: int, dst: int) -> None:
    p = plan(shipped, src, dst, allow_destructive=src > dst)  # 3 -> 1 drops the tag tables
    assert p.deploys <= 2
    data = p.to_dict()
    for step in data["steps"]:
        step.pop("schema", None)  # large; its tables are covered by the widen tests
    assert json.dumps(data, indent=2, sort_keys=True) == snapshot
    assert p.render_text() == snapshot


def test_plan_shape(shipped: VersionGraph) -> None:
    p = plan(shipped, 1, "head")
    kinds = [s.kind for s in p.steps]
    assert kinds[0] == "deploy_widened" and kinds[-3:] == ["deploy_target", "verify", "record"]
    assert p.path[0] == "0001_initial" and p.target == "0007_reference_indexes"
    widened = p.steps[0].schema
    # the widened schema keeps both shapes of every changed field
    notes = widened.tables["notes"].fields
    assert notes["content"].optional and notes["body"].optional
    assert {m.kind for m in widened.tables["usageRecords"].fields["date"].type.members} == {"string", "number"}
    assert plan(shipped, "0006_merge", 6).steps == ()


def test_safe_only_path_is_one_deploy(shipped: VersionGraph) -> None:
    p = plan(shipped, 1, 3)
    assert [s.kind for s in p.steps] == ["deploy_target", "verify", "record"]


def test_merge_edges_skip_hints_their_parent_already_ran(shipped: VersionGraph) -> None:
    from_4 = {s.data_step.op for s in plan(shipped, 4, 6).steps if s.data_step}
    from_5 = {s.data_step.op for s in plan(shipped, 5, 6).steps if s.data_step}
    assert from_4 == {"rename", "convert", "custom"}
    assert from_5 == {"backfill", "map_values", "delete_rows", "drop_field", "custom"}


def test_errors(shipped: VersionGraph) -> None:
    with pytest.raises(UnknownVersion) as exc:
        plan(shipped, 1, 42)
    assert "0006_merge" in str(exc.value)
    with pytest.raises(NoPath):
        plan(shipped, 4, 5)
    with pytest.raises(UnsafeChange) as down:
        plan(shipped, 6, 3)
    assert "BYOD-D208" in str(down.value) and "cannot be reversed" in str(down.value)
    forked = VersionGraph([version("0001_a", (), {"x": S}), version("0002_b", ("0001_a",), {"x": S}),
                           version("0003_c", ("0001_a",), {"x": S})])
    with pytest.raises(MultipleHeads):
        plan(forked, 1, "head")


def test_missing_hint_names_table_and_field() -> None:
    g = VersionGraph([version("0001_a", (), {"x": S}), version("0002_b", ("0001_a",), {"x": S, "y": N})])
    with pytest.raises(UnsafeChange) as exc:
        plan(g, 1, 2)
    assert "t.y" in str(exc.value) and "backfill" in str(exc.value)


def chain(n: int, dependent: bool) -> VersionGraph:
    """0001 .. n: each edge renames a field; with ``dependent`` the same field moves on."""

    vs = [version("0001_v", (), {"f1": S})]
    for i in range(2, n + 1):
        prev = vs[-1]
        if dependent:
            hints = (rename(f"f{i - 1}", f"f{i}"),)
            fields = {f"f{i}": S}
        else:
            hints = (MigrationOp(op="backfill", table="t", field=f"g{i}", value=""),)
            fields = {**prev.schema.tables["t"].fields, f"g{i}": S}
        vs.append(version(f"{i:04d}_v", (prev.id,), fields, hints))
    return VersionGraph(vs)


def test_independent_edges_fuse_into_two_deploys() -> None:
    p = plan(chain(12, dependent=False), 1, 12)
    assert p.deploys == 2 and len(p.groups) == 1 and not p.notes
    assert len(p.data_steps) == 11


def test_dependent_edges_split_and_say_so() -> None:
    p = plan(chain(4, dependent=True), 1, 4)
    assert len(p.groups) == 3 and p.deploys == 6
    assert p.notes and "split before 0002_v -> 0003_v" in p.notes[0] and "t.f2" in p.notes[0]


def test_reversible_down_path() -> None:
    g = chain(3, dependent=True)
    up = plan(g, 1, 3)
    down = plan(g, 3, 1)
    assert down.direction == "down" and down.path == ("0003_v", "0002_v", "0001_v")
    assert [s.data_step.params for s in down.steps if s.data_step] == [
        {"from": "f3", "to": "f2"}, {"from": "f2", "to": "f1"}]
    assert up.id != down.id


def test_drift_is_reported_not_guessed(shipped: VersionGraph) -> None:
    with pytest.raises(DriftDetected) as exc:
        plan(shipped, 3, 6, deployment="user_1", fingerprint="f" * 64,
             expected_fingerprint=lambda v: "a" * 64)
    assert exc.value.deployment == "user_1"
    fleet = plan_fleet(shipped, [("u1", 3, "a" * 64), ("u2", 3, "b" * 64), ("u3", "nope")], 6,
                       expected_fingerprint=lambda v: "a" * 64)
    assert [d["deployment"] for d in fleet.drifted] == ["u2"]
    assert fleet.errors["nope"]["error"] == "UnknownVersion"


def test_fleet_groups_by_source(shipped: VersionGraph) -> None:
    deps = [(f"u{i}", [1, "0003_content_package", 4, 5, 6][i % 5]) for i in range(50)]
    fleet = plan_fleet(shipped, deps, "head")
    assert fleet.deployments == 50
    assert set(fleet.plans) == {"0001_initial", "0003_content_package", "0004_task_priorities",
                                "0005_notes_usage", "0006_merge"}
    assert len(fleet.members["0004_task_priorities"]) == 10
    assert fleet.plan_for("u2", "0004_task_priorities").deployment == "u2"
    assert "5 source version(s)" in fleet.render_text()
    json.dumps(fleet.to_dict())


# ---------------------------------------------------------------------------------------
# Down paths that delete data
# ---------------------------------------------------------------------------------------

TAG_TABLES = ("taskTags", "noteTags", "conversationTags", "tags")


def test_down_path_that_deletes_data_is_refused(shipped: VersionGraph) -> None:
    with pytest.raises(DestructivePath) as exc:
        plan(shipped, 2, 1)
    err = exc.value
    assert isinstance(err, UnsafeChange)  # callers that catch refusals catch this one too
    assert sorted(err.deletes) == sorted(f"every row of {t}" for t in TAG_TABLES)
    text = str(err)
    assert text.startswith("down path 0002_tags -> 0001_initial deletes data:")
    assert all(f"  - every row of {t}" in text for t in TAG_TABLES)
    assert "--allow-destructive" in text and "allow_destructive=True" in text
    # the default of the runner's entry point stays safe; it can be opted into
    with pytest.raises(DestructivePath):
        plan_deployment(shipped, "0002_tags", "0001_initial")
    assert plan_deployment(shipped, "0002_tags", "0001_initial",
                           allow_destructive=True).direction == "down"


def test_allowed_down_path_marks_its_destructive_steps(shipped: VersionGraph) -> None:
    p = plan(shipped, 2, 1, allow_destructive=True)
    marked = p.destructive_steps
    assert {s.data_step.table for s in marked} == set(TAG_TABLES)
    assert all(s.kind == "run_data_step" and s.data_step.op == "delete_rows" for s in marked)
    assert not any(s.destructive for s in p.steps if s.kind != "run_data_step")
    data = p.to_dict()
    assert data["destructive"] == [s.id for s in marked]
    assert [s["id"] for s in data["steps"] if s.get("destructive")] == data["destructive"]
    text = p.render_text()
    assert "destructive: 4 step(s) delete data, on the way down" in text
    assert text.count("[destructive: deletes data]") == 4
    # the refusal does not depend on what was planned (and cached) before
    with pytest.raises(DestructivePath):
        plan(shipped, 2, 1)


def test_down_path_dropping_an_added_field_is_destructive() -> None:
    g = VersionGraph([version("0001_a", (), {"x": S}),
                      version("0002_b", ("0001_a",), {"x": S, "y": FieldDef(type=StringV(),
                                                                           optional=True)})])
    with pytest.raises(DestructivePath) as exc:
        plan(g, 2, 1)
    assert exc.value.deletes == ["the values of t.y in every document"]
    p = plan(g, 2, 1, allow_destructive=True)
    assert [s.data_step.op for s in p.destructive_steps] == ["drop_field"]


def test_reversible_down_path_needs_no_flag() -> None:
    p = plan(chain(3, dependent=True), 3, 1)  # renames back: nothing is deleted
    assert p.direction == "down" and p.destructive_steps == ()
    assert p.to_dict()["destructive"] == [] and "destructive" not in p.render_text()


def test_consented_deletions_going_up_are_marked_not_refused(shipped: VersionGraph) -> None:
    p = plan(shipped, 3, 4)
    assert {(s.data_step.op, s.data_step.table) for s in p.destructive_steps} == {
        ("delete_rows", "ttsCache"), ("drop_field", "conversations")}
    assert "as the version files consent" in p.render_text()


def test_fleet_refuses_destructive_groups_unless_allowed(shipped: VersionGraph) -> None:
    deps = [("u1", 2), ("u2", 2), ("u3", 1)]
    fleet = plan_fleet(shipped, deps, 1)
    assert fleet.errors["0002_tags"]["error"] == "DestructivePath"
    assert fleet.errors["0002_tags"]["deployments"] == 2
    assert "0001_initial" in fleet.plans  # the other group is planned
    assert "every row of tags" in fleet.render_text()
    allowed = plan_fleet(shipped, deps, 1, allow_destructive=True)
    assert not allowed.errors and len(allowed.plans["0002_tags"].destructive_steps) == 4
