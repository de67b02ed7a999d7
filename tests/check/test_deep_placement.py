"""``check --deep`` type-checks everything that will run and reports each type error where
it was written: hint code at its version file and line, an app function at its module."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.check.deep import deep_check
from engine.config import EngineConfig
from engine.errors import Problem
from engine.schema.loader import load_versions

pytestmark = [pytest.mark.toolchain, pytest.mark.slow]

V1 = """
description: notes with a size string
parents: []
tables:
  notes:
    location: user
    fields:
      userId: string
      title: string
      size: string
    indexes:
      by_user: [userId]
"""

V2 = """
description: notes get a slug; size becomes a number
parents: [0001_a]
tables:
  notes:
    location: user
    fields:
      userId: string
      title: string
      slug: string
      size: number
    indexes:
      by_user: [userId]
migrations:
  - op: custom
    table: notes
    code: |
      if (doc.slug !== undefined) return null;
      return { slug: doc.titel.toLowerCase() };
  - op: convert
    table: notes
    field: size
    code: |
      if (typeof value === "number") return value;
      return value.lenght;
"""

NOTES = """
import { v } from "convex/values";
import { query } from "./_generated/server";

export const listForUser = query({
  args: { userId: v.string() },
  handler: async (ctx, { userId }) => {
    const notes = await ctx.db
      .query("notes")
      .withIndex("by_user", (q) => q.eq("userId", userId))
      .collect();
    return notes.map((note) => note.titel);
  },
});
"""

GOOD_NOTES = NOTES.replace("note.titel", "note.title")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1)
                if needle in line)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deep-placement")
    _write(root / "versions" / "0001_a.yaml", V1)
    _write(root / "versions" / "0002_b.yaml", V2)
    _write(root / "functions" / "notes.ts", NOTES)
    return root


@pytest.fixture(scope="module")
def problems(project: Path, toolchain) -> list[Problem]:
    config = EngineConfig(versions_dir=project / "versions", functions_dir=project / "functions")
    return deep_check(load_versions(project / "versions"), config, toolchain)


def test_a_custom_step_error_names_the_version_file_and_hint_line(
        problems: list[Problem], project: Path) -> None:
    v2 = project / "versions" / "0002_b.yaml"
    [found] = [p for p in problems if "titel" in p.message and p.file.endswith("0002_b.yaml")]
    assert found.location == "migrations[0].code"
    assert found.line == _line_of(v2, "doc.titel")
    assert "TS2551" in found.message and "0001_a -> 0002_b (widened)" in found.message
    assert "byodMigrations.ts" in found.message  # and where it was generated


def test_a_convert_step_error_names_the_version_file_and_hint_line(
        problems: list[Problem], project: Path) -> None:
    v2 = project / "versions" / "0002_b.yaml"
    [found] = [p for p in problems if "lenght" in p.message]
    assert found.file.endswith("0002_b.yaml") and found.location == "migrations[1].code"
    assert found.line == _line_of(v2, "value.lenght")


def test_an_app_function_error_names_the_function_file_in_every_bundle(
        problems: list[Problem], project: Path) -> None:
    notes = project / "functions" / "notes.ts"
    found = [p for p in problems if p.file == (project / "functions" / "notes.ts").as_posix()]
    assert found, [p.render() for p in problems]
    assert {p.line for p in found} == {_line_of(notes, "note.titel")}
    bundles = {p.message.rsplit("(in the bundle of ", 1)[1].removesuffix(")") for p in found}
    assert bundles == {"0001_a", "0002_b", "0001_a -> 0002_b (widened)"}
    assert all(p.location.startswith("notes.ts:") for p in found)
    # nothing is blamed on a generated file
    assert not [p for p in problems if p.file.endswith(".ts") and "_generated" in p.file]
    assert len(problems) == 2 + len(found), [p.render() for p in problems]


def test_a_clean_project_passes(project: Path, toolchain, tmp_path: Path) -> None:
    """The same project with the three mistakes fixed has no problem at all."""

    versions = tmp_path / "versions"
    _write(versions / "0001_a.yaml", V1)
    _write(versions / "0002_b.yaml",
           V2.replace("doc.titel", "doc.title").replace("value.lenght", "value.length"))
    _write(tmp_path / "functions" / "notes.ts", GOOD_NOTES)
    config = EngineConfig(versions_dir=versions, functions_dir=tmp_path / "functions")
    problems = deep_check(load_versions(versions), config, toolchain)
    assert problems == [], [p.render() for p in problems]
