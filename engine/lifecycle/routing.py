"""Routing: for a user and a table, the deployment that holds it.

The location map (table → ``user`` | ``main``) comes from the schema version the user's
deployment is on; users without BYOD follow the head version. A connected user's
user-located tables go to their own deployment; everything else goes to main. A user whose
deployment is in error is *blocked* (``DeploymentBlocked``): nothing silently falls back to
main, because that would split the user's data across two databases.

Clients for user deployments are cached per user and keyed by the credential
ciphertexts, so a re-connect with new credentials (or a key rotation) builds a new client;
a disconnect or an explicit ``invalidate`` drops it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.config import EngineConfig
from engine.convex.connector import HttpConnector
from engine.errors import DeploymentBlocked, UnknownTable
from engine.plan.versions import Versions, as_version_source
from engine.ports.deployment import Connector, FunctionRunner, close_quietly
from engine.ports.registry import RegistryStore, UserConfig
from engine.schema.engine_tables import ENGINE_TABLES
from engine.schema.models import Location, Schema
from engine.vault import Vault

__all__ = ["Route", "Router"]


def locations(schema: Schema) -> dict[str, Location]:
    """Table → location for one schema (the engine's own tables live on every user
    deployment)."""

    out = {name: table.location for name, table in schema.tables.items()}
    for name in ENGINE_TABLES:
        out.setdefault(name, Location.USER)
    return out


@dataclass(frozen=True)
class Route:
    """Where one (user, table) goes, and why: for logs, tests and the example app."""

    user_id: str
    table: str
    location: Location
    destination: str  # "main" | "user"
    reason: str


class Router:
    """The data-access layer's single decision point. Thread-safe; cheap per call (one
    registry read, then a cached client)."""

    def __init__(self, store: RegistryStore, vault: Vault, config: EngineConfig | None,
                 versions: Versions, main_client: FunctionRunner, *,
                 connector: Connector | None = None):
        self.store = store
        self.vault = vault
        self.config = config or EngineConfig()
        self.versions = as_version_source(versions)
        self.main_client = main_client
        self._connector = connector or HttpConnector(self.config)
        self._clients: dict[str, tuple[tuple[str, str], FunctionRunner]] = {}
        self._lock = threading.Lock()

    # -- decisions ------------------------------------------------------------------------
    def location_map(self, user_id: str) -> dict[str, Location]:
        """Table → location from the version this user's deployment is on (head without
        BYOD)."""

        return locations(self.versions.schema(self._version_for(self.store.find_user(user_id))))

    def _version_for(self, user: UserConfig | None) -> str | None:
        if user is None or user.connection_status in ("pending", "disconnected"):
            return None  # their content is on main, which follows the head
        return user.schema_version

    def route(self, user_id: str, table: str) -> Route:
        """Decide without building a client; raises ``UnknownTable`` / ``DeploymentBlocked``."""

        return self._route(user_id, self.store.find_user(user_id), table)

    def _route(self, user_id: str, user: UserConfig | None, table: str) -> Route:
        version = self._version_for(user)
        mapping = locations(self.versions.schema(version))
        location = mapping.get(table)
        if location is None:
            raise UnknownTable(table, version or self.versions.head or "head", sorted(mapping))
        if user is None:
            return Route(user_id, table, location, "main", "no BYOD configuration")
        status = user.connection_status
        if status == "error":
            self.invalidate(user_id)
            raise DeploymentBlocked(user_id, user.connection_error or "deployment in error")
        if status in ("pending", "disconnected"):
            if status == "disconnected":
                self.invalidate(user_id)
            return Route(user_id, table, location, "main", f"connection {status}")
        if location is Location.MAIN:
            return Route(user_id, table, location, "main", "main-located table")
        return Route(user_id, table, location, "user", "user-located table, connected")

    def client_for(self, user_id: str, table: str) -> FunctionRunner:
        """The main client or the user's deployment client for this table."""

        # One registry read decides and builds: a second read on this hot path could see
        # another status than the one the route was decided on.
        user = self.store.find_user(user_id)
        route = self._route(user_id, user, table)
        if route.destination == "main" or user is None:
            return self.main_client
        return self._user_client(user)

    # -- the cache --------------------------------------------------------------------------
    def _user_client(self, user: UserConfig) -> FunctionRunner:
        key = (user.url_ct, user.key_ct)
        with self._lock:
            cached = self._clients.get(user.user_id)
            if cached is not None and cached[0] == key:
                return cached[1]
            if cached is not None:
                close_quietly(cached[1])
            client = self._connector.client(self.vault.target_for(user))
            self._clients[user.user_id] = (key, client)
            return client

    def invalidate(self, user_id: str | None = None) -> None:
        """Forget cached clients (one user, or all): after a disconnect or new credentials."""

        with self._lock:
            ids: Iterable[str] = [user_id] if user_id is not None else list(self._clients)
            for uid in ids:
                cached = self._clients.pop(uid, None)
                if cached is not None:
                    close_quietly(cached[1])

    def cached_users(self) -> list[str]:
        with self._lock:
            return sorted(self._clients)

    def close(self) -> None:
        self.invalidate()

    # -- helpers for an app's data-access layer ---------------------------------------------
    def query(self, user_id: str, table: str, fn: str, args: dict[str, Any] | None = None) -> Any:
        """Run query ``fn`` (about ``table``) where that user's ``table`` lives."""

        return self.client_for(user_id, table).query(fn, args or {})

    def mutation(self, user_id: str, table: str, fn: str,
                 args: dict[str, Any] | None = None) -> Any:
        """Run mutation ``fn`` (writing ``table``) where that user's ``table`` lives."""

        return self.client_for(user_id, table).mutation(fn, args or {})