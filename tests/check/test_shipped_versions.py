"""The shipped versions (the reference app's history) load, pass ``byod check`` and match
the reference catalogue's shape; the committed JSON Schema is current and accepts them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from engine.check.rules import check_versions
from engine.cli.check import check
from engine.config import EngineConfig
from engine.plan.graph import VersionGraph
from engine.schema.jsonschema import render_version_schema
from engine.schema.loader import load_versions
from engine.schema.models import ArrayV, Float64V, Location, StringV

V1_USER = {"conversations", "messages", "memories", "files", "projects", "notes", "tasks",
           "bookmarks", "usageRecords"}
V2_USER = V1_USER | {"tags", "conversationTags", "noteTags", "taskTags"}
V3_USER = V2_USER | {"conversationParticipants", "toolCalls", "sources", "attachments",
                     "fileChunks", "projectConversations", "projectNotes", "projectFiles",
                     "snippets", "ttsCache", "presentations", "slides", "outlineItems",
                     "designTemplates", "presentationSessions"}
MAIN = {"users", "userPreferences", "userOnboarding", "userStats", "templates",
        "adminSettings", "feedback", "shares", "notifications", "migrations", "emailAlerts",
        "jobs"}


REFERENCE = ("0001_initial", "0002_tags", "0003_content_package")


@pytest.fixture(scope="module")
def all_versions(versions_dir: Path):
    return load_versions(versions_dir)


@pytest.fixture(scope="module")
def versions(all_versions):
    """The reference app's history: the first three versions (later ones are ours)."""

    return [v for v in all_versions if v.id in REFERENCE]


def test_byod_check_passes(versions_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "byod.toml"
    config.touch()  # empty: every setting at its default
    env = {"BYOD_CONFIG": str(config)}
    result = CliRunner().invoke(check, ["--versions", str(versions_dir), "--strict"], env=env)
    assert result.exit_code == 0, result.output
    # the released versions acknowledge their W140 warnings, which the head fixes
    assert result.output.strip() == ("check ok: 7 version(s), 0 error(s), 0 warning(s) "
                                     "(16 acknowledged)")


def test_the_head_has_no_warnings_and_acknowledges_none(all_versions, versions_dir) -> None:
    """0007 indexes every reference field the released versions left unindexed; the
    released ones acknowledge exactly BYOD-W140 and nothing else."""

    head = VersionGraph(all_versions).resolve("head")
    assert head.id == "0007_reference_indexes" and head.parents == ("0006_merge",)
    assert head.lint.acknowledge == {}
    problems = check_versions(all_versions, EngineConfig(versions_dir=versions_dir))
    assert not [p.render() for p in problems if Path(p.file).stem == head.id]
    warned = {Path(p.file).stem for p in problems}
    for v in all_versions:
        if v.id != head.id:
            assert v.id in warned and set(v.lint.acknowledge) == {"BYOD-W140"}
    assert {p.code for p in problems} == {"BYOD-W140"}
    assert len(problems) == 16
    previous = {v.id: v for v in all_versions}["0006_merge"]
    assert set(head.schema.tables) == set(previous.schema.tables)
    for name, table in head.schema.tables.items():
        old = previous.schema.tables[name]
        assert table.fields == old.fields and table.location == old.location
        assert set(old.indexes) <= set(table.indexes)
    added = {(t, i.name, i.fields) for t, table in head.schema.tables.items()
             for i in table.indexes if i not in previous.schema.tables[t].indexes}
    assert added == {("memories", "by_sourceMessageId", ("sourceMessageId",)),
                     ("tasks", "by_sourceMessageId", ("sourceMessageId",)),
                     ("presentations", "by_sourceConversationId", ("sourceConversationId",))}
    assert head.migrations == () and head.consent.drop_fields == ()


def test_warning_codes_are_the_ones_the_rules_report() -> None:
    """Only warning codes can be acknowledged: the loader's list is every ``BYOD-W`` code
    the checks can report."""

    import re

    import engine.check as package
    from engine.schema.models import WARNING_CODES

    source = "".join(p.read_text() for p in Path(package.__file__).parent.glob("*.py"))
    assert set(re.findall(r"BYOD-W\d{3}", source)) == WARNING_CODES


def test_only_the_known_reference_warnings(all_versions, versions_dir: Path) -> None:
    """The reference app leaves three reference fields unindexed; nothing else is flagged
    in its versions, and later versions have no errors."""

    problems = check_versions(all_versions, EngineConfig(versions_dir=versions_dir))
    assert not [p.render() for p in problems if p.severity == "error"]
    problems = [p for p in problems if Path(p.file).stem in REFERENCE]
    found = {(Path(p.file).stem, p.location) for p in problems}
    expected = {(v, f"tables.{t}.fields.{f}")
                for v in REFERENCE
                for t, f in (("memories", "sourceMessageId"), ("tasks", "sourceMessageId"))}
    expected.add(("0003_content_package", "tables.presentations.fields.sourceConversationId"))
    assert found == expected
    assert {p.code for p in problems} == {"BYOD-W140"}


def test_history(versions) -> None:
    assert [(v.id, v.parents) for v in versions] == [
        ("0001_initial", ()), ("0002_tags", ("0001_initial",)),
        ("0003_content_package", ("0002_tags",))]
    for v, user in zip(versions, (V1_USER, V2_USER, V3_USER)):
        tables = v.schema.tables
        assert {n for n, t in tables.items() if t.location == Location.USER} == user
        assert {n for n, t in tables.items() if t.location == Location.MAIN} == MAIN
        assert v.schema.schema_validation
    graph = VersionGraph(versions)
    assert graph.resolve("head").id == "0003_content_package"
    assert graph.path(1, 3) == list(REFERENCE)


def test_tables_carry_over_unchanged(versions) -> None:
    v1, v2, v3 = (v.schema.tables for v in versions)
    for name in v1:
        assert v2[name] == v1[name] == v3[name]
    for name in v2:
        assert v3[name] == v2[name]


def test_reference_details(versions) -> None:
    tables = versions[-1].schema.tables
    messages = tables["messages"]
    assert messages.fields["embedding"].optional
    assert messages.fields["embedding"].type == ArrayV(element=Float64V())
    [vi] = messages.vector_indexes
    assert (vi.name, vi.vector_field, vi.dimensions, vi.filter_fields) == (
        "embedding", "embedding", 1536, ("userId", "conversationId"))
    assert [s.name for s in messages.search_indexes] == ["search_content"]
    assert [i.name for i in messages.indexes] == [
        "by_conversation", "by_conversation_created", "by_user", "by_parent", "by_status"]
    assert tables["memories"].vector_indexes[0].filter_fields == ("userId", "category",
                                                                  "isActive")
    assert tables["memories"].fields["importance"].type == Float64V()
    for table, field in (("files", "storageId"), ("attachments", "storageId"),
                         ("ttsCache", "storageId")):
        assert tables[table].fields[field].type == StringV()
    assert not tables["ttsCache"].fields["storageId"].optional
    assert tables["conversations"].fields["userId"].type == StringV()
    assert "activityEvents" not in tables


def test_committed_json_schema_is_current(versions_dir: Path) -> None:
    committed = (versions_dir / "version.schema.json").read_text()
    assert committed == render_version_schema(), (
        "regenerate: python -m engine.schema.jsonschema > schema_versions/version.schema.json")


def test_json_schema_accepts_shipped_files_and_rejects_bad_ones(versions_dir: Path) -> None:
    schema = json.loads((versions_dir / "version.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted(versions_dir.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        assert not list(validator.iter_errors(data)), path.name
    bad = {"parents": [], "tables": {"t": {"location": "moon", "fields": {}}}}
    assert list(validator.iter_errors(bad))
    assert list(validator.iter_errors({"parents": [], "tables": {}, "tabels": {}}))
