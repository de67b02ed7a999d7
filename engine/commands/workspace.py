"""The composition root: everything a verb needs, built in one place.

A ``Workspace`` holds the configuration and builds, on first use, the registry store, the
vault, the version graph and the connector. Every verb of ``engine.commands`` takes one, so
the CLI, the app's backend and tests wire the engine the same way — and a test swaps one
collaborator (an in-memory connector, a store in a temp dir) without touching the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import EngineConfig, is_registry_url, load_config
from engine.ports.deployment import close_quietly

if TYPE_CHECKING:
    from engine.convex.connector import AdapterKind
    from engine.plan.graph import VersionGraph
    from engine.ports.deployment import Connector
    from engine.registry.open import Store
    from engine.vault import Vault

__all__ = ["Workspace"]


@dataclass
class Workspace:
    """Config, store, vault, versions and connector for one run of the engine.

    Each collaborator may be given (an app or a test wiring its own) or is built lazily
    from ``config`` the first time a verb asks for it, so a verb that never touches the
    registry never creates one, and ``byod check`` never reads an encryption key."""

    config: EngineConfig
    deployer: "AdapterKind" = "cli"
    _store: "Store | None" = field(default=None, repr=False)
    _vault: "Vault | None" = field(default=None, repr=False)
    _graph: "VersionGraph | None" = field(default=None, repr=False)
    _connector: "Connector | None" = field(default=None, repr=False)
    _connector_given: bool = field(default=False, repr=False)

    @classmethod
    def open(cls, config: EngineConfig | Path | None = None, *, deployer: "AdapterKind" = "cli",
             store: "Store | None" = None, vault: "Vault | None" = None,
             graph: "VersionGraph | None" = None,
             connector: "Connector | None" = None) -> "Workspace":
        """A workspace from a config (or the path of a ``byod.toml``; default: the usual
        lookup of ``byod.toml`` and ``BYOD_*`` variables)."""

        if not isinstance(config, EngineConfig):
            config = load_config(config)
        return cls(config, deployer, store, vault, graph, connector, connector is not None)

    def with_versions_dir(self, directory: Path | None) -> "Workspace":
        """The same workspace reading versions from ``directory`` (None: unchanged)."""

        if directory is None:
            return self
        config = self.config.model_copy(update={"versions_dir": Path(directory)})
        return Workspace(config, self.deployer, self._store, self._vault, None, self._connector,
                         self._connector_given)

    def with_deployer(self, deployer: "AdapterKind") -> "Workspace":
        """The same workspace deploying with ``deployer`` (a resumed rollout keeps the
        deployer it started with). A connector the caller gave is kept as it is."""

        if deployer == self.deployer or self._connector_given:
            return self
        return Workspace(self.config, deployer, self._store, self._vault, self._graph)

    @property
    def store(self) -> "Store":
        """The registry ``config.registry_path`` names (a SQLite file, a PostgreSQL URL,
        ``convex:main``), opened on first use."""

        if self._store is None:
            from engine.registry.open import open_store, registry_kind

            on_main = registry_kind(str(self.config.registry_path)) == "convex"
            self._store = open_store(self.config,
                                     connector=self.connector if on_main else None)
        return self._store

    def registry_exists(self) -> bool:
        """Whether a registry is already there: read-only verbs never create one. A server
        registry (a URL) is taken to exist: opening it asks the server."""

        return self._store is not None or is_registry_url(self.config.registry_path) \
            or Path(self.config.registry_path).exists()

    @property
    def vault(self) -> "Vault":
        if self._vault is None:
            from engine.vault import Vault

            self._vault = Vault.from_env()
        return self._vault

    @property
    def graph(self) -> "VersionGraph":
        if self._graph is None:
            from engine.plan.graph import VersionGraph
            from engine.schema.loader import load_versions

            self._graph = VersionGraph(load_versions(self.config.versions_dir, self.config))
        return self._graph

    @property
    def connector(self) -> "Connector":
        if self._connector is None:
            from engine.convex.connector import HttpConnector

            self._connector = HttpConnector(self.config, kind=self.deployer)
        return self._connector

    def close(self) -> None:
        if self._connector is not None and not self._connector_given:
            close_quietly(self._connector)  # its connection pools, once per run
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
