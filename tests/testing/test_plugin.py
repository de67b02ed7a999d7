"""The pytest plugin, as an app team meets it: a small app (two version files, a test file,
no conftest) run by ``pytester`` in a fresh pytest process. The fixtures resolve only
through the package's ``byod`` pytest11 entry point, so these runs prove the plugin
loads."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

VERSION_1 = """\
description: Notes on each user's deployment; users on main.
parents: []
tables:
  notes:
    location: user
    fields:
      userId: string
      title: string
    indexes:
      by_user: [userId]
  users:
    location: main
    fields:
      name: string
"""

VERSION_2 = """\
description: Notes can be pinned.
parents: [0001_initial]
tables:
  notes:
    location: user
    fields:
      userId: string
      title: string
      pinned: boolean
    indexes:
      by_user: [userId]
  users:
    location: main
    fields:
      name: string
migrations:
  - {op: backfill, table: notes, field: pinned, value: false}
"""

APP_TESTS = """\
import os

from engine import commands
from engine.commands import Workspace


def workspace(fleet, config):
    return Workspace.open(config, store=fleet.store, vault=fleet.vault, connector=fleet)


def test_the_registry_is_the_tests_own(byod_registry):
    assert os.environ["BYOD_REGISTRY"] == str(byod_registry.path)
    assert os.environ["BYOD_ENCRYPTION_KEY"] == byod_registry.key_hex


def test_a_connected_user_runs_its_version(byod_connected_user):
    alice = byod_connected_user("alice", version="0001")
    assert alice.row.connection_status == "connected"
    info = alice.deployment.read_version()
    assert info.version == "0001_initial" and info.recorded["version"] == "0001_initial"


def test_the_router_sends_a_users_tables_to_their_deployment(byod_fleet, byod_config,
                                                             byod_connected_user):
    alice = byod_connected_user("alice")
    router = commands.router(workspace(byod_fleet, byod_config), main_client=byod_fleet.main)
    assert router.client_for("alice", "notes") is alice.deployment
    assert router.client_for("alice", "users") is byod_fleet.main
    assert router.client_for("nobody", "notes") is byod_fleet.main


def test_a_rollout_migrates_the_users_documents(byod_fleet, byod_config, byod_connected_user):
    alice = byod_connected_user("alice", version="0001")
    alice.deployment.insert("notes", {"userId": "alice", "title": "hello"})
    report = commands.rollout(workspace(byod_fleet, byod_config), "head", canary=0)
    assert report.ok, report.rows
    assert alice.deployment.version == "0002_pinned"
    assert [n["pinned"] for n in alice.deployment.docs("notes")] == [False]
    assert alice.row.schema_version == "0002_pinned"


def test_a_revoked_key_blocks_the_user(byod_fleet, byod_config, byod_connected_user):
    alice = byod_connected_user("alice")
    alice.deployment.fault = "revoked"
    result = commands.test_connection(workspace(byod_fleet, byod_config), "alice")
    assert not result.ok and alice.row.connection_status == "error"
"""

LOCAL_TESTS = """\
import pytest

from engine.convex.http import ConvexHttpClient
from engine.errors import FunctionError
from engine.fleet.health_states import nothing_deployed
from engine.ports.deployment import DeploymentTarget


def test_local_deployments_answer(byod_local_fleet):
    assert len(byod_local_fleet.deployments) == 2
    dep = byod_local_fleet.deployments[0]
    target = DeploymentTarget(dep.name, dep.url, dep.admin_key, allow_insecure_local=True)
    with ConvexHttpClient(target) as client:
        with pytest.raises(FunctionError) as err:
            client.read_version()  # reachable, nothing deployed yet
    assert nothing_deployed(err.value)
"""


def run(app: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest over the app in a new process (what an app team's CI does)."""

    return app.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)


@pytest.fixture
def app(pytester: pytest.Pytester) -> pytest.Pytester:
    """An app directory: ``schema_versions/`` with two versions, no conftest."""

    versions = pytester.mkdir("schema_versions")
    (versions / "0001_initial.yaml").write_text(VERSION_1)
    (versions / "0002_pinned.yaml").write_text(VERSION_2)
    return pytester


def test_an_app_uses_the_in_memory_fixtures(app: pytest.Pytester) -> None:
    app.makepyfile(test_app=APP_TESTS)
    run(app).assert_outcomes(passed=5)


def test_the_fixtures_come_from_the_byod_entry_point(app: pytest.Pytester) -> None:
    app.makepyfile(test_app=APP_TESTS)
    result = run(app, "-p", "no:byod")
    result.assert_outcomes(errors=5)
    result.stdout.fnmatch_lines(["*fixture 'byod_registry' not found*"])


def test_an_app_points_the_fixtures_at_its_own_versions(app: pytest.Pytester) -> None:
    (app.path / "schema_versions").rename(app.path / "versions")
    app.makeconftest("""
        import pytest

        @pytest.fixture
        def byod_versions_dir(tmp_path):
            from pathlib import Path
            return Path(__file__).parent / "versions"
    """)
    app.makepyfile(test_versions="""
        def test_head(byod_fleet, byod_connected_user):
            assert byod_fleet.version().id == "0002_pinned"
            bob = byod_connected_user("bob", status="error")
            assert bob.deployment.version == "0002_pinned"
            assert bob.row.connection_status == "error"
    """)
    run(app).assert_outcomes(passed=1)


def test_the_local_fleet_is_skipped_without_node(app: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    empty = app.mkdir("no-node-here")
    monkeypatch.setenv("PATH", str(empty))
    app.makepyfile(test_local=LOCAL_TESTS)
    result = run(app, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*byod_local_fleet needs Node.js*"])


@pytest.mark.local
@pytest.mark.toolchain
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_an_app_uses_the_local_fleet(app: pytest.Pytester) -> None:
    app.makepyfile(test_local=LOCAL_TESTS)
    run(app, "-rs").assert_outcomes(passed=1)


def test_importing_the_plugin_imports_no_engine_module() -> None:
    code = ("import sys, engine.testing.plugin; "
            "print(sorted(m for m in sys.modules if m.startswith('engine.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "['engine.lazy', 'engine.testing', 'engine.testing.plugin']"
