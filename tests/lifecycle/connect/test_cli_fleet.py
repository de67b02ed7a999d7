"""The fleet CLI verbs without deployments: keys, status, entitle, input errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.registry.sqlite import SqliteStore
from engine.vault import Vault, generate_key

ROOT = Path(__file__).resolve().parents[3]
URL = "https://hidden-deployment-5.convex.cloud"
KEY = "prod:hidden-deployment-5|0a1b2c3d4e5f60718293a4b5c6d7e8f9aabbccddeeff"


@pytest.fixture()
def env(tmp_path) -> dict[str, str]:
    return {"BYOD_ENCRYPTION_KEY": generate_key(),
            "BYOD_REGISTRY": str(tmp_path / "reg" / "registry.sqlite3"),
            "BYOD_VERSIONS_DIR": str(ROOT / "schema_versions"),
            "BYOD_CONFIG": os.devnull,
            "BYOD_AVAILABILITY": "everyone"}


def byod(env, *args, stdin=None, code=0):
    result = CliRunner().invoke(cli, list(args), input=stdin, env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def _seed(env: dict[str, str]) -> SqliteStore:
    store = SqliteStore(env["BYOD_REGISTRY"])
    vault = Vault.from_hex(env["BYOD_ENCRYPTION_KEY"])
    url_ct, key_ct = vault.encrypt_credentials("alice", URL, KEY)
    store.upsert_credentials("alice", url_ct=url_ct, key_ct=key_ct)
    store.set_connection_status("alice", "error", error=f"auth failed with {KEY}")
    return store


def test_keys_generate_prints_a_usable_key_and_how_to_export_it(env) -> None:
    result = byod(env, "keys", "generate")
    key = result.stdout.strip()
    assert len(key) == 64 and Vault.from_hex(key)
    assert "export BYOD_ENCRYPTION_KEY=" in result.stderr and key not in result.stderr
    data = json.loads(byod(env, "keys", "generate", "--json").stdout)
    assert len(data["key"]) == 64 and data["key"] != key and len(data["key_id"]) == 8


def test_bad_encryption_key_is_a_clear_error(env) -> None:
    env["BYOD_ENCRYPTION_KEY"] = "not-a-key-at-all"
    result = byod(env, "keys", "rotate", code=1)
    assert "64 hex characters" in result.stderr and "not-a-key-at-all" not in result.output


def test_rotate_and_status_show_no_secret(env) -> None:
    store = _seed(env)
    before = store.get_user("alice")
    old = env["BYOD_ENCRYPTION_KEY"]
    env["BYOD_ENCRYPTION_KEY"], env["BYOD_ENCRYPTION_KEYS_OLD"] = generate_key(), old
    outputs = [byod(env, "keys", "rotate").output]
    outputs.append(byod(env, "status").output)
    outputs.append(byod(env, "status", "--json").output)
    detail = byod(env, "status", "--user", "alice", "--json")
    outputs += [detail.output, byod(env, "status", "--user", "alice").output]
    data = json.loads(detail.stdout)
    assert data["connection_status"] == "error" and "[REDACTED]" in data["connection_error"]
    assert any(h["event"] == "credentials_reencrypted" for h in data["history"])
    for text in outputs:
        for secret in (URL, KEY, KEY.split("|")[1], old, env["BYOD_ENCRYPTION_KEY"],
                       before.url_ct, before.key_ct, store.get_user("alice").key_ct):
            assert secret not in text


def test_status_of_unknown_user(env) -> None:
    result = byod(env, "status", "--user", "nobody", code=1)
    assert "no BYOD configuration for user 'nobody'" in result.stderr


def test_connect_reads_the_key_from_stdin_only(env) -> None:
    result = CliRunner().invoke(cli, ["connect", "--user", "u", "--url", URL, "--key", KEY],
                                env=env)
    assert result.exit_code == 2 and "No such option" in result.output
    result = byod(env, "connect", "--user", "u", "--url", URL, code=2)
    assert "--key-stdin" in result.output
    result = byod(env, "connect", "--user", "u", "--url", URL, "--key-stdin", stdin="", code=1)
    assert "no deploy key on stdin" in result.stderr
    result = byod(env, "connect", "--user", "u", "--retry", "--url", URL, code=2)


@pytest.mark.parametrize("url, key, message", [
    ("http://hidden-deployment-5.convex.cloud", KEY, "plain http"),
    (URL, "prod:hidden-deployment-5|tooshort", "too short"),
    (URL + "?adminKey=" + KEY, KEY, "query"),
])
def test_connect_refuses_bad_input_without_echo(env, url, key, message) -> None:
    for extra in ((), ("--json",)):
        result = byod(env, "connect", "--user", "u", "--url", url, "--key-stdin", *extra,
                      stdin=key + "\n", code=1)
        assert message in result.output
        assert "hidden-deployment" not in result.output and "tooshort" not in result.output


def test_entitle_and_premium_refusal(env) -> None:
    env["BYOD_AVAILABILITY"] = "premium"
    result = byod(env, "connect", "--user", "bob", "--url", URL, "--key-stdin",
                  stdin=KEY, code=1)
    assert "not entitled" in result.stderr
    assert json.loads(byod(env, "entitle", "--user", "bob", "--json").stdout)["entitled"]
    assert "not entitled" in byod(env, "entitle", "--user", "bob", "--revoke").stdout
