"""`byod disconnect --data migrate` from the CLI alone, on real local deployments (one plays
the app's main deployment): refused early while main runs a user bundle (the user stays
connected, nothing copied), then `byod deploy VERSION --target main`, then it succeeds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from local_ops import connect_all, needs_toolchain, start

from engine.cli.main import cli
from engine.errors import SAFETY_EXIT_CODE

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain]

V1 = "0001_initial"


def test_disconnect_migrate_from_the_cli_after_deploy_target_main(tmp_path: Path) -> None:
    env = start(tmp_path, 1)
    try:
        seeded = connect_all(env, V1, seed=True)
        environ = {"BYOD_REGISTRY": str(env.config.registry_path),
                   "BYOD_VERSIONS_DIR": str(env.config.versions_dir),
                   "BYOD_ENCRYPTION_KEY": env.key_hex, "BYOD_CONFIG": os.devnull,
                   "BYOD_MAIN_URL": env.main.url, "BYOD_MAIN_ADMIN_KEY": env.main.admin_key}
        secrets = [env.key_hex, env.main.admin_key] + [d.admin_key for d in env.users.values()]
        runner = CliRunner()

        def byod(*args: str, stdin: str | None = None) -> tuple[int, str]:
            result = runner.invoke(cli, list(args), env=environ, input=stdin,
                                   catch_exceptions=False)
            for secret in secrets:
                assert secret not in result.output
            return result.exit_code, result.output

        def main_docs() -> dict[str, list[object]]:
            return env.fleet.documents(env.fleet.deployments[0].name)

        # the mistake this guards against: main given a user's bundle
        code, out = byod("deploy", V1, "--url", env.main.url, "--allow-insecure-local",
                         "--key-stdin", stdin=env.main.admin_key + "\n")
        assert code == 0, out
        code, out = byod("disconnect", "--user", "u1", "--data", "migrate")
        assert code == SAFETY_EXIT_CODE, out
        assert f"byod deploy {V1} --target main" in out
        user = env.store.get_user("u1")
        assert user.connection_status == "connected" and user.connection_error is None
        assert not any(main_docs().get(t) for t in seeded["u1"])

        code, out = byod("deploy", V1, "--target", "main")
        assert code == 0, out
        assert f"deployed the main bundle of {V1} to main" in out

        code, out = byod("disconnect", "--user", "u1", "--data", "migrate", "--json")
        assert code == 0, out
        report = json.loads(out[out.index("{"):])
        assert report["verified"] and report["status"] == "disconnected"
        docs = main_docs()
        for table, count in seeded["u1"].items():
            assert len(docs.get(table, [])) == count, table
    finally:
        env.fleet.stop()
