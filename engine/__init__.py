"""byod: declarative schema versions and fleet migrations for apps whose users bring their
own Convex deployment.

The public Python API, for the app's backend and for release pipelines. Its door is
``engine.commands``: one function per verb over a ``Workspace`` (config, store, vault,
versions and connector built in one place), the same functions the CLI wraps. Names resolve
lazily so ``import engine`` stays cheap (the CLI and the pure core import only what they
use). Flows whose module shares their name (``engine.lifecycle.connect.connect``,
``engine.fleet.rollout.rollout``, ``engine.lifecycle.disconnect.disconnect``, ``engine.plan.diff.diff``,
``engine.plan.widen.widen``) are reached through their module, so ``engine.lifecycle.connect`` is always
the module.
"""

from __future__ import annotations

from engine.lazy import lazy_face

_EXPORTS: dict[str, str] = {
    "Bundle": "engine.ports.bundle",
    "ByodError": "engine.errors",
    "ConvexHttpClient": "engine.convex.http",
    "AsyncConvexHttpClient": "engine.convex.http",
    "Connector": "engine.ports.deployment",
    "HttpConnector": "engine.convex.connector",
    "Workspace": "engine.commands.workspace",
    "DeploymentBlocked": "engine.errors",
    "DeploymentTarget": "engine.ports.deployment",
    "EngineConfig": "engine.config",
    "LocalFleet": "engine.local.launcher",
    "NotEntitled": "engine.errors",
    "Plan": "engine.plan.planner",
    "Router": "engine.lifecycle.routing",
    "Schema": "engine.schema.models",
    "SchemaVersion": "engine.schema.models",
    "SqliteStore": "engine.registry.sqlite",
    "Vault": "engine.vault",
    "VersionGraph": "engine.plan.graph",
    "check_health": "engine.lifecycle.health:check",
    "check_versions": "engine.check.rules",
    "compile_bundle": "engine.bundle.compiler",
    "compile_version": "engine.bundle.compiler",
    "load_config": "engine.config",
    "load_versions": "engine.schema.loader",
    "monitor": "engine.lifecycle.health",
    "open_store": "engine.registry.open",
    "plan_fleet": "engine.plan.planner",
    "retry_connect": "engine.lifecycle.connect",
    "test_connection": "engine.lifecycle.connect",
}

__all__, __getattr__, __dir__ = lazy_face("engine", _EXPORTS, globals())
