"""`byod leases` lists the registry's leases with their holder process (table and --json,
ISO 8601 times); `byod leases break ID --yes` ends one, audited; without --yes it is
refused (exit 3) like every other irreversible command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.cli.output import schema_for
from engine.registry.sqlite import SqliteStore


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"BYOD_REGISTRY": str(tmp_path / "reg" / "registry.sqlite3"),
            "BYOD_CONFIG": os.devnull}


def byod(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def validate(name: str, data: object) -> None:
    jsonschema.Draft202012Validator(
        schema_for(name), format_checker=jsonschema.FormatChecker()).validate(data)


def test_no_registry_no_leases_and_none_created(env: dict[str, str]) -> None:
    code, out = byod(env, "leases", "--json")
    assert code == 0 and json.loads(out) == []
    assert not Path(env["BYOD_REGISTRY"]).exists()
    assert byod(env, "leases") == (0, "no leases\n")


@pytest.mark.timeout(60)
def test_list_and_break(env: dict[str, str]) -> None:
    path = env["BYOD_REGISTRY"]
    store = SqliteStore(path)
    store.acquire_lease("u-live", "disconnect:1:aa", 30)
    store.acquire_lease("u-old", "connect:2:bb", 0.01)
    code = ("import sys; from engine.registry.sqlite import SqliteStore; "
            "SqliteStore(sys.argv[1]).acquire_lease('rollout:r-1', 'r-1/cc', 600)")
    subprocess.run([sys.executable, "-c", code, path], check=True, timeout=60)
    time.sleep(0.02)

    code_, out = byod(env, "leases", "--json")
    assert code_ == 0, out
    rows = json.loads(out)
    validate("leases", rows)
    states = {r["id"]: r["state"] for r in rows}
    assert states == {"rollout:r-1": "holder_dead", "u-live": "active", "u-old": "expired"}
    live = next(r for r in rows if r["id"] == "u-live")
    assert live["pid"] == os.getpid() and live["expires_at"].endswith("Z")
    assert json.loads(byod(env, "leases", "list", "--json")[1]) == rows

    code_, out = byod(env, "leases")
    assert code_ == 0 and "holder dead" in out and f"{os.getpid()} on " in out
    assert "disconnect:1:aa" in out and "T" in out  # ISO times, never epoch seconds

    code_, out = byod(env, "leases", "break", "u-live")
    assert code_ == 3 and "--yes" in out and "disconnect:1:aa" in out
    code_, out = byod(env, "leases", "break", "u-live", "--json")
    assert code_ == 3 and json.loads(out)["error"] == "ConfirmationRequired"
    assert store.current_lease("u-live") is not None  # refused: nothing changed

    code_, out = byod(env, "leases", "break", "u-live", "--yes", "--reason", "stuck", "--json")
    assert code_ == 0, out
    result = json.loads(out)
    validate("leases-break", result)
    assert result["id"] == "u-live" and result["broken"] is True
    assert store.current_lease("u-live") is None
    [entry] = [e for e in store.audit_log("u-live") if e.event == "lease_broken"]
    assert entry.detail["holder"] == "disconnect:1:aa" and entry.detail["reason"] == "stuck"

    code_, out = byod(env, "leases", "break", "u-od", "--yes")
    assert code_ == 1 and "no lease 'u-od'; did you mean 'u-old'?" in out
