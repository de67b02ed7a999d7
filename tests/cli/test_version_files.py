"""``byod new``, ``byod history`` and ``byod show`` over a copy of the shipped versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from engine import assets
from engine.cli.main import cli
from engine.cli.output import schema_for
from engine.config import EngineConfig
from engine.schema.loader import load_versions


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    target = tmp_path / "versions"
    target.mkdir()
    for path in assets.example_versions_dir().glob("*.yaml"):
        shutil.copy(path, target)
    return target


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_new_starts_from_the_head_with_its_schema_and_no_hints(versions: Path) -> None:
    code, out = run("new", "Add reminders!", "-m", 'Tasks get "reminders"',
                    "--versions", str(versions))
    assert code == 0, out
    path = versions / "0008_add_reminders.yaml"
    assert f"created {path}" in out
    loaded = {v.id: v for v in load_versions(versions)}
    new, head = loaded["0008_add_reminders"], loaded["0007_reference_indexes"]
    assert new.parents == (head.id,) and new.number == 8
    assert new.schema == head.schema and new.description == 'Tasks get "reminders"'
    assert new.migrations == () and new.consent.drop_fields == () and not new.lint.acknowledge
    # the head's 0006 hints are not carried over; its comments are
    assert "# the Clerk id" in path.read_text()
    code, out = run("check", "--versions", str(versions))
    assert code == 0 and "8 version(s), 0 error(s), 0 warning(s)" in out, out
    # the next one builds on it
    code, _ = run("new", "more", "--versions", str(versions))
    assert code == 0 and (versions / "0009_more.yaml").is_file()
    assert load_versions(versions)[-1].parents == ("0008_add_reminders",)


def test_new_refuses_an_empty_name_and_names_a_missing_parent(versions: Path) -> None:
    result = CliRunner().invoke(cli, ["new", "!!", "--versions", str(versions)])
    assert result.exit_code == 1 and "no letters or digits" in result.output
    result = CliRunner().invoke(cli, ["new", "x", "--parent", "0007_reference_indexs",
                                      "--versions", str(versions)])
    assert result.exit_code == 1 and "did you mean '0007_reference_indexes'" in result.output
    assert sorted(p.name for p in versions.glob("00*.yaml"))[-1] == "0007_reference_indexes.yaml"


def test_new_with_several_heads_needs_a_parent(versions: Path) -> None:
    for path in versions.glob("000[67]*.yaml"):
        path.unlink()  # 0004 and 0005 are both heads now
    result = CliRunner().invoke(cli, ["new", "x", "--versions", str(versions)])
    assert result.exit_code == 1 and "several heads" in result.output
    code, out = run("new", "x", "--parent", "4", "--versions", str(versions))
    assert code == 0, out
    assert load_versions(versions)[-1].parents == ("0004_task_priorities",)


def test_history_lists_every_version_with_its_changes(versions: Path) -> None:
    code, out = run("history", "--versions", str(versions))
    assert code == 0
    assert out.splitlines()[0].startswith("0001_initial: Initial deployed schema")
    assert "0007_reference_indexes (head):" in out
    assert "from 0004_task_priorities: 1 safe, 3 data step" in out
    code, out = run("history", "--json", "--versions", str(versions))
    data = json.loads(out)
    jsonschema.Draft202012Validator(schema_for("history")).validate(data)
    assert [v["id"] for v in data["versions"]][-1] == "0007_reference_indexes"
    merge = next(v for v in data["versions"] if v["id"] == "0006_merge")
    assert merge["from_parents"]["0005_notes_usage"]["destructive"] == 2


def test_show_describes_one_version_and_its_functions(versions: Path, monkeypatch,
                                                     tmp_path: Path) -> None:
    code, out = run("show", "4", "--versions", str(versions))
    assert code == 0, out
    assert out.startswith("0004_task_priorities ")
    assert "hint backfill tasks.priority" in out and "consent drop_fields: conversations.model" in out
    config = tmp_path / "byod.toml"
    config.write_text(f'[byod]\nfunctions_dir = "{assets.example_functions_dir().as_posix()}"\n')
    monkeypatch.setenv("BYOD_CONFIG", str(config))
    code, out = run("show", "4", "--json", "--versions", str(versions))
    data = json.loads(out)
    jsonschema.Draft202012Validator(schema_for("show")).validate(data)
    assert data["functions"]["pinned"] is True and "notes.ts" in data["functions"]["modules"]
    assert data["tables"]["users"]["location"] == "main"
    head = json.loads(run("show", "head", "--json", "--versions", str(versions))[1])
    assert head["functions"]["pinned"] is False and head["head"] is True
    assert head["fingerprint"] != data["fingerprint"]
    assert EngineConfig().functions_dir is None  # the setting came from the file only
