"""The configuration cannot fail silently: every bad input names its file and line (or its
variable), the environment overrides the file, and ``byod config show`` says where each
value came from without showing a secret."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.commands import Workspace, config_show
from engine.commands.settings import redact_webhook
from engine.config import EngineConfig, find_key_line, load_config, resolve_config
from engine.errors import ConfigError

NO_ENV: dict[str, str] = {}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "byod.toml"
    path.write_text(text)
    return path


def _error(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, NO_ENV if env is None else env)
    return str(info.value)


# -- find_key_line ---------------------------------------------------------------------------

TEXT = """\
# a comment = not a key
[byod]
registry_path = "r.sqlite3"   # trailing comment
"expected_heads" = [
  "a = b",
]
auth.application_id = "x"
notes = '''
deploy_timeout_s = 1
'''
deploy_timeout_s = 5

[byod.auth]
issuer_domain = "https://i"

[ other . table ]
key = 1
"""


@pytest.mark.parametrize("path, line", [
    (("byod",), 2),
    (("byod", "registry_path"), 3),
    (("byod", "expected_heads"), 4),
    (("byod", "auth", "application_id"), 7),
    (("byod", "deploy_timeout_s"), 11),  # not the look-alike inside the multi-line string
    (("byod", "auth"), 13),  # its header: an exact match wins over a dotted key
    (("byod", "auth", "issuer_domain"), 14),
    (("other", "table"), 16),
    (("other", "table", "key"), 17),
    (("byod", "absent"), None),
    (("a",), None),
])
def test_find_key_line(path: tuple[str, ...], line: int | None) -> None:
    assert find_key_line(TEXT, path) == line


def test_find_key_line_inline_table_points_at_its_key() -> None:
    text = 'x = 1\nauth = { issuer_domain = "https://i", bogus = 1 }\n'
    assert find_key_line(text, ("auth", "bogus")) == 2


# -- each bad input, with file and line ------------------------------------------------------

def test_auth_table_after_byod_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, '[byod]\nregistry_path = "r"\n\n[auth]\n'
                            'issuer_domain = "https://clerk.acme.dev"\n')
    assert _error(path) == (f"{path}:4: [auth] is a top-level table, outside [byod]: "
                            "did you mean [byod.auth]?")


def test_a_setting_outside_the_byod_table_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, 'registry_path = "r"\n[byod]\navailability = "premium"\n')
    assert _error(path) == (f"{path}:1: 'registry_path' is outside the [byod] table: "
                            "move it under [byod]")


def test_an_unknown_top_level_key_beside_byod_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, '[byod]\navailability = "premium"\n\n[extras]\nx = 1\n')
    assert _error(path) == (f"{path}:4: unknown top-level table 'extras': every setting goes "
                            "in the [byod] table")


def test_unknown_key_in_the_byod_table(tmp_path: Path) -> None:
    path = _write(tmp_path, '[byod]\nregistry_path = "r"\nhttp_timeout = 5\n')
    assert _error(path) == (f"{path}:3: unknown key 'http_timeout' "
                            "(did you mean 'http_timeout_s'?)")


def test_unknown_key_at_the_top_level_of_the_flat_layout(tmp_path: Path) -> None:
    path = _write(tmp_path, 'registry_path = "r"\nregistry = "s"\n')
    assert _error(path).startswith(f"{path}:2: unknown key 'registry'")


def test_unknown_key_in_byod_auth(tmp_path: Path) -> None:
    path = _write(tmp_path, '[byod]\n\n[byod.auth]\nissuer = "https://i"\n')
    assert _error(path) == f"{path}:4: unknown key 'auth.issuer' (did you mean 'issuer_domain'?)"


def test_wrong_types(tmp_path: Path) -> None:
    path = _write(tmp_path, '[byod]\nexpected_heads = "0001"\navailability = 3\n'
                            'http_timeout_s = "30"\n')
    message = _error(path)
    assert f"{path}:2: expected_heads: " in message
    assert f"{path}:3: availability: Input should be 'everyone' or 'premium'" in message
    assert f"{path}:4: http_timeout_s: Input should be a valid number" in message


def test_byod_that_is_not_a_table(tmp_path: Path) -> None:
    path = _write(tmp_path, 'byod = "yes"\n')
    assert _error(path) == f"{path}:1: 'byod' must be a table ([byod])"


@pytest.mark.parametrize("value", ["0", "-1", "-0.5"])
@pytest.mark.parametrize("key", ["deploy_timeout_s", "http_timeout_s"])
def test_timeouts_must_be_positive(tmp_path: Path, key: str, value: str) -> None:
    path = _write(tmp_path, f'[byod]\nregistry_path = "r"\n{key} = {value}\n')
    assert _error(path) == f"{path}:3: {key}: Input should be greater than 0"


@pytest.mark.parametrize("url, got", [
    ("file:///etc/passwd", "scheme 'file'"),
    ("ftp://alerts.example.com/x", "scheme 'ftp'"),
    ("alerts.example.com/hook", "no scheme"),
    ("https:///no-host", "scheme 'https'"),
])
def test_webhook_url_must_be_http(tmp_path: Path, url: str, got: str) -> None:
    path = _write(tmp_path, f'[byod]\nwebhook_url = "{url}"\n')
    message = _error(path)
    assert message == (f"{path}:2: webhook_url: must be an http:// or https:// URL with a "
                       f"host ({got})")
    assert url not in message


def test_bad_webhook_url_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"BYOD_CONFIG": os.devnull, "BYOD_WEBHOOK_URL": "file:///x?token=s"})
    assert str(info.value) == ("BYOD_WEBHOOK_URL: webhook_url: must be an http:// or https:// "
                               "URL with a host (scheme 'file')")


def test_bad_availability_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^BYOD_AVAILABILITY: availability: Input should"):
        load_config(None, {"BYOD_CONFIG": os.devnull, "BYOD_AVAILABILITY": "gold"})


def test_a_named_config_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(None, {"BYOD_CONFIG": str(missing)})
    assert str(info.value) == f"{missing}: the config file does not exist (named by BYOD_CONFIG)"
    with pytest.raises(ConfigError, match="the config file does not exist$"):
        load_config(missing, NO_ENV)


def test_no_byod_toml_at_all_means_the_defaults(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, NO_ENV) == EngineConfig()
    assert load_config(None, {"BYOD_CONFIG": ""}) == EngineConfig()  # empty = unset


def test_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[byod\n")
    assert _error(path).startswith(f"{path}: not valid TOML: ")


# -- what is read, and from where ------------------------------------------------------------

GOOD = """\
[byod]
registry_path = "from-file.sqlite3"
availability = "everyone"
deploy_timeout_s = 180
webhook_url = "https://hooks.example.com/services/T0/B0/s3cr3t-t0ken"

[byod.auth]
issuer_domain = "https://clerk.acme.dev"
"""


def test_the_byod_table_and_its_auth_sub_table_are_read(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD), NO_ENV)
    assert config.registry_path == Path("from-file.sqlite3")
    assert config.auth.issuer_domain == "https://clerk.acme.dev"
    assert config.auth.application_id == "convex"
    assert config.deploy_timeout_s == 180.0 and config.http_timeout_s == 30.0


def test_the_flat_layout_still_reads(tmp_path: Path) -> None:
    path = _write(tmp_path, 'registry_path = "r"\nhttp_timeout_s = 10\n\n[auth]\n'
                            'issuer_domain = "https://clerk.acme.dev"\n')
    resolved = resolve_config(path, NO_ENV)
    assert resolved.config.auth.issuer_domain == "https://clerk.acme.dev"
    assert resolved.sources["auth.issuer_domain"] == f"file {path}:5"
    assert resolved.sources["http_timeout_s"] == f"file {path}:2"


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    env = {"BYOD_REGISTRY": str(tmp_path / "env.sqlite3"), "BYOD_AVAILABILITY": "premium",
           "BYOD_VERSIONS_DIR": "elsewhere", "BYOD_WEBHOOK_URL": "http://alerts.internal/h",
           "BYOD_ENCRYPTION_KEY": "ab" * 32}
    resolved = resolve_config(path, env)
    config = resolved.config
    assert config.registry_path == tmp_path / "env.sqlite3"
    assert config.availability == "premium"
    assert config.versions_dir == Path("elsewhere")
    assert config.webhook_url == "http://alerts.internal/h"
    assert config.deploy_timeout_s == 180.0  # still the file's
    assert resolved.sources["registry_path"] == "env BYOD_REGISTRY"
    assert resolved.sources["availability"] == "env BYOD_AVAILABILITY"
    assert resolved.sources["deploy_timeout_s"] == f"file {path}:4"
    assert resolved.sources["auth.issuer_domain"] == f"file {path}:8"
    assert resolved.sources["http_timeout_s"] == "default"


def test_byod_config_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    assert load_config(None, {"BYOD_CONFIG": str(path)}).registry_path == Path(
        "from-file.sqlite3")


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    config = load_config(path, {"BYOD_REGISTRY": "", "BYOD_VERSIONS_DIR": ""})
    assert config.registry_path == Path("from-file.sqlite3")
    assert config.versions_dir == Path("schema_versions")


def test_direct_construction_reads_no_environment(monkeypatch) -> None:
    monkeypatch.setenv("BYOD_REGISTRY", "from-env.sqlite3")
    monkeypatch.setenv("registry_path", "from-env.sqlite3")
    assert EngineConfig().registry_path == Path(".byod/registry.sqlite3")


# -- config show -----------------------------------------------------------------------------

def test_redact_webhook_keeps_scheme_and_host() -> None:
    assert redact_webhook("https://hooks.example.com/T0/B0/secret?token=x") == (
        "https://hooks.example.com")
    assert redact_webhook("http://user:pw@alerts.internal:8080/h") == "http://alerts.internal:8080"
    assert redact_webhook(None) is None


SERVICE_KEYS = [
    "serve.host", "serve.port", "serve.public_url", "serve.enabled", "serve.upgrade_url",
    "serve.monitor_interval_s", "serve.user_token_ttl_s", "serve.credential_tests_per_minute",
    "serve.credential_tests_per_token_per_minute", "serve.main_functions",
    "serve.job_claim_ttl_s", "serve.allow_insecure_local", "serve.frame_ancestors",
    "alerts.email.smtp_host",
    "alerts.email.smtp_port", "alerts.email.username", "alerts.email.from_address",
    "alerts.email.to_addresses", "alerts.email.starttls", "alerts.email.timeout_s",
    "serve.secret", "alerts.email.password"]


def test_config_show_values_sources_and_redaction(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    env = {"BYOD_AVAILABILITY": "premium"}
    ws = Workspace.open(load_config(path, env))
    view = config_show(ws, path=path, env=env)
    entries = {e.key: e for e in view.entries}
    assert view.file == path
    assert list(entries) == ["versions_dir", "expected_heads", "convex_version",
                             "auth.issuer_domain", "auth.application_id", "storage_on",
                             "availability", "registry_path", "webhook_url",
                             "deploy_timeout_s", "http_timeout_s", "lint_ignore",
                             "functions_dir", *SERVICE_KEYS]
    assert entries["lint_ignore"].source == "default"
    assert (entries["availability"].value, entries["availability"].source) == (
        "premium", "env BYOD_AVAILABILITY")
    assert (entries["registry_path"].value, entries["registry_path"].source) == (
        "from-file.sqlite3", f"file {path}:2")
    assert entries["convex_version"].source == "default"
    assert entries["webhook_url"].value == "https://hooks.example.com"
    assert entries["webhook_url"].redacted and entries["webhook_url"].source == f"file {path}:5"
    assert "s3cr3t" not in json.dumps(view.to_dict())


def test_config_show_marks_values_the_workspace_changed(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    ws = Workspace.open(load_config(path, NO_ENV)).with_versions_dir(tmp_path / "v")
    entries = {e.key: e for e in config_show(ws, path=path, env=NO_ENV).entries}
    assert entries["versions_dir"].source == "workspace"
    assert entries["versions_dir"].value == str(tmp_path / "v")


def _invoke(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    clean = {k: None for k in os.environ if k.startswith("BYOD_")}
    runner = CliRunner()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(cli, args, env={**clean, **env})
    finally:
        os.chdir(old)
    return result.exit_code, result.output


def test_cli_config_show_json(tmp_path: Path) -> None:
    _write(tmp_path, GOOD)
    code, out = _invoke(["config", "show", "--json"],
                        {"BYOD_REGISTRY": "env.sqlite3"}, tmp_path)
    assert code == 0, out
    data = json.loads(out)
    settings = {s["key"]: s for s in data["settings"]}
    assert data["file"] == "byod.toml"
    assert settings["registry_path"] == {"key": "registry_path", "value": "env.sqlite3",
                                         "source": "env BYOD_REGISTRY", "redacted": False}
    assert settings["auth.issuer_domain"]["source"] == "file byod.toml:8"
    assert settings["webhook_url"]["value"] == "https://hooks.example.com"
    assert "s3cr3t" not in out


def test_cli_config_show_text(tmp_path: Path) -> None:
    _write(tmp_path, GOOD)
    code, out = _invoke(["config", "show"], {}, tmp_path)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "config file: byod.toml"
    (row,) = [line for line in lines if line.startswith("deploy_timeout_s")]
    assert row.split() == ["deploy_timeout_s", "180.0", "file", "byod.toml:4"]
    (row,) = [line for line in lines if line.startswith("webhook_url")]
    assert "https://hooks.example.com" in row and "(redacted)" in row
    assert "s3cr3t" not in out


def test_cli_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    _write(tmp_path, '[byod]\nregistry_path = "r"\n\n[auth]\nissuer_domain = "https://i"\n')
    code, out = _invoke(["config", "show"], {}, tmp_path)
    assert code == 1
    assert "byod.toml:4: [auth] is a top-level table, outside [byod]: did you mean " \
           "[byod.auth]?" in out
    assert "Traceback" not in out
