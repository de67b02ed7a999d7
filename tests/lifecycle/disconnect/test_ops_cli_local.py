"""`byod health`, `byod monitor` and `byod disconnect` through the CLI, on local deployments."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from local_ops import connect_all, needs_toolchain, start

from engine.cli.main import cli
from engine.demo.run import deploy_main

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain]


def test_health_monitor_disconnect_commands(tmp_path: Path) -> None:
    env = start(tmp_path, 3)
    try:
        deploy_main(env.main, env.graph.resolve(1), env.config)
        connect_all(env, "0001_initial", seed=True)
        hex_key = env.key_hex
        environ = {"BYOD_REGISTRY": str(env.config.registry_path),
                   "BYOD_VERSIONS_DIR": str(env.config.versions_dir),
                   "BYOD_ENCRYPTION_KEY": hex_key, "BYOD_CONFIG": os.devnull,
                   "BYOD_MAIN_URL": env.main.url, "BYOD_MAIN_ADMIN_KEY": env.main.admin_key}
        runner = CliRunner()
        secrets = [hex_key, env.main.admin_key] + [d.admin_key for d in env.users.values()]

        def byod(*args: str) -> tuple[int, str]:
            result = runner.invoke(cli, list(args), env=environ, catch_exceptions=False)
            for secret in secrets:
                assert secret not in result.output
            return result.exit_code, result.output

        code, out = byod("health", "--all", "--json")
        assert code == 0, out
        assert {r["state"] for r in json.loads(out)["results"]} == {"healthy"}

        env.fleet.set_fault(env.users["u3"].name, "revoked")
        code, out = byod("monitor", "--interval", "2", "--max-runs", "1")
        assert code == 0 and "u3 connected->error" in out, out
        code, out = byod("health", "--user", "u3")
        assert code == 1 and "unauthorized" in out
        env.fleet.set_fault(env.users["u3"].name, "none")

        code, out = byod("disconnect", "--user", "u3", "--data", "delete")
        assert code == 3 and "--yes" in out  # refused for safety
        code, out = byod("disconnect", "--user", "u2", "--data", "keep")
        assert code == 0 and "u2: disconnected" in out
        code, out = byod("disconnect", "--user", "u1", "--data", "migrate", "--json")
        assert code == 0, out
        report = json.loads(out[out.index("{"):])
        assert report["verified"] and report["status"] == "disconnected"
        assert report["tables"]["messages"]["main_count"] == report["tables"]["messages"]["source_count"] > 0
        code, out = byod("disconnect", "--user", "u3", "--data", "delete", "--yes")
        assert code == 0 and "verified empty" in out
        statuses = {u.user_id: u.connection_status for u in env.store.list_users()}
        assert statuses == {"u1": "disconnected", "u2": "disconnected", "u3": "disconnected"}
    finally:
        env.fleet.stop()
