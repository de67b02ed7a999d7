"""Planner details pinned where mutation testing (scripts/mutation.py) showed a changed
planner would pass: the exact refusal texts (no path between branches, a destructive down
path line by line), user tables only in a user's plan, and a delete_rows step whose
``where`` reads a field an earlier step of the same deploy writes splits the deploy."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import DestructivePath, NoPath
from engine.plan.graph import VersionGraph
from engine.plan.planner import plan
from engine.schema.loader import load_versions
from engine.schema.models import FieldDef, Location, MigrationOp, Schema, StringV, Table


@pytest.fixture(scope="module")
def shipped(versions_dir: Path) -> VersionGraph:
    return VersionGraph(load_versions(versions_dir))


def test_no_path_between_branches_names_both_ends(shipped: VersionGraph) -> None:
    with pytest.raises(NoPath) as info:
        plan(shipped, 4, 5)
    err = info.value
    assert (err.source, err.target) == ("0004_task_priorities", "0005_notes_usage")
    assert str(err).startswith("no migration path from '0004_task_priorities' to "
                               "'0005_notes_usage': they are on different branches")


def test_a_destructive_down_path_is_refused_line_by_line(shipped: VersionGraph) -> None:
    with pytest.raises(DestructivePath) as info:
        plan(shipped, 2, 1)
    lines = str(info.value).split("\n")
    assert lines[0] == "down path 0002_tags -> 0001_initial deletes data:"
    assert all(line.startswith("  - every row of ") for line in lines[1:-1])
    assert len(lines) == len(info.value.deletes) + 2
    assert lines[-1].startswith("the version files give no consent for deletions")


def test_a_users_plan_carries_no_step_for_a_main_table(shipped: VersionGraph) -> None:
    user_tables = {n for n, t in shipped.get("0006_merge").schema.tables.items()
                   if t.location.value == "user"}
    for src in (1, 2, 3, 4):
        p = plan(shipped, src, 6)
        tables = {s.data_step.table for s in p.steps if s.data_step is not None}
        assert tables <= user_tables, (src, tables - user_tables)


def _v(vid: str, parents: tuple[str, ...], tables: dict, hints=(), consent=None):
    from engine.schema.models import Consent, SchemaVersion

    return SchemaVersion(id=vid, number=int(vid.split("_")[0]), parents=parents,
                         schema=Schema(tables=tables), migrations=tuple(hints),
                         consent=consent or Consent())


def _t(name: str, location: str = "user", **fields: FieldDef) -> Table:
    return Table(name=name, location=Location(location), fields=fields)


S = FieldDef(type=StringV())
OS = FieldDef(type=StringV(), optional=True)


def test_only_user_tables_get_data_steps_in_a_users_plan() -> None:
    graph = VersionGraph([
        _v("0001_a", (), {"t": _t("t", x=S), "m": _t("m", "main", x=S)}),
        _v("0002_b", ("0001_a",), {"t": _t("t", x=S, y=S), "m": _t("m", "main", x=S, y=S)},
           hints=[MigrationOp(op="backfill", table="t", field="y", value=""),
                  MigrationOp(op="backfill", table="m", field="y", value="")]),
    ])
    p = plan(graph, 1, 2)
    assert [s.data_step.table for s in p.steps if s.data_step is not None] == ["t"]


def test_deleting_rows_by_a_field_an_earlier_step_writes_splits_the_deploy() -> None:
    from engine.schema.models import Consent

    graph = VersionGraph([
        _v("0001_a", (), {"t": _t("t", x=S, k=OS)}),
        _v("0002_b", ("0001_a",), {"t": _t("t", x=S, k=S)},
           hints=[MigrationOp(op="backfill", table="t", field="k", value="old")]),
        _v("0003_c", ("0002_b",), {"t": _t("t", x=S, k=S)},
           hints=[MigrationOp(op="delete_rows", table="t", where={"k": "old"})],
           consent=Consent(delete_rows=("t",))),
    ])
    p = plan(graph, 1, 3)
    assert p.deploys == 4  # two deploys each: 0002_b is in place before rows go by k
    assert any("split before 0002_b -> 0003_c" in note and "t.k" in note for note in p.notes)


def _widened_fields(p) -> set[str]:
    [step] = [s for s in p.steps if s.kind == "deploy_widened"]
    return set(step.schema.tables["t"].fields)


def test_widenings_of_different_paths_never_share_a_cache_entry() -> None:
    def bump(vid: str, parent: str, *fields: str) -> object:
        new = fields[-1]
        return _v(vid, (parent,), {"t": _t("t", **{f: S for f in fields})},
                  hints=[MigrationOp(op="backfill", table="t", field=new, value="")])

    graph = VersionGraph([
        _v("0001_a", (), {"t": _t("t", x=S)}),
        bump("0002_b", "0001_a", "x", "a"),
        bump("0003_c", "0002_b", "x", "a", "b"),
        bump("0004_d", "0001_a", "x", "c"),
        bump("0005_e", "0002_b", "x", "a", "d"),
    ])
    assert _widened_fields(plan(graph, 1, 3)) == {"x", "a", "b"}
    assert _widened_fields(plan(graph, 1, 4)) == {"x", "c"}   # another leaf, same start
    assert _widened_fields(plan(graph, 2, 3)) == {"x", "a", "b"}
    assert _widened_fields(plan(graph, 2, 5)) == {"x", "a", "d"}  # same start, other leaf
