"""The package's public API resolves, is sorted, and importing it stays lazy."""

from __future__ import annotations

import subprocess
import sys

import engine


def test_every_public_name_resolves() -> None:
    assert engine.__all__ == sorted(engine.__all__)
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name


def test_import_is_lazy() -> None:
    code = "import sys, engine; print(sorted(m for m in sys.modules if m.startswith('engine.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "['engine.lazy']"


def test_no_export_shadows_a_submodule() -> None:
    import pkgutil

    submodules = {m.name for m in pkgutil.iter_modules(engine.__path__)}
    assert not submodules & set(engine.__all__)


# The door: every verb the CLI wraps, by name. A verb added or removed changes this list.
VERBS = ["CheckResult", "Workspace", "break_lease", "build", "check", "check_registry",
         "config_show", "connect", "copy_registry", "create_token", "deploy", "diff",
         "disconnect", "entitle",
         "fleet_status", "graph", "health", "history", "init", "list_leases", "list_rollouts",
         "list_tokens", "monitor", "new_version", "plan", "plan_code", "plan_fleet",
         "reconcile", "release", "retry_connect", "revoke_token", "rollout", "rotate_keys",
         "router", "serve", "show_version", "test_connection", "upgrade_registry",
         "user_link", "user_status", "version_counts", "worker", "write_reports"]


def test_the_commands_door_lists_every_verb() -> None:
    from engine import commands

    assert commands.__all__ == VERBS
    for name in VERBS:
        assert callable(getattr(commands, name)), name


def test_importing_the_door_is_lazy() -> None:
    code = ("import sys, engine.commands; "
            "print(sorted(m for m in sys.modules if m.startswith('engine.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "['engine.commands', 'engine.lazy']"


def test_a_workspace_builds_nothing_until_asked(tmp_path) -> None:
    from engine.commands import Workspace
    from engine.config import EngineConfig

    ws = Workspace.open(EngineConfig(registry_path=tmp_path / "r.sqlite3",
                                     versions_dir=tmp_path / "none"))
    assert not ws.registry_exists()
    assert ws.connector is ws.connector  # one connector per workspace
    assert not (tmp_path / "r.sqlite3").exists()
