"""`byod rollout --list` shows the rollouts a `--resume ID` can name, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from engine.cli.main import cli
from engine.registry.sqlite import SqliteStore


def test_list_shows_rollouts_not_disconnects(tmp_path: Path, monkeypatch) -> None:
    registry = tmp_path / "registry.sqlite3"
    monkeypatch.setenv("BYOD_REGISTRY", str(registry))
    monkeypatch.chdir(tmp_path)
    with SqliteStore(registry) as store:
        store.save_rollout("r-20260101-000000-abcdef", {
            "rollout_id": "r-20260101-000000-abcdef", "target": "0006_merge",
            "status": "halted", "updated_at": 1.0,
            "deployments": {"u1": {"status": "succeeded"}, "u2": {"status": "failed"}}})
        store.save_rollout("disconnect:u3", {"state": "running", "tables": {}})
    runner = CliRunner()
    plain = runner.invoke(cli, ["rollout", "--list"])
    assert plain.exit_code == 0, plain.output
    assert "r-20260101-000000-abcdef  to 0006_merge  halted  (1 failed, 1 succeeded)" in plain.output
    assert "disconnect" not in plain.output
    as_json = runner.invoke(cli, ["rollout", "--list", "--json"])
    rows = json.loads(as_json.output)
    assert [r["rollout_id"] for r in rows] == ["r-20260101-000000-abcdef"]
