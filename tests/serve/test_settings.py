"""The service's settings: ``[serve]`` and ``[alerts.email]`` in ``byod.toml`` with the
file and line of every problem, secrets only from the environment (a clear error naming
``BYOD_SERVE_SECRET``), never printed; ``byod config show`` shows them redacted; the
tokens and user-link CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.commands.settings import config_show
from engine.commands.workspace import Workspace
from engine.config import load_config, resolve_config
from engine.errors import ConfigError
from engine.serve.settings import ServeSettings

SECRET = "settings-test-secret-" + "k" * 30


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "byod.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_serve_and_email_tables_are_read_with_their_sources(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[byod.serve]\nport = 9001\nenabled = false\n"
                           "upgrade_url = \"https://example.com/up\"\n"
                           "[byod.alerts.email]\nsmtp_host = \"mail.example.com\"\n"
                           "to_addresses = [\"ops@example.com\"]\n")
    resolved = resolve_config(path, {})
    assert resolved.config.serve.port == 9001 and resolved.config.serve.enabled is False
    assert resolved.sources["serve.port"] == f"file {path}:2"
    assert resolved.sources["alerts.email.smtp_host"] == f"file {path}:6"
    settings = ServeSettings.from_config(resolved.config, {"BYOD_SERVE_SECRET": SECRET,
                                                           "BYOD_SMTP_PASSWORD": "pw-123"})
    assert settings.smtp.enabled and settings.smtp.password is not None
    assert settings.smtp.password.get_secret_value() == "pw-123"
    text = repr(settings) + str(settings) + settings.model_dump_json()
    assert SECRET not in text and "pw-123" not in text


@pytest.mark.parametrize(("text", "problem"), [
    ("[byod.serve]\nprot = 1\n", ":2: unknown key 'serve.prot' (did you mean 'port'?)"),
    ("[byod.serve]\nport = 70000\n", "serve.port"),
    ("[byod.serve]\npublic_url = \"ftp://x\"\n", "serve.public_url: must be an http"),
    ("[byod.alerts.email]\nto_addresses = [\"nobody\"]\n", "is not an email address"),
    ("[byod.alerts.email]\nsmpt_host = \"x\"\n", "did you mean 'smtp_host'?"),
])
def test_bad_service_settings_name_file_and_line(tmp_path: Path, text: str,
                                                 problem: str) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert problem in str(caught.value)


@pytest.mark.parametrize(("env", "problem"), [
    ({}, "BYOD_SERVE_SECRET is not set"),
    ({"BYOD_SERVE_SECRET": "short"}, "BYOD_SERVE_SECRET is too short"),
])
def test_a_missing_or_weak_secret_is_refused_naming_the_variable(env: dict[str, str],
                                                                 problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        ServeSettings.from_config(load_config(None, {}), env)
    assert "short" not in str(caught.value).replace("too short", "")


def test_config_show_redacts_the_secrets(tmp_path: Path) -> None:
    env = {"BYOD_SERVE_SECRET": SECRET}
    ws = Workspace.open(load_config(None, env))
    view = config_show(ws, env=env)
    entries = {e.key: e for e in view.entries}
    assert entries["serve.secret"].value == "(set)" and entries["serve.secret"].redacted
    assert entries["alerts.email.password"].value is None
    assert entries["serve.port"].value == 8000
    assert SECRET not in json.dumps(view.to_dict())


def test_tokens_and_user_link_cli(tmp_path: Path) -> None:
    env = {"BYOD_REGISTRY": str(tmp_path / "r.sqlite3"), "BYOD_SERVE_SECRET": SECRET,
           "BYOD_CONFIG": ""}
    runner = CliRunner()
    made = runner.invoke(cli, ["tokens", "create", "--name", "app", "--scope",
                               "settings,data", "--json"], env=env)
    assert made.exit_code == 0, made.output
    record = json.loads(made.stdout)
    assert record["token"].startswith("byod_") and record["scopes"] == ["settings", "data"]
    listed = runner.invoke(cli, ["tokens", "list", "--json"], env=env)
    assert record["token"] not in listed.output
    assert json.loads(listed.stdout)[0]["token_id"] == record["token_id"]
    bad = runner.invoke(cli, ["tokens", "create", "--name", "x", "--scope", "root"], env=env)
    assert bad.exit_code == 1 and "unknown scope 'root'" in bad.output
    revoked = runner.invoke(cli, ["tokens", "revoke", record["token_id"]], env=env)
    assert revoked.exit_code == 0 and "revoked token" in revoked.output
    link = runner.invoke(cli, ["serve", "user-link", "alice"], env=env)
    assert link.exit_code == 0 and "/ui/login?token=" in link.stdout
    assert SECRET not in link.output
    missing = runner.invoke(cli, ["serve", "user-link", "alice"],
                            env={**env, "BYOD_SERVE_SECRET": ""})
    assert missing.exit_code == 1 and "BYOD_SERVE_SECRET is not set" in missing.output
