"""``open_store``: the one way the engine gets its registry, whatever the location.

``BYOD_REGISTRY`` (``registry_path`` in ``byod.toml``) names the registry: a file path (the
embedded SQLite store), a ``postgresql://`` / ``postgres://`` URL (``PostgresStore``) or
``convex:main`` (the registry kept in the app's main Convex deployment). ``OPENERS`` maps
each kind to the function that opens it; a store module is imported only when its kind is
used (the CLI does not load a database driver it does not need).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from engine.config import is_registry_url, registry_display, registry_location
from engine.errors import RegistryError
from engine.ports.registry import RegistryStore

if TYPE_CHECKING:
    from engine.ports.deployment import Connector
    from engine.registry.postgres import PostgresStore
    from engine.registry.sqlite import SqliteStore

__all__ = ["OPENERS", "Store", "open_store", "registry_kind"]

# What ``open_store`` returns: every role of ``RegistryStore`` and the service's, alerts',
# claims' and tables' roles, written once (the SQL mixins) for every store.
Store = Union["SqliteStore", "PostgresStore"]


def _sqlite(location: str) -> RegistryStore:
    from engine.registry.sqlite import SqliteStore

    return SqliteStore(Path(location))


def _postgresql(location: str) -> RegistryStore:
    from engine.registry.postgres import PostgresStore

    return PostgresStore(location)


def _convex(location: str, connector: "Connector | None" = None) -> RegistryStore:
    from engine.registry.convex_main import open_convex_main

    return open_convex_main(location, connector)


# kind -> opener (a new store kind adds its entry here)
OPENERS: dict[str, Callable[[str], RegistryStore]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
    "convex": _convex,
}


def registry_kind(location: str) -> str:
    """``sqlite``, ``postgresql`` or ``convex`` (``RegistryError`` for another URL scheme;
    the message never shows the URL, which may carry a password)."""

    lowered = location.lower()
    if lowered.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    if lowered.startswith("convex:"):
        return "convex"
    if is_registry_url(location) or "://" in location:
        scheme = location.split(":", 1)[0]
        raise RegistryError(f"registry location {scheme}://… is not supported: give a file "
                            "path (SQLite), a postgresql:// URL or convex:main")
    return "sqlite"


def open_store(config_or_location: Any, *, connector: "Connector | None" = None) -> Store:
    """The store an ``EngineConfig`` (its ``registry_path``), a path or a location string
    names. ``connector``: what reaches the main deployment (``convex:main`` only)."""

    location = registry_location(config_or_location)
    kind = registry_kind(location)
    try:
        opener = OPENERS[kind]
    except KeyError:
        raise RegistryError(f"no registry store for {registry_display(location)}") from None
    if kind == "convex":
        return _convex(location, connector)  # type: ignore[return-value]
    return opener(location)  # type: ignore[return-value]
