"""A config change on a real local deployment, end to end through the CLI: connected at
head, ``auth.issuer_domain`` changes in byod.toml, health says stale (routable),
``byod rollout --to head`` refreshes it with exactly one deploy, and health says healthy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_ops import needs_toolchain

from engine.local import LocalFleet
from engine.vault import generate_key

ROOT = Path(__file__).resolve().parents[3]
BYOD = str(Path(sys.executable).with_name("byod"))

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain,
              pytest.mark.timeout(600)]

TOML = """\
versions_dir = "{versions}"
registry_path = ".byod/registry.sqlite3"
deploy_timeout_s = 180
http_timeout_s = 10

[auth]
issuer_domain = "{issuer}"
"""


def test_config_change_stale_then_refreshed_by_one_deploy(tmp_path: Path) -> None:
    fleet = LocalFleet.start(1, tmp_path / "fleet", timeout=90)
    secret = fleet.deployments[0].admin_key
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BYOD_")},
           "BYOD_ENCRYPTION_KEY": generate_key()}
    config = tmp_path / "byod.toml"

    def byod(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([BYOD, *args], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=300, check=False)
        assert result.returncode == code, (args, result.stdout[-2000:], result.stderr[-2000:])
        for stream in (result.stdout, result.stderr):
            assert secret not in stream and secret.split("|")[-1] not in stream
        return result

    def health() -> dict:
        data = json.loads(byod("health", "--json").stdout)
        (only,) = data["results"]
        return only

    try:
        name = fleet.deployments[0].name
        config.write_text(TOML.format(versions=ROOT / "schema_versions",
                                      issuer="https://clerk.first.example"))
        byod("connect", "--user", "u1", "--local", name, "--local-dir", str(tmp_path / "fleet"))
        first = health()
        assert first["state"] == "healthy", first
        head = first["version"]

        config.write_text(TOML.format(versions=ROOT / "schema_versions",
                                      issuer="https://clerk.second.example"))
        stale = health()
        assert stale["state"] == "stale" and stale["status_after"] == "connected", stale
        assert "redeploy with a rollout" in stale["reason"]
        tested = byod("test-connection", "--user", "u1").stdout
        assert "user u1: ok (stale)" in tested and "  note: stale: runs" in tested
        plan = byod("rollout", "--to", "head", "--dry-run").stdout
        assert f"refresh {head} (1 deployment(s)" in plan

        pushes = fleet.state(name)["pushes"]
        report = json.loads(byod("rollout", "--to", "head", "--canary", "0", "--json").stdout)
        assert report["status"] == "completed" and report["counts"] == {"succeeded": 1}
        (row,) = report["deployments"]
        assert (row["action"], row["deploys"], row["after"]) == ("refresh", 1, head)
        assert fleet.state(name)["pushes"] - pushes == 1  # exactly one deploy

        after = health()
        assert after["state"] == "healthy" and after["version"] == head, after
        assert after["fingerprint"] != stale["fingerprint"]
        status = json.loads(byod("status", "--user", "u1", "--json").stdout)
        assert status["schema_fingerprint"] == after["fingerprint"]
        assert [s["kind"] for s in status["journal"]] == ["deploy_target", "verify", "record"]
        again = json.loads(byod("rollout", "--to", "head", "--json").stdout)
        assert again["counts"] == {} and again["refresh"] == {}
    finally:
        fleet.stop()
