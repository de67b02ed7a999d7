"""The CLI contract: exit codes (0 ok, 1 failure found, 2 usage, 3 refused for safety),
"did you mean" for versions and users, ISO 8601 UTC times, and the verbosity flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import output
from engine.cli.main import cli
from engine.errors import ConfirmationRequired, DestructivePath, LeaseHeld, UnknownUser
from engine.vault import generate_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "byod.toml").write_text("")
    return {"BYOD_REGISTRY": str(tmp_path / "registry.sqlite3"),
            "BYOD_VERSIONS_DIR": str(ROOT / "schema_versions"),
            "BYOD_ENCRYPTION_KEY": generate_key(),
            "BYOD_CONFIG": str(tmp_path / "byod.toml")}


def run(env: dict[str, str], *argv: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(argv), env=env, catch_exceptions=False)


def test_safety_refusals_exit_3() -> None:
    assert DestructivePath("x").exit_code == 3
    assert ConfirmationRequired("x").exit_code == 3
    assert LeaseHeld("u1", "someone", 0.0).exit_code == 3


def test_a_missing_target_is_a_usage_error(env: dict[str, str]) -> None:
    result = run(env, "rollout")
    assert result.exit_code == 2
    assert "--to VERSION" in result.output


def test_a_destructive_down_plan_is_refused_with_exit_3(env: dict[str, str]) -> None:
    result = run(env, "plan", "--from", "2", "--to", "1")
    assert result.exit_code == 3, result.output
    assert "--allow-destructive" in result.output or "allow" in result.output


def test_mistyped_versions_and_users_get_a_suggestion(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    result = run(env, "plan", "--from", "0001_intial")
    assert result.exit_code == 1
    assert "did you mean '0001_initial'?" in result.output
    from engine.registry.open import open_store

    with open_store(tmp_path / "registry.sqlite3") as store:
        store.upsert_credentials("alice", url_ct="x", key_ct="y")
    result = run(env, "status", "--user", "alcie")
    assert result.exit_code == 1
    assert "did you mean 'alice'?" in result.output
    assert UnknownUser("bob", ["alice"]).suggestions == []


def test_times_are_iso_8601_utc_in_json() -> None:
    data = output.to_json({"created_at": 0.0, "rows": [{"at": 1_764_428_400.0, "n": 3}],
                           "last_connection_test": None, "count": 5})
    assert data == {"created_at": None, "rows": [{"at": "2025-11-29T15:00:00Z", "n": 3}],
                    "last_connection_test": None, "count": 5}
    assert output.iso(1_764_428_400.0) == "2025-11-29T15:00:00Z"


def test_status_json_carries_iso_times(env: dict[str, str], tmp_path: Path) -> None:
    from engine.registry.open import open_store

    with open_store(tmp_path / "registry.sqlite3") as store:
        store.upsert_credentials("alice", url_ct="x", key_ct="y")
    data = json.loads(run(env, "status", "--json").output)
    created = data["users"][0]["created_at"]
    assert isinstance(created, str) and created.endswith("Z") and "T" in created


def test_quiet_and_verbose_exclude_each_other(env: dict[str, str]) -> None:
    result = run(env, "-q", "-v", "status")
    assert result.exit_code == 2


def test_quiet_silences_notes_not_results(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["-q", "entitle", "--user", "u1"], env=env)
    assert result.exit_code == 0
    assert "entitled" in result.stdout
    assert "note:" not in result.stderr
    loud = CliRunner().invoke(cli, ["entitle", "--user", "u2"], env=env)
    assert "note:" in loud.stderr


def test_no_color_sets_no_color(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    result = run(env, "--no-color", "status")
    assert result.exit_code == 0
    assert not output.settings.color
