"""``byod check`` through click: exit codes, one line per problem, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli.check import check

from .reference import MESSAGES_DRAFT

GOOD = """
parents: []
tables:
  notes:
    location: user
    fields: {userId: string, parent: id(notes)}
    indexes: {by_user: [userId], by_parent: [parent]}
"""


def empty_config(tmp_path: Path) -> str:
    """An empty config file outside the version directory: every setting at its default,
    whatever ``byod.toml`` the working directory holds."""

    path = tmp_path / "config" / "byod.toml"
    path.parent.mkdir(exist_ok=True)
    path.touch()
    return str(path)


def invoke(tmp_path: Path, *args: str) -> Result:
    env = {"BYOD_CONFIG": empty_config(tmp_path), "BYOD_VERSIONS_DIR": ""}
    return CliRunner().invoke(check, list(args), env=env, catch_exceptions=False)


def test_good_directory_passes(write, tmp_path: Path) -> None:
    write("0001_a.yaml", GOOD)
    result = invoke(tmp_path, "--versions", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "check ok: 1 version(s), 0 error(s), 0 warning(s)"


def test_reference_draft_is_rejected_precisely(write, tmp_path: Path) -> None:
    path = write("0001_a.yaml", MESSAGES_DRAFT)
    result = invoke(tmp_path, "--versions", str(tmp_path))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:16: error [BYOD-E114]: "
                               "tables.messages.vector_indexes.embedding: ")
    assert 'In table "messages" the index "embedding"' in lines[0]
    assert 'references the field "embedding" that does not exist' in lines[0]
    assert "hint:" in lines[0]
    assert lines[1] == "check failed: 1 version(s), 1 error(s), 0 warning(s)"


def test_warnings_pass_unless_strict(write, tmp_path: Path) -> None:
    write("0001_a.yaml", GOOD.replace("by_parent: [parent]", "by_both: [userId, parent]"))
    result = invoke(tmp_path, "--versions", str(tmp_path))
    assert result.exit_code == 0
    assert "warning [BYOD-W140]" in result.output
    assert result.output.splitlines()[-1] == "check ok: 1 version(s), 0 error(s), 1 warning(s)"
    strict = invoke(tmp_path, "--versions", str(tmp_path), "--strict")
    assert strict.exit_code == 1
    # the summary agrees with the exit code and says why
    assert strict.output.splitlines()[-1] == ("check failed: 1 version(s), 0 error(s), "
                                              "1 warning(s) (--strict: warnings fail the check)")
    assert json.loads(invoke(tmp_path, "--versions", str(tmp_path), "--strict",
                             "--json").output)["ok"] is False


def test_strict_without_warnings_passes(write, tmp_path: Path) -> None:
    write("0001_a.yaml", GOOD)
    result = invoke(tmp_path, "--versions", str(tmp_path), "--strict")
    assert result.exit_code == 0
    assert result.output.strip() == "check ok: 1 version(s), 0 error(s), 0 warning(s)"


def test_an_edge_that_cannot_be_planned_fails_the_check(write, tmp_path: Path) -> None:
    write("0001_a.yaml", GOOD.replace("{userId: string, parent: id(notes)}",
                                      "{userId: string, parent: id(notes), 'color?': string}"))
    child = write("0002_b.yaml", GOOD.replace("parents: []", "parents: [0001_a]"))
    result = invoke(tmp_path, "--versions", str(tmp_path))
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "check failed: 2 version(s), 1 error(s), 0 warning(s)"
    assert lines[0].startswith(f"{child}:3: error [BYOD-E164]: tables.notes: edge 0001_a -> "
                               "0002_b cannot be planned: [BYOD-D203] notes.color")
    assert "(hint: add 'notes.color' to consent.drop_fields)" in lines[0]


def test_broken_files_one_line_each(write, tmp_path: Path) -> None:
    write("0001_a.yaml", "parents: []\ntables:\n  t:\n    location: user\n    fields: {a: strng\n")
    write("0002_b.yaml", "parents: [1]\ntables:\n  t:\n    location: user\n    fields:\n"
                         "      a: strng\n      b: id(\n")
    write("notes.yaml", "parents: []\ntables: {}\n")
    result = invoke(tmp_path, "--versions", str(tmp_path))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 5  # four problems and the summary
    assert "Traceback" not in result.output
    assert lines[-1] == "check failed: 0 version(s), 4 error(s), 0 warning(s)"
    assert any("0002_b.yaml:6: error [BYOD-E007]" in line and "did you mean 'string'" in line
               for line in lines)
    assert any("notes.yaml: error [BYOD-E002]" in line for line in lines)


def test_json_output(write, tmp_path: Path) -> None:
    write("0001_a.yaml", MESSAGES_DRAFT)
    result = invoke(tmp_path, "--versions", str(tmp_path), "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False and report["errors"] == 1 and report["versions"] == ["0001_a"]
    [problem] = report["problems"]
    assert problem["code"] == "BYOD-E114" and problem["line"] == 16


def test_missing_directory(tmp_path: Path) -> None:
    result = invoke(tmp_path, "--versions", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert "BYOD-E001" in result.output and "Traceback" not in result.output


def test_default_directory_comes_from_config(write, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    write("0001_a.yaml", GOOD, directory=tmp_path / "schema_versions")
    monkeypatch.chdir(tmp_path)
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert "1 version(s)" in result.output


def test_registered_on_the_main_group(write, tmp_path: Path) -> None:
    from engine.cli.main import cli

    write("0001_a.yaml", MESSAGES_DRAFT)
    env = {"BYOD_CONFIG": empty_config(tmp_path)}
    result = CliRunner().invoke(cli, ["check", "--versions", str(tmp_path)], env=env)
    assert result.exit_code == 1 and "BYOD-E114" in result.output


ACKNOWLEDGED = GOOD.replace("by_parent: [parent]", "by_both: [userId, parent]") + """
lint:
  acknowledge:
    BYOD-W140: released before by_parent existed
"""


def test_acknowledged_warnings_are_counted_not_printed(write, tmp_path: Path) -> None:
    path = write("0001_a.yaml", ACKNOWLEDGED)
    write("0002_b.yaml", GOOD.replace("parents: []", "parents: [0001_a]"))
    result = invoke(tmp_path, "--versions", str(tmp_path), "--strict")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("check ok: 2 version(s), 0 error(s), 0 warning(s) "
                                     "(1 acknowledged)")
    report = json.loads(invoke(tmp_path, "--versions", str(tmp_path), "--json").output)
    assert (report["ok"], report["warnings"], report["acknowledged"]) == (True, 0, 1)
    assert report["problems"] == []
    [ack] = report["acknowledged_problems"]
    assert (ack["file"], ack["line"], ack["code"], ack["severity"]) == (
        str(path), 5, "BYOD-W140", "warning")
    assert ack["location"] == "tables.notes.fields.parent"
    assert ack["reason"] == "released before by_parent existed"


def test_an_acknowledgement_covers_its_own_file_and_code_only(write, tmp_path: Path) -> None:
    write("0001_a.yaml", ACKNOWLEDGED)
    child = write("0002_b.yaml", GOOD.replace("parents: []", "parents: [0001_a]").replace(
        "by_parent: [parent]", "by_both: [userId, parent]"))
    result = invoke(tmp_path, "--versions", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{child}:5: warning [BYOD-W140]")
    assert lines[1] == "check ok: 2 version(s), 0 error(s), 1 warning(s) (1 acknowledged)"
    strict = invoke(tmp_path, "--versions", str(tmp_path), "--strict")
    assert strict.exit_code == 1
    assert strict.output.splitlines()[-1] == (
        "check failed: 2 version(s), 0 error(s), 1 warning(s) (1 acknowledged) "
        "(--strict: warnings fail the check)")


def test_acknowledging_an_error_code_is_an_error(write, tmp_path: Path) -> None:
    path = write("0001_a.yaml", GOOD + """
lint:
  acknowledge:
    BYOD-E114: the vector field is fine
""")
    result = invoke(tmp_path, "--versions", str(tmp_path))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == (f"{path}:10: error [BYOD-E012]: lint.acknowledge.BYOD-E114: BYOD-E114 "
                        "is an error: only warnings (BYOD-W...) can be acknowledged (hint: fix "
                        "what it reports instead: errors always fail the check)")
    assert lines[-1] == "check failed: 0 version(s), 1 error(s), 0 warning(s)"


def test_errors_are_never_acknowledged(tmp_path: Path) -> None:
    """Even a version that could carry an acknowledgement keeps every error reported."""

    from engine.commands.authoring import _acknowledge
    from engine.errors import Problem
    from engine.schema.models import LintSettings, Schema, SchemaVersion, SourceInfo

    v = SchemaVersion(id="0001_a", number=1, schema=Schema(),
                      lint=LintSettings(acknowledge={"BYOD-W140": "why"}),
                      source=SourceInfo(path="f.yaml"))
    error = Problem("f.yaml", 1, "", "boom", code="BYOD-W140")  # severity error
    warning = Problem("f.yaml", 2, "", "meh", code="BYOD-W140", severity="warning")
    other = Problem("g.yaml", 2, "", "meh", code="BYOD-W140", severity="warning")
    shown, acknowledged = _acknowledge([v], [error, warning, other])
    assert shown == [error, other] and acknowledged == [(warning, "why")]
