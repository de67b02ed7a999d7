"""byod: declarative schema versions and fleet migrations for apps whose users bring their
own Convex deployment.

The public Python API, for the app's backend and for release pipelines. Names resolve
lazily so ``import engine`` stays cheap (the CLI and the pure core import only what they
use). Flows whose module shares their name (``engine.connect.connect``,
``engine.rollout.rollout``, ``engine.disconnect.disconnect``, ``engine.diff.diff``,
``engine.widen.widen``) are reached through their module, so ``engine.connect`` is always
the module.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Bundle": "engine.compiler",
    "ByodError": "engine.errors",
    "ConvexHttpClient": "engine.convex.http",
    "AsyncConvexHttpClient": "engine.convex.http",
    "DeploymentBlocked": "engine.errors",
    "DeploymentTarget": "engine.convex.adapter",
    "EngineConfig": "engine.config",
    "LocalFleet": "engine.local.launcher",
    "NotEntitled": "engine.errors",
    "Plan": "engine.planner",
    "Router": "engine.routing",
    "Schema": "engine.schema.models",
    "SchemaVersion": "engine.schema.models",
    "SqliteStore": "engine.registry.sqlite",
    "Vault": "engine.vault",
    "VersionGraph": "engine.graph",
    "check_health": "engine.health:check",
    "check_versions": "engine.schema.rules",
    "compile_bundle": "engine.compiler",
    "compile_version": "engine.compiler",
    "load_config": "engine.config",
    "load_versions": "engine.schema.loader",
    "monitor": "engine.health",
    "open_store": "engine.registry.sqlite",
    "plan": "engine.planner",
    "plan_fleet": "engine.planner",
    "retry_connect": "engine.connect",
    "test_connection": "engine.connect",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        target = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'engine' has no attribute {name!r}") from None
    module_name, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module_name), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
