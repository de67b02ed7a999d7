"""Loading version files: the happy path, line numbers, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import Problem, VersionFileError
from engine.schema.loader import load_version_file, load_versions
from engine.schema.models import (
    ArrayV,
    FieldDef,
    Float64V,
    IdV,
    LiteralV,
    Location,
    MigrationOp,
    ObjectV,
    StringV,
    UnionV,
)

GOOD = """
# a comment
description: Notes with tags.
parents: []
schemaValidation: true
tables:
  notes:
    location: user
    fields:
      userId: string
      body?: string
      kind: '"a" | "b"'
      meta:
        source: string
        tags?: string[]
      inline: "{x: number, y?: id(notes)}"
      maybe: optional(number)
      file: storage
      embedding?: float64[]
    indexes:
      by_user: [userId]
      by_source: {fields: [meta.source, userId], staged: true}
    search_indexes:
      search_body: {field: body, filters: [userId]}
    vector_indexes:
      by_embedding:
        field: embedding
        dimensions: 1536
        filters: [userId]
  users:
    location: main
    fields: {}
migrations:
  - {op: rename, table: notes, from: text, to: body}
  - {op: backfill, table: notes, field: kind, value: a}
  - op: custom
    table: notes
    code: |
      return null;
consent:
  drop_fields: [notes.text]
"""


def _problems(path: Path) -> list[Problem]:
    with pytest.raises(VersionFileError) as info:
        load_versions(path)
    return info.value.problems


def test_good_file(write, tmp_path: Path) -> None:
    write("0001_notes.yaml", GOOD)
    [v] = load_versions(tmp_path)
    assert (v.id, v.number, v.parents) == ("0001_notes", 1, ())
    assert v.description == "Notes with tags."
    notes = v.schema.tables["notes"]
    assert notes.location == Location.USER
    assert v.schema.tables["users"].location == Location.MAIN
    f = notes.fields
    assert f["userId"] == FieldDef(type=StringV())
    assert f["body"] == FieldDef(type=StringV(), optional=True)
    assert f["kind"].type == UnionV(members=(LiteralV(value="a"), LiteralV(value="b")))
    assert f["meta"].type == ObjectV(fields={
        "source": FieldDef(type=StringV()),
        "tags": FieldDef(type=ArrayV(element=StringV()), optional=True)})
    assert f["inline"].type.fields["y"] == FieldDef(type=IdV(table="notes"), optional=True)
    assert f["maybe"] == FieldDef(type=Float64V(), optional=True)
    assert f["file"] == FieldDef(type=StringV())
    [by_user, by_source] = notes.indexes
    assert by_user.fields == ("userId",) and not by_user.staged
    assert by_source.fields == ("meta.source", "userId") and by_source.staged
    assert notes.search_indexes[0].search_field == "body"
    vi = notes.vector_indexes[0]
    assert (vi.name, vi.vector_field, vi.dimensions, vi.filter_fields) == (
        "by_embedding", "embedding", 1536, ("userId",))
    assert v.migrations[0] == MigrationOp(op="rename", table="notes", from_field="text",
                                          field="body")
    assert v.migrations[1].value == "a"
    assert v.migrations[2].code == "return null;\n"
    assert v.consent.drop_fields == ("notes.text",)


def test_lines_are_recorded(write, tmp_path: Path) -> None:
    write("0001_notes.yaml", GOOD)
    [v] = load_versions(tmp_path)
    text = (tmp_path / "0001_notes.yaml").read_text().splitlines()

    def line_of(snippet: str) -> int:
        return next(i + 1 for i, line in enumerate(text) if snippet in line)

    lines = v.source.lines
    assert lines["tables.notes"] == line_of("  notes:")
    assert lines["tables.notes.fields.body"] == line_of("body?: string")
    assert lines["tables.notes.fields.meta.tags"] == line_of("tags?: string[]")
    assert lines["tables.notes.indexes.by_source"] == line_of("by_source:")
    assert lines["tables.notes.vector_indexes.by_embedding"] == line_of("by_embedding:")
    assert lines["migrations.1"] == line_of("op: backfill")
    assert v.source.line_of("tables.notes.vector_indexes.by_embedding.nothing") == \
        line_of("by_embedding:")
    assert v.source.path == str(tmp_path / "0001_notes.yaml")


def test_numeric_parents_and_declared_identity(write, tmp_path: Path) -> None:
    write("0001_a.yaml", "parents: []\ntables: {}\n")
    write("0002_b.yaml", "id: 0002_b\nnumber: 2\nparents: [1]\ntables: {}\n")
    write("README.md", "not a version")
    write("version.schema.json", "{}")
    a, b = load_versions(tmp_path)
    assert b.parents == ("0001_a",)
    assert load_version_file(tmp_path / "0002_b.yaml").parents == ("0001_a",)


def test_null_collections_are_empty(write, tmp_path: Path) -> None:
    write("0001_a.yaml", """
        parents:
        tables:
          t:
            location: user
            fields:
            indexes:
        migrations:
        """)
    [v] = load_versions(tmp_path)
    assert v.schema.tables["t"].fields == {} and v.migrations == ()


@pytest.mark.parametrize(
    ("text", "code", "line", "needle"),
    [
        ("parents: []\ntables:\n  t:\n    location: user\n    fields: {a: string\n",
         "BYOD-E003", 6, "malformed YAML"),
        ("parents: []\ntables: {}\n---\nparents: []\n", "BYOD-E003", 3, "malformed YAML"),
        ("", "BYOD-E009", None, "empty"),
        ("- a\n- b\n", "BYOD-E004", 1, "must be a mapping"),
        ("parents: []\ntabels: {}\n", "BYOD-E005", 2, "did you mean 'tables'"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields: {}\n    index: {}\n",
         "BYOD-E005", 6, "did you mean 'indexes'"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields: [a, b]\n",
         "BYOD-E004", 5, "fields must be a mapping"),
        ("parents: []\ntables:\n  - t\n", "BYOD-E004", 3, "tables must be a mapping"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields:\n      a: [string]\n",
         "BYOD-E004", 6, "T[]"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields: {a: string}\n"
         "    indexes:\n      by_a: a\n", "BYOD-E004", 7, "must be a list"),
        ("parents: 0001_x\ntables: {}\n", "BYOD-E004", 1, "parents must be a list"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields: {a: string}\n"
         "  t:\n    location: main\n    fields: {}\n", "BYOD-E006", 6, "duplicate key 't'"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields:\n      a: string\n"
         "      a: number\n", "BYOD-E006", 7, "first on line 6"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields:\n      a: string\n"
         "      a?: number\n", "BYOD-E011", 7, "declared twice"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields:\n      a: strng\n",
         "BYOD-E007", 6, "did you mean 'string'"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields:\n      a: \"user\"\n",
         "BYOD-E007", 6, "YAML removed the quotes"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields:\n      a:\n",
         "BYOD-E007", 6, "missing type"),
        ("parents: []\ntables:\n  t:\n    location: usr\n    fields: {}\n",
         "BYOD-E008", 4, "location must be user or main"),
        ("parents: []\ntables:\n  t:\n    fields: {}\n", "BYOD-E009", 3, "has no location"),
        ("parents: []\ntables:\n  t:\n    location: user\n", "BYOD-E009", 3, "no `fields`"),
        ("tables: {}\n", "BYOD-E009", 1, "missing `parents`"),
        ("parents: []\n", "BYOD-E009", 1, "missing `tables`"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields: {e: 'float64[]'}\n"
         "    vector_indexes:\n      v: {field: e, dimensions: lots}\n",
         "BYOD-E008", 7, "whole number"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields: {e: 'float64[]'}\n"
         "    vector_indexes:\n      v: {field: e}\n", "BYOD-E009", 7, "`dimensions`"),
        ("parents: []\ntables:\n  t:\n    location: user\n    fields: {a: string}\n"
         "    indexes:\n      i: {fields: [a], staged: maybe}\n", "BYOD-E008", 7,
         "true or false"),
        ("parents: []\ntables: {}\nmigrations:\n  - {op: renam, table: t}\n", "BYOD-E008", 4,
         "did you mean 'rename'"),
        ("parents: []\ntables: {}\nmigrations:\n  - {op: rename, from: a, to: b}\n",
         "BYOD-E009", 4, "needs `table`"),
        ("parents: []\ntables: {}\nconsent: {drop_field: [t.a]}\n", "BYOD-E005", 3,
         "did you mean 'drop_fields'"),
        ("id: 0009_other\nparents: []\ntables: {}\n", "BYOD-E010", 1, "does not match"),
        ("number: 7\nparents: []\ntables: {}\n", "BYOD-E010", 1, "does not match"),
        ("parents: []\ntables: {}\ndescription: [a]\n", "BYOD-E004", 3, "must be text"),
        ("parents: []\ntables: {}\nlint:\n  ignored: [BYOD-W140]\n", "BYOD-E005", 4,
         "did you mean 'ignore'"),
        ("parents: []\ntables: {}\nlint:\n  ignore: [BYOD-E101]\n", "BYOD-E012", 4,
         "BYOD-E101 is an error: only warnings (BYOD-W...) can be ignored"),
        ("parents: []\ntables: {}\nlint:\n  ignore: [BYOD-W998]\n", "BYOD-E012", 4,
         "'BYOD-W998' is not a warning code"),
        ("parents: []\ntables: {}\nlint:\n  acknowledge:\n    BYOD-W140: ok\n"
         "    BYOD-E114: why not\n", "BYOD-E012", 6,
         "BYOD-E114 is an error: only warnings (BYOD-W...) can be acknowledged"),
        ("parents: []\ntables: {}\nlint:\n  acknowledge: {BYOD-D301: x}\n", "BYOD-E012", 4,
         "is a diff code"),
        ("parents: []\ntables: {}\nlint:\n  acknowledge: {BYOD-W999: x}\n", "BYOD-E012", 4,
         "'BYOD-W999' is not a warning code"),
        ("parents: []\ntables: {}\nlint:\n  acknowledge: {W140: x}\n", "BYOD-E012", 4,
         "did you mean 'BYOD-W140'"),
        ("parents: []\ntables: {}\nlint:\n  acknowledge:\n    BYOD-W140:\n", "BYOD-E009",
         5, "acknowledging BYOD-W140 needs a reason"),
        ("parents: []\ntables: {}\nlint:\n  acknowledge: {BYOD-W140: ''}\n", "BYOD-E009", 4,
         "needs a reason"),
        ("parents: []\ntables: {}\nlint:\n  acknowledge: [BYOD-W140]\n", "BYOD-E004", 4,
         "must be a mapping"),
    ],
)
def test_bad_files(write, tmp_path: Path, text: str, code: str, line: int | None,
                   needle: str) -> None:
    write("0001_bad.yaml", text)
    problems = _problems(tmp_path)
    match = [p for p in problems if p.code == code and needle in p.render()]
    assert match, "\n".join(p.render() for p in problems)
    assert match[0].line == line
    assert match[0].file == str(tmp_path / "0001_bad.yaml")
    assert all(p.severity == "error" for p in problems)


def test_bad_file_names(write, tmp_path: Path) -> None:
    write("initial.yaml", "parents: []\ntables: {}\n")
    write("0002_x.yml", "parents: []\ntables: {}\n")
    write("0003_.yaml", "parents: []\ntables: {}\n")
    problems = _problems(tmp_path)
    assert sorted((Path(p.file).name, p.code) for p in problems) == [
        ("0002_x.yml", "BYOD-E002"), ("0003_.yaml", "BYOD-E002"),
        ("initial.yaml", "BYOD-E002")]
    assert "NNNN_slug.yaml" in problems[-1].hint or "NNNN_slug.yaml" in problems[0].hint


def test_problems_of_all_files_are_collected(write, tmp_path: Path) -> None:
    write("0001_a.yaml", "parents: []\ntables:\n  t:\n    location: nowhere\n    fields: {}\n")
    write("0002_b.yaml", "parents: [1]\ntables:\n  t:\n    location: user\n    fields:\n"
                         "      x: strin\n      y: numbr\n")
    problems = _problems(tmp_path)
    assert [(Path(p.file).name, p.line) for p in problems] == [
        ("0001_a.yaml", 4), ("0002_b.yaml", 6), ("0002_b.yaml", 7)]
    rendered = str(VersionFileError(problems))
    assert rendered.count("\n") == 2 and "Traceback" not in rendered


def test_missing_directory(tmp_path: Path) -> None:
    problems = _problems(tmp_path / "nope")
    assert [p.code for p in problems] == ["BYOD-E001"]


def test_undecodable_file(tmp_path: Path) -> None:
    (tmp_path / "0001_a.yaml").write_bytes(b"\xff\xfe\x00garbage")
    assert [p.code for p in _problems(tmp_path)] == ["BYOD-E003"]


def test_load_version_file_raises_with_problems(write, tmp_path: Path) -> None:
    path = write("0001_a.yaml", "parents: []\ntables: {t: {location: user, fields: {a: nope}}}\n")
    with pytest.raises(VersionFileError) as info:
        load_version_file(path)
    assert info.value.problems[0].code == "BYOD-E007"


def test_optional_key_in_flow_mapping_gets_a_quoting_hint(write, tmp_path: Path) -> None:
    write("0001_a.yaml", "parents: []\ntables:\n  t:\n    location: user\n"
                         "    fields: {a?: string}\n")
    [p] = _problems(tmp_path)
    assert p.code == "BYOD-E003" and p.line == 5 and "'color?'" in p.hint
    write("0001_a.yaml", "parents: []\ntables:\n  t:\n    location: user\n"
                         "    fields: {'a?': string}\n")
    [v] = load_versions(tmp_path)
    assert v.schema.tables["t"].fields["a"].optional


def test_aliases_and_recursive_anchors_do_not_crash(write, tmp_path: Path) -> None:
    write("0001_a.yaml", "parents: []\ntables:\n  t:\n    location: user\n"
                         "    fields: &f {a: string}\n  u:\n    location: user\n"
                         "    fields: *f\n")
    [v] = load_versions(tmp_path)
    assert v.schema.tables["u"].fields == v.schema.tables["t"].fields
    write("0001_a.yaml", "parents: []\ntables: &loop {t: *loop}\n")
    problems = _problems(tmp_path)
    assert problems and all(p.code.startswith("BYOD-E0") for p in problems)


def test_recursive_field_alias_is_a_problem_not_a_crash(write, tmp_path: Path) -> None:
    write("0001_a.yaml", "parents: []\ntables:\n  t:\n    location: user\n"
                         "    fields: &x {a: *x}\n")
    problems = _problems(tmp_path)
    assert [p.code for p in problems] == ["BYOD-E004"]
    assert "recursive YAML alias" in problems[0].message


def test_lint_acknowledgements(write, tmp_path: Path) -> None:
    write("0001_a.yaml", """
        parents: []
        tables: {}
        lint:
          acknowledge:
            BYOD-W140: >-
              released before the index
              was added
            BYOD-W142: shipped as is
        """)
    write("0002_b.yaml", "parents: [1]\ntables: {}\nlint:\n")
    first, second = load_versions(tmp_path)
    assert first.lint.acknowledge == {"BYOD-W140": "released before the index was added",
                                      "BYOD-W142": "shipped as is"}
    assert second.lint.acknowledge == {}
    assert first.source is not None and first.source.lines["lint.acknowledge.BYOD-W140"] == 5
