"""In-memory deployments and a pytest plugin, for testing an app that uses byod.

* ``InMemoryDeployment`` (``engine.testing.deployment``): one deployment with a byod
  bundle — documents, the version marker, the deployment's own journal, the engine's
  ``byod:*`` / ``byodMain:*`` / data-step functions, deploys checked against the schema,
  switchable faults and hooks, every call recorded; ``AsyncInMemoryDeployment`` is its
  async view.
* ``InMemoryFleet`` (``engine.testing.fleet``): deployments by URL, a real SQLite registry
  and vault, and the ``Connector`` the engine's flows take.
* ``engine.testing.plugin``: the pytest fixtures (``byod_registry``, ``byod_fleet``,
  ``byod_connected_user``, ``byod_local_fleet``, ...), loaded automatically through the
  ``byod`` pytest11 entry point once byod-engine is installed.

Names resolve lazily: importing this package (as pytest does for the plugin) is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.lazy import lazy_face

if TYPE_CHECKING:
    from engine.testing.catalog import BundleCatalog, KnownBundle
    from engine.testing.deployment import AsyncInMemoryDeployment, Call, InMemoryDeployment
    from engine.testing.faults import FAULTS, Crash, RefusedClient, crash_at
    from engine.testing.fleet import ConnectedUser, InMemoryFleet, TempRegistry

_EXPORTS: dict[str, str] = {
    "AsyncInMemoryDeployment": "engine.testing.deployment",
    "BundleCatalog": "engine.testing.catalog",
    "Call": "engine.testing.deployment",
    "ConnectedUser": "engine.testing.fleet",
    "Crash": "engine.testing.faults",
    "FAULTS": "engine.testing.faults",
    "InMemoryDeployment": "engine.testing.deployment",
    "InMemoryFleet": "engine.testing.fleet",
    "KnownBundle": "engine.testing.catalog",
    "RefusedClient": "engine.testing.faults",
    "TempRegistry": "engine.testing.fleet",
    "crash_at": "engine.testing.faults",
}

__all__, __getattr__, __dir__ = lazy_face("engine.testing", _EXPORTS, globals())
