"""Input refused at the door: user ids with control characters (``connect``, ``entitle``)
never reach the registry, and ``--key-stdin`` takes exactly one key, never the first line of
several (``connect``, ``deploy``)."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.errors import InvalidCredentials, RegistryError
from engine.vault import generate_key

KEY = "prod:happy-animal-123|0123456789abcdef0123456789abcdef"
BAD_IDS = ["a\nb", "x\x07", "tab\there", "", "u" * 257, "nul\x00", "del\x7f"]


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "byod.toml"
    config.write_text("")
    return {"BYOD_REGISTRY": str(tmp_path / "registry.sqlite3"),
            "BYOD_ENCRYPTION_KEY": generate_key(), "BYOD_CONFIG": str(config)}


def _user_ids(env: dict[str, str]) -> list[str]:
    path = Path(env["BYOD_REGISTRY"])
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT user_id FROM users")]


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert lines, result.output
    return lines[0]


@pytest.mark.parametrize("user_id", BAD_IDS)
def test_check_user_id_refuses_without_echoing_control_characters(user_id):
    from engine.ports.registry import check_user_id

    with pytest.raises(RegistryError) as info:
        check_user_id(user_id)
    message = str(info.value)
    assert message.isprintable() and len(message) < 400


@pytest.mark.parametrize("user_id", ["u1", "alice@example.com", "user_é-42", "u" * 256])
def test_check_user_id_accepts_printable_ids(user_id):
    from engine.ports.registry import check_user_id

    check_user_id(user_id)


@pytest.mark.parametrize("user_id", ["a\nb", "x\x07"])
def test_entitle_refuses_a_control_character_user_id(env, user_id):
    result = CliRunner().invoke(cli, ["entitle", "--user", user_id], env=env)
    assert result.exit_code == 1, result.output
    line = _error_line(result)
    assert "user id" in line and repr(user_id) in line
    assert _user_ids(env) == []


def test_entitle_still_takes_a_plain_user_id(env):
    result = CliRunner().invoke(cli, ["entitle", "--user", "u1"], env=env)
    assert result.exit_code == 0, result.output
    assert _user_ids(env) == ["u1"]


def test_connect_refuses_a_control_character_user_id(env, monkeypatch):
    # the deployment answers (reachable, nothing deployed yet): the id is refused when the
    # row would be created, before anything is stored or deployed
    monkeypatch.setattr("engine.lifecycle.connect._probe", lambda adapter, label: None)
    deployed: list[str] = []
    monkeypatch.setattr("engine.lifecycle.connect._deploy_record_verify",
                        lambda *a, **k: deployed.append("x"))
    result = CliRunner().invoke(
        cli, ["connect", "--user", "a\nb", "--url", "http://127.0.0.1:9",
              "--allow-insecure-local", "--key-stdin"], input=KEY + "\n", env=env)
    assert result.exit_code == 1, result.output
    line = _error_line(result)
    assert "user id" in line and "'a\\nb'" in line
    assert KEY not in result.output
    assert _user_ids(env) == [] and deployed == []


# -- --key-stdin ---------------------------------------------------------------------------------

class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def read_key_stdin(stream: _Pipe) -> str:
    from engine.cli.secrets_input import read_key_stdin as read

    return read(stream)


@pytest.mark.parametrize("text", [KEY, KEY + "\n", "  " + KEY + "  \n", KEY + "\n\n"])
def test_read_key_stdin_takes_one_key(text):
    assert read_key_stdin(_Pipe(text)) == KEY


@pytest.mark.parametrize("text", ["", "\n", "   \n"])
def test_read_key_stdin_empty_is_empty(text):
    assert read_key_stdin(_Pipe(text)) == ""


@pytest.mark.parametrize("text", [KEY + "\nsecond-line", KEY + "\nsecond-line\n",
                                  "first\n\nsecond\nthird\n"])
def test_read_key_stdin_refuses_several_lines_without_echoing_them(text):
    with pytest.raises(InvalidCredentials) as info:
        read_key_stdin(_Pipe(text))
    message = str(info.value)
    n = len([line for line in text.splitlines() if line.strip()])
    assert f"stdin holds {n} lines" in message
    for line in text.splitlines():
        if line.strip():
            assert line.strip() not in message


def test_connect_refuses_a_multi_line_key(env):
    result = CliRunner().invoke(
        cli, ["connect", "--user", "u1", "--url", "http://127.0.0.1:9",
              "--allow-insecure-local", "--key-stdin"], input=KEY + "\nleaked-line\n", env=env)
    assert result.exit_code == 1, result.output
    line = _error_line(result)
    assert "stdin holds 2 lines" in line
    assert KEY not in result.output and "leaked-line" not in result.output
    assert _user_ids(env) == []


def test_deploy_refuses_a_multi_line_key(env, tmp_path):
    result = CliRunner().invoke(
        cli, ["deploy", "head", "--url", "http://127.0.0.1:9", "--allow-insecure-local",
              "--versions", str(tmp_path / "versions"), "--key-stdin"],
        input=KEY + "\nleaked-line\n", env=env)
    assert result.exit_code == 1, result.output
    line = _error_line(result)
    assert "stdin holds 2 lines" in line
    assert KEY not in result.output and "leaked-line" not in result.output
