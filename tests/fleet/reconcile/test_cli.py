"""``byod reconcile`` through the click group over in-memory deployments: output, exit
codes, --apply, and no secret in any output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ops_fakes import ADMIN_KEY_SECRET

from engine.cli.main import cli
from engine.vault import Vault, generate_key

from .fakes import RecordingFleet
from .test_reconcile import FP, V1, V2, V3


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RecordingFleet, Any]:
    import engine.schema.loader
    from engine.convex.connector import HttpConnector

    key = generate_key()
    fleet = RecordingFleet(tmp_path)
    fleet.vault = Vault.from_hex(key)
    # the CLI's workspace builds the real connector; its clients come from the fake fleet
    monkeypatch.setattr(HttpConnector, "async_client",
                        lambda _self, target, timeout=None, retries=None:
                        fleet.async_client(target, timeout))
    monkeypatch.setattr(engine.schema.loader, "load_versions", lambda *_a, **_k: [V1, V2, V3])
    environ = {"BYOD_REGISTRY": str(fleet.store.path), "BYOD_ENCRYPTION_KEY": key,
               "BYOD_CONFIG": os.devnull}
    runner = CliRunner()

    def byod(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, ["reconcile", *args], env=environ, catch_exceptions=False)
        for dep in fleet.deployments.values():
            assert dep.url not in result.output and dep.key not in result.output
        assert ADMIN_KEY_SECRET not in result.output and key not in result.output
        return result.exit_code, result.output

    return fleet, byod


def test_reports_then_applies_then_is_clean(setup: tuple[RecordingFleet, Any]) -> None:
    fleet, byod = setup
    fleet.add("alice", version="v2", fingerprint=FP["v2"])
    fleet.add("bob", version="v1", fingerprint=FP["v1"])
    fleet.sql("UPDATE users SET schema_version = NULL WHERE user_id = 'alice'")

    code, out = byod()
    assert code == 1
    assert "schema_version: registry None, deployment v2 (fixable with --apply" in out
    assert "--apply" in out.splitlines()[-1]

    code, out = byod("--user", "alice", "--apply", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["applied"] and data["fixed"] == 1 and data["remaining"] == 0
    [row] = data["results"]
    assert row["user_id"] == "alice" and row["state"] == "fixed"
    assert row["findings"][0] == {
        "field": "schema_version", "registry": None, "deployment": "v2", "fixable": True,
        "fixed": True, "plan_id": None, "step_id": None,
        "reason": "the deployment's own record"}
    assert fleet.store.get_user("alice").schema_version == "v2"

    code, out = byod("--all")
    assert code == 0 and "in_sync 2" in out


def test_drift_and_unreachable_exit_1_and_leak_nothing(setup: tuple[RecordingFleet, Any]) -> None:
    fleet, byod = setup
    fleet.add("carol", version="v1", fingerprint=FP["v1"]).fingerprint = "f" * 64
    down = fleet.add("dave", version="v1", fingerprint=FP["v1"])
    down.fault = "down"
    code, out = byod("--apply")
    assert code == 1
    assert "carol" in out and "drifted" in out and "drift:" in out
    assert "dave" in out and "unreachable" in out and "nothing changed" in out
    assert fleet.store.get_user("carol").schema_fingerprint == FP["v1"]


def test_user_and_all_are_exclusive(setup: tuple[RecordingFleet, Any]) -> None:
    _fleet, byod = setup
    code, out = byod("--user", "x", "--all")
    assert code == 2 and "not both" in out


def test_an_unknown_user_is_a_clear_error(setup: tuple[RecordingFleet, Any]) -> None:
    _fleet, byod = setup
    code, out = byod("--user", "nobody")
    assert code == 1 and "nobody" in out
