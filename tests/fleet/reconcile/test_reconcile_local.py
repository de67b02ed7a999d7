"""``byod reconcile --apply`` on a real local deployment: the registry row loses its
version (an old backup, a hand edit) and is rebuilt from the deployment's own record."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from local_ops import connect_all, needs_toolchain, start

from engine.cli.main import cli
from engine.convex.http import ConvexHttpClient

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain]


def test_reconcile_apply_restores_a_wiped_registry_row(tmp_path: Path) -> None:
    env = start(tmp_path, 1, with_main=False)
    try:
        connect_all(env, "0001_initial")
        before = env.store.get_user("u1")
        assert before.schema_version == "0001_initial" and before.schema_fingerprint
        with ConvexHttpClient(env.vault.target_for(before)) as client:
            assert client.read_version().recorded["version"] == "0001_initial"
            assert isinstance(client.query("byod:appliedSteps"), list)

        conn = sqlite3.connect(env.config.registry_path)
        with conn:
            conn.execute("UPDATE users SET schema_version = NULL, schema_fingerprint = NULL "
                         "WHERE user_id = 'u1'")
        conn.close()
        assert env.store.get_user("u1").schema_version is None

        environ = {"BYOD_REGISTRY": str(env.config.registry_path),
                   "BYOD_VERSIONS_DIR": str(env.config.versions_dir),
                   "BYOD_ENCRYPTION_KEY": env.key_hex,
                   "BYOD_CONFIG": os.devnull}
        secrets = [env.key_hex] + [d.admin_key for d in env.users.values()] + \
            [d.url for d in env.users.values()]
        runner = CliRunner()

        def byod(*args: str) -> tuple[int, str]:
            result = runner.invoke(cli, ["reconcile", *args], env=environ,
                                   catch_exceptions=False)
            for secret in secrets:
                assert secret not in result.output
            return result.exit_code, result.output

        code, out = byod("--all")
        assert code == 1 and "schema_version: registry None, deployment 0001_initial" in out

        code, out = byod("--all", "--apply", "--json")
        assert code == 0, out
        [row] = json.loads(out)["results"]
        assert row["state"] == "fixed"
        assert {f["field"] for f in row["findings"]} == {"schema_version",
                                                         "schema_fingerprint"}
        after = env.store.get_user("u1")
        assert (after.schema_version, after.schema_fingerprint, after.deployment_status) == (
            before.schema_version, before.schema_fingerprint, "deployed")
        assert any(a.event == "reconcile" for a in env.store.audit_log("u1"))

        code, out = byod("--user", "u1")
        assert code == 0 and "in_sync 1" in out
    finally:
        env.fleet.stop()
