"""BYOD-E164: ``byod check`` plans every edge of the graph with the child's hints and
consent, and reports each change the planner would refuse where the child's file needs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.check.rules import check_versions
from engine.errors import UnsafeChange
from engine.plan.graph import VersionGraph
from engine.plan.planner import plan
from engine.schema.loader import load_versions

PARENT = """
parents: []
tables:
  t:
    location: user
    fields:
      a: string
      'b?': string
      old: string
  gone:
    location: user
    fields: {x: string}
"""


def child(fields: str, extra: str = "", tables: str = "", parents: str = "[0001_p]") -> str:
    return (f"parents: {parents}\ntables:\n  t:\n    location: user\n    fields:\n{fields}"
            f"{tables}{extra}")


KEEP_GONE = "  gone:\n    location: user\n    fields: {x: string}\n"
SAME = "      a: string\n      'b?': string\n      old: string\n"


def e164(problems: list) -> list:
    return [p for p in problems if p.code == "BYOD-E164"]


def test_field_made_required_without_backfill(write, problems_of) -> None:
    path = write("0001_p.yaml", PARENT)
    path = write("0002_c.yaml", child("      a: string\n      b: string\n      old: string\n",
                                      tables=KEEP_GONE))
    problems = problems_of()
    assert [p.code for p in problems] == ["BYOD-E164"], [p.render() for p in problems]
    p = problems[0]
    assert p.file == str(path) and p.severity == "error"
    assert p.location == "tables.t.fields.b" and p.line == 7
    assert "edge 0001_p -> 0002_c" in p.message and "[BYOD-D205]" in p.message
    assert "t.b" in p.message and "missing hint" in p.message
    assert "backfill" in p.hint and "field: b" in p.hint


def test_backfill_hint_makes_the_edge_plan(write, problems_of) -> None:
    write("0001_p.yaml", PARENT)
    write("0002_c.yaml", child("      a: string\n      b: string\n      old: string\n",
                               tables=KEEP_GONE, extra="migrations:\n  - {op: backfill, "
                               "table: t, field: b, value: ''}\n"))
    assert problems_of() == []


def test_dropped_field_and_table_need_consent(write, problems_of) -> None:
    write("0001_p.yaml", PARENT)
    write("0002_c.yaml", child("      a: string\n      'b?': string\n"))
    found = {(p.location, p.message.split("]")[0].split("[")[-1]): p for p in e164(problems_of())}
    assert set(found) == {("tables.t", "BYOD-D203"), ("parents.0", "BYOD-D102")}
    assert found[("tables.t", "BYOD-D203")].hint == "add 't.old' to consent.drop_fields"
    # a removed table has no line of its own: the parent entry (the edge) is named
    assert found[("parents.0", "BYOD-D102")].line == 1
    assert found[("parents.0", "BYOD-D102")].hint == "add 'gone' to consent.drop_tables"


def test_a_removed_table_points_at_the_consent_key_when_there_is_one(write, problems_of) -> None:
    write("0001_p.yaml", PARENT)
    path = write("0002_c.yaml", child(SAME, extra="consent:\n  drop_fields: [t.old]\n"))
    (p,) = e164(problems_of())
    assert p.location == "consent" and p.line == path.read_text().splitlines().index(
        "consent:") + 1
    write("0002_c.yaml", child(SAME, extra="consent:\n  drop_tables: [gone]\n"))
    assert problems_of() == []


def test_delete_rows_without_consent_points_at_the_hint(write, problems_of) -> None:
    write("0001_p.yaml", PARENT)
    path = write("0002_c.yaml", child(SAME, tables=KEEP_GONE, extra=(
        "migrations:\n  - {op: backfill, table: t, field: b, value: ''}\n"
        "  - {op: delete_rows, table: t, where: {a: x}}\n")))
    (p,) = e164(problems_of())
    assert p.location == "migrations.1" and "[BYOD-D401]" in p.message
    assert p.line == path.read_text().splitlines().index(
        "  - {op: delete_rows, table: t, where: {a: x}}") + 1
    assert p.hint == "add 't' to consent.delete_rows"


def test_each_edge_of_a_merge_is_planned(write, problems_of) -> None:
    write("0001_p.yaml", PARENT)
    write("0002_l.yaml", child(SAME, tables=KEEP_GONE))
    # the right branch adds `c`; the merge keeps it, so the edge from the left branch needs
    # a backfill of c while the edge from the right branch does not
    write("0003_r.yaml", child(SAME + "      c: string\n", tables=KEEP_GONE, extra=(
        "migrations:\n  - {op: backfill, table: t, field: c, value: ''}\n")))
    merge = write("0004_m.yaml", child(SAME + "      c: string\n", tables=KEEP_GONE,
                                       parents="[0002_l, 0003_r]"))
    problems = problems_of()
    assert [(p.file, p.location) for p in problems] == [(str(merge), "tables.t.fields.c")]
    assert "edge 0002_l -> 0004_m" in problems[0].message


def test_malformed_hints_are_reported_once_not_planned(write, problems_of) -> None:
    write("0001_p.yaml", PARENT)
    write("0002_c.yaml", child("      a: string\n      b: string\n      old: string\n",
                               tables=KEEP_GONE, extra="migrations:\n  - {op: backfill, table: t}\n"))
    assert [p.code for p in problems_of()] == ["BYOD-E162"]


def test_a_broken_graph_is_not_planned(write, problems_of) -> None:
    write("0001_p.yaml", PARENT)
    write("0002_c.yaml", child("      a: string\n", parents="[0009_missing]"))
    assert "BYOD-E152" in [p.code for p in problems_of()]
    assert e164(problems_of()) == []  # two heads too, but nothing is planned


@pytest.mark.parametrize("remove", ["backfill", "consent", "nothing"])
def test_check_agrees_with_the_planner_on_the_shipped_history(
        versions_dir: Path, tmp_path: Path, remove: str) -> None:
    """Take a hint or the consent out of version 4: check fails exactly when plan refuses."""

    work = tmp_path / "versions"
    shutil.copytree(versions_dir, work)
    v4 = work / "0004_task_priorities.yaml"
    text = v4.read_text()
    if remove == "backfill":
        start = text.index("  - op: backfill\n    table: tasks\n    field: priority\n")
        end = text.index("  - op:", start + 1)
        text = text[:start] + text[end:]
    elif remove == "consent":
        text = text.replace("  delete_rows: [ttsCache]\n", "", 1)
    v4.write_text(text)
    versions = load_versions(work)
    graph = VersionGraph(versions)
    errors = [p for p in check_versions(versions) if p.severity == "error"]
    refused = []
    for v in versions:
        for parent in v.parents:
            try:
                plan(graph, parent, v.id)
            except UnsafeChange:
                refused.append((parent, v.id))
    assert bool(errors) == bool(refused) == (remove != "nothing")
    assert {p.message.split(" cannot")[0] for p in errors} == {
        f"edge {a} -> {b}" for a, b in refused}
    if remove == "backfill":
        assert any("[BYOD-D205] tasks.priority" in p.message for p in errors)
    if remove == "consent":
        assert any("[BYOD-D401] ttsCache" in p.message and p.location.startswith("migrations.")
                   for p in errors)
