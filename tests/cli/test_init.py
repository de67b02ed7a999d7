"""``byod init`` from a small Convex app (``tests/fixtures/convex_app``): its schema.ts is
evaluated with the real ``convex`` library, version 1 and byod.toml are written, and the
project checks, builds and type-checks its functions like any other."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from engine.bundle.compiler import compile_version
from engine.bundle.functions import IGNORE_FILE, read_functions
from engine.cli.main import cli
from engine.cli.output import schema_for
from engine.commands import Workspace, check
from engine.schema.loader import load_versions
from engine.schema.models import Location

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "convex_app"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    target = tmp_path / "app"
    shutil.copytree(FIXTURE, target)
    return target


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_byodignore_leaves_the_apps_schema_and_auth_out_of_the_functions(app: Path) -> None:
    functions = app / "convex"
    assert "schema.ts" in read_functions(functions).paths
    (functions / IGNORE_FILE).write_text("# the bundle's own\nschema.ts\nauth.config.*\n")
    assert read_functions(functions).paths == ["notes.ts", "validators.ts"]


def test_init_refuses_without_a_schema_or_over_a_project(app: Path, tmp_path: Path) -> None:
    code, out = run("init", str(tmp_path), "--into", str(tmp_path / "p"))
    assert code == 1 and "no Convex schema here" in out
    project = tmp_path / "project"
    project.mkdir()
    (project / "byod.toml").write_text("[byod]\n")
    code, out = run("init", str(app), "--into", str(project))
    assert code == 1 and "byod.toml already exists" in out


@pytest.mark.toolchain
def test_init_writes_version_1_and_the_config_from_a_convex_app(
        app: Path, tmp_path: Path, toolchain, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    code, out = run("init", str(app), "--into", str(project), "--json")
    assert code == 0, out
    data = json.loads(out)
    jsonschema.validate(data, schema_for("init"))
    assert data["tables"] == {"notes": "user", "comments": "user"}
    assert data["modules"] == ["notes.ts", "validators.ts"] and data["ignore_written"]
    assert (project / "byod.toml").read_text().endswith(
        '[byod]\nversions_dir = "schema_versions"\nfunctions_dir = "../app/convex"\n')
    [v1] = load_versions(project / "schema_versions")
    notes, comments = v1.schema.tables["notes"], v1.schema.tables["comments"]
    assert v1.id == "0001_initial" and v1.parents == ()
    assert [i.name for i in notes.indexes] == ["by_user", "by_user_updated"]
    assert notes.search_indexes[0].filter_fields == ("userId",)
    assert notes.vector_indexes[0].dimensions == 8
    assert notes.fields["body"].optional and not notes.fields["title"].optional
    from engine.schema.types import format_type
    assert format_type(notes.fields["status"].type) == '"open" | "done" | "archived"'
    assert format_type(comments.fields["kind"].type) == "1 | 2n | null"
    assert format_type(comments.fields["noteId"].type) == "id(notes)"

    monkeypatch.chdir(project)
    ws = Workspace.open(project / "byod.toml")
    result = check(ws)
    assert not result.failed(), [p.render() for p in result.problems]
    bundle = compile_version(v1, ws.config)
    assert "convex/notes.ts" in bundle.files and "convex/validators.ts" in bundle.files
    assert "byodVersions" in bundle.files["convex/schema.ts"]  # the engine's, not the app's

    deep = check(ws, deep=True)
    assert not deep.failed(), [p.render() for p in deep.problems]
    notes_ts = app / "convex" / "notes.ts"
    notes_ts.write_text(notes_ts.read_text().replace("title, status:", "titel: title, status:"))
    deep = check(ws, deep=True)
    assert deep.failed()
    assert any(p.file.endswith("app/convex/notes.ts") for p in deep.problems), [
        p.render() for p in deep.problems]

    code, out = run("init", str(app), "--into", str(project))
    assert code == 1 and "already exists" in out


@pytest.mark.toolchain
def test_init_main_location_and_a_table_without_fields(app: Path, tmp_path: Path,
                                                       toolchain) -> None:
    code, out = run("init", str(app), "--into", str(tmp_path / "main"), "--location", "main")
    assert code == 0, out
    [v1] = load_versions(tmp_path / "main" / "schema_versions")
    assert {t.location for t in v1.schema.tables.values()} == {Location.MAIN}
    schema = app / "convex" / "schema.ts"
    schema.write_text(schema.read_text().replace("});\n", "  logs: defineTable({ any: v.any() }),\n"
                                                 "  raw: defineTable(v.any()),\n});\n"))
    code, out = run("init", str(app), "--into", str(tmp_path / "other"))
    assert code == 1 and "table 'raw'" in out and "declare them in schema.ts" in out
    assert not (tmp_path / "other" / "byod.toml").exists()
