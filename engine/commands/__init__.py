"""The one door: one function per verb, the Python API the CLI wraps and the app imports.

Every verb takes a ``Workspace`` (the composition root: config, registry store, vault,
versions and connector, each built lazily in one place) and returns data; the CLI only
parses arguments and prints. Names resolve lazily so importing this package is cheap::

    from engine import commands
    from engine.commands import Workspace

    with Workspace.open() as ws:
        result = commands.check(ws)
        report = commands.rollout(ws, "head", canary=1)
"""

from __future__ import annotations

from engine.lazy import lazy_face

_VERBS: dict[str, str] = {
    "Workspace": "engine.commands.workspace",
    "CheckResult": "engine.commands.authoring",
    # authoring and CI
    "check": "engine.commands.authoring",
    "build": "engine.commands.authoring",
    "diff": "engine.commands.authoring",
    "plan": "engine.commands.authoring",
    "plan_fleet": "engine.commands.authoring",
    "plan_code": "engine.commands.migration_code",
    "graph": "engine.commands.authoring",
    "version_counts": "engine.commands.authoring",
    "deploy": "engine.commands.authoring",
    "init": "engine.commands.init_project",
    "new_version": "engine.commands.version_files",
    "history": "engine.commands.version_files",
    "show_version": "engine.commands.version_files",
    "release": "engine.commands.released",
    # one user's deployment
    "connect": "engine.commands.users",
    "retry_connect": "engine.commands.users",
    "test_connection": "engine.commands.users",
    "user_status": "engine.commands.users",
    "fleet_status": "engine.commands.users",
    "entitle": "engine.commands.users",
    "rotate_keys": "engine.commands.users",
    "disconnect": "engine.commands.users",
    "router": "engine.commands.users",
    # the fleet
    "rollout": "engine.commands.fleet",
    "list_rollouts": "engine.commands.fleet",
    "write_reports": "engine.commands.fleet",
    "health": "engine.commands.fleet",
    "monitor": "engine.commands.fleet",
    "reconcile": "engine.commands.fleet",
    "worker": "engine.commands.workers",
    # the registry's leases
    "list_leases": "engine.commands.leases",
    "check_registry": "engine.commands.registry_file",
    "copy_registry": "engine.commands.registry_file",
    "upgrade_registry": "engine.commands.registry_file",
    "break_lease": "engine.commands.leases",
    # the configuration
    "config_show": "engine.commands.settings",
    # the service
    "create_token": "engine.commands.service",
    "list_tokens": "engine.commands.service",
    "revoke_token": "engine.commands.service",
    "user_link": "engine.commands.service",
    "serve": "engine.commands.service",
}

__all__, __getattr__, __dir__ = lazy_face("engine.commands", _VERBS, globals())
