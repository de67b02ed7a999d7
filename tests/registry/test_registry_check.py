"""``byod registry check``: a sound registry passes; a damaged file, a dangling reference or a
stored record the engine could not read is named; a missing registry is reported, not made."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner, Result

from engine.cli.main import cli
from engine.registry.sqlite import SCHEMA_VERSION, SqliteStore


def _check(tmp_path: Path, registry: Path, *args: str) -> Result:
    config = tmp_path / "byod.toml"
    config.write_text("")
    env = {"BYOD_REGISTRY": str(registry), "BYOD_CONFIG": str(config)}
    return CliRunner().invoke(cli, ["registry", "check", *args], env=env)


def _registry(path: Path) -> Path:
    with SqliteStore(path) as store:
        store.upsert_credentials("alice", url_ct="u", key_ct="k")
        store.save_rollout("r1", {"rollout_id": "r1", "results": []})
    return path


def test_a_sound_registry_passes(tmp_path: Path) -> None:
    registry = _registry(tmp_path / "registry.db")
    result = _check(tmp_path, registry)
    assert result.exit_code == 0, result.output
    assert "sound" in result.output and f"schema version {SCHEMA_VERSION}" in result.output
    data = json.loads(_check(tmp_path, registry, "--json").output)
    assert data == {"registry": str(registry), "exists": True, "ok": True,
                    "schema_version": SCHEMA_VERSION, "revision": f"{SCHEMA_VERSION:04d}",
                    "problems": []}


def test_an_unreadable_rollout_record_is_named(tmp_path: Path) -> None:
    registry = _registry(tmp_path / "registry.db")
    with sqlite3.connect(registry) as conn:
        conn.execute("UPDATE rollouts SET data = '{\"rollout_id\": ' WHERE rollout_id = 'r1'")
        conn.execute("UPDATE audit SET detail = '[1]'")
    result = _check(tmp_path, registry, "--json")
    assert result.exit_code == 1
    problems = json.loads(result.output)["problems"]
    assert any(p.startswith("rollouts r1: data is not JSON") for p in problems), problems
    assert any("audit" in p and "not a JSON object" in p for p in problems), problems
    text = _check(tmp_path, registry)
    assert text.exit_code == 1 and "byod reconcile --apply" in text.output
    assert "Traceback" not in text.output


def test_a_dangling_reference_is_named(tmp_path: Path) -> None:
    registry = _registry(tmp_path / "registry.db")
    with sqlite3.connect(registry) as conn:  # foreign keys are off in this plain connection
        conn.execute("INSERT INTO journal (user_id, plan_id, step_id, seq, kind, created_at, updated_at) "
                     "VALUES ('ghost', 'p', 's', 0, 'deploy', 0, 0)")
    problems = json.loads(_check(tmp_path, registry, "--json").output)["problems"]
    assert any("journal" in p and "missing row of users" in p for p in problems), problems


def test_garbage_is_one_problem_not_a_traceback(tmp_path: Path) -> None:
    registry = tmp_path / "registry.db"
    registry.write_bytes(b"this is not a database " * 200)
    result = _check(tmp_path, registry, "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["exists"] and not data["ok"] and data["schema_version"] is None
    assert len(data["problems"]) == 1 and "damaged" in data["problems"][0]


def test_a_missing_registry_is_reported_and_not_created(tmp_path: Path) -> None:
    registry = tmp_path / "nowhere" / "registry.db"
    result = _check(tmp_path, registry)
    assert result.exit_code == 1
    assert "there is no registry" in result.output
    assert not registry.exists() and not registry.parent.exists()
