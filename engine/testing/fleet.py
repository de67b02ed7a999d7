"""An in-memory fleet: deployments by URL, a real SQLite registry and a real vault, and the
``engine.ports.deployment.Connector`` over them.

``InMemoryFleet`` is what a test hands the engine's flows instead of
``engine.convex.connector.HttpConnector``: ``client`` / ``deployer`` answer with the
``InMemoryDeployment`` a target's URL names (a ``RefusedClient`` for an unknown URL or a
key the deployment does not accept), ``async_client`` / ``async_deployer`` with its async
view. ``add`` connects a user the way a finished connect leaves them: encrypted
credentials and a connection status in the registry, the version marker (or, for a
version the fleet's versions know, its compiled bundle) on the deployment.

The registry is created lazily in ``directory`` (a temporary directory when none is
given), so a fleet that never touches it costs nothing.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.bundle.compiler import (
    Bundle,
    compile_bundle,
    compile_version,
    deployed_schema,
)
from engine.config import EngineConfig
from engine.errors import ByodError, ConfigError
from engine.plan.graph import VersionGraph
from engine.ports.deployment import DeploymentTarget
from engine.ports.registry import ConnectionStatus, UserConfig
from engine.registry.sqlite import SqliteStore
from engine.schema.models import SchemaVersion
from engine.testing.catalog import BundleCatalog, KnownBundle
from engine.testing.deployment import (
    AsyncInMemoryDeployment,
    InMemoryDeployment,
    RefusedClient,
)
from engine.vault import ENV_KEY, Vault, generate_key

__all__ = ["ConnectedUser", "InMemoryFleet", "TempRegistry"]

REGISTRY_FILE = "registry.sqlite3"
_WIDENED = re.compile(r"^(?P<start>.+)__(?P<end>.+)__widen$")


@dataclass
class TempRegistry:
    """A SQLite registry and a fresh encryption key in a directory (the environment a
    ``byod`` command or the app's backend reads: ``env()``)."""

    directory: Path
    key_hex: str
    store: SqliteStore
    vault: Vault
    owns_directory: bool = False

    @classmethod
    def create(cls, directory: Path | str | None = None, *,
               key_hex: str | None = None) -> TempRegistry:
        """A registry at ``directory/registry.sqlite3`` (a new temporary directory, removed
        by ``close``, when None) with ``key_hex`` (a fresh key when None)."""

        owns = directory is None
        where = Path(tempfile.mkdtemp(prefix="byod-registry-")) if directory is None \
            else Path(directory)
        where.mkdir(parents=True, exist_ok=True)
        key = key_hex or generate_key()
        return cls(directory=where, key_hex=key, store=SqliteStore(where / REGISTRY_FILE),
                   vault=Vault.from_hex(key), owns_directory=owns)

    @property
    def path(self) -> Path:
        return self.store.path

    def env(self) -> dict[str, str]:
        """``BYOD_REGISTRY`` and ``BYOD_ENCRYPTION_KEY`` for this registry."""

        return {"BYOD_REGISTRY": str(self.path), ENV_KEY: self.key_hex}

    def close(self) -> None:
        self.store.close()
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class ConnectedUser:
    """A user ``InMemoryFleet.connect_user`` connected: their deployment, the version it
    runs and the bundle deployed there."""

    user_id: str
    deployment: InMemoryDeployment
    version: SchemaVersion
    bundle: Bundle
    fleet: InMemoryFleet = field(repr=False)

    @property
    def target(self) -> DeploymentTarget:
        """The user's target, decrypted from the registry as the engine does."""

        return self.fleet.target(self.user_id)

    @property
    def row(self) -> UserConfig:
        """The user's registry row, read now."""

        return self.fleet.store.get_user(self.user_id)


class InMemoryFleet:
    """In-memory deployments by URL, a real registry and vault, and the ``Connector``
    protocol over them (see the module docstring).

    ``versions``: a directory of version files, a ``VersionGraph`` or ``SchemaVersion``s
    (loaded when first needed); ``config`` compiles the bundles (its ``auth`` and
    ``convex_version`` are part of every fingerprint); ``timeout``: the simulated client
    timeout of ``async_client`` (None: a ``delay`` is waited out in full).
    """

    deployment_class: type[InMemoryDeployment] = InMemoryDeployment

    def __init__(self, directory: Path | str | None = None, *,
                 registry: TempRegistry | None = None, versions: Any = None,
                 config: EngineConfig | None = None, timeout: float | None = None) -> None:
        self._directory = Path(directory) if directory is not None else None
        self._registry = registry
        self._owns_registry = registry is None
        self._versions = versions
        self._graph: VersionGraph | None = None
        self.config = config or EngineConfig()
        self.timeout = timeout
        self.catalog = BundleCatalog(self._resolve_bundle)
        self.deployments: dict[str, InMemoryDeployment] = {}
        self.users: dict[str, InMemoryDeployment] = {}
        self._main: InMemoryDeployment = self.new_deployment("main")
        self.deployments[self._main.url] = self._main

    def __enter__(self) -> InMemoryFleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the registry this fleet created (one passed in is the caller's)."""

        if self._registry is not None and self._owns_registry:
            self._registry.close()

    # -- registry and vault ---------------------------------------------------------------
    @property
    def registry(self) -> TempRegistry:
        if self._registry is None:
            self._registry = TempRegistry.create(self._directory)
        return self._registry

    @property
    def store(self) -> SqliteStore:
        return self.registry.store

    @store.setter
    def store(self, value: SqliteStore) -> None:
        self.registry.store = value

    @property
    def vault(self) -> Vault:
        return self.registry.vault

    @vault.setter
    def vault(self, value: Vault) -> None:
        self.registry.vault = value

    @property
    def key_hex(self) -> str:
        return self.registry.key_hex

    # -- versions and bundles ---------------------------------------------------------------
    @property
    def graph(self) -> VersionGraph:
        """The fleet's version graph (``ConfigError`` when it was given no versions)."""

        if self._graph is None:
            versions = self._versions
            if versions is None:
                raise ConfigError("this in-memory fleet has no schema versions: pass "
                                  "versions= (a directory, a VersionGraph or SchemaVersions)")
            if isinstance(versions, VersionGraph):
                self._graph = versions
            elif isinstance(versions, (str, Path)):
                from engine.schema.loader import load_versions

                self._graph = VersionGraph(load_versions(Path(versions), self.config))
            elif isinstance(versions, SchemaVersion):
                self._graph = VersionGraph([versions])
            else:
                self._graph = VersionGraph(list(versions))
        return self._graph

    def version(self, ref: str | int | None = None) -> SchemaVersion:
        """A version by id, number or ``head`` (None: the head)."""

        return self.graph.resolve("head" if ref is None else ref)

    def bundle(self, version: str | int | SchemaVersion | None = None) -> Bundle:
        """The compiled bundle of a version (noted in the catalog)."""

        v = version if isinstance(version, SchemaVersion) else self.version(version)
        bundle = compile_version(v, self.config)
        self.catalog.note(bundle, deployed_schema(v.schema))
        return bundle

    def _resolve_bundle(self, bundle: Any) -> KnownBundle | None:
        """A bundle compiled elsewhere (a rollout's ``PlanKit``): its schema from the
        version graph, a widened bundle's schema and data steps from the plan between the
        versions its name spans."""

        if self._versions is None:
            return None
        try:
            graph = self.graph
            if bundle.kind == "version":  # a main bundle declares main's receipts table
                tables = (getattr(bundle, "manifest", None) or {}).get("tables", ())
                return KnownBundle(deployed_schema(graph.get(bundle.version_id).schema,
                                                   "main" if "byodImports" in tables else "user"))
            match = _WIDENED.match(str(bundle.version_id))
            if match is None:
                return None
            from engine.plan.planner import plan

            found = plan(graph, match["start"], match["end"], allow_destructive=True)
        except (ByodError, KeyError):
            return None
        for step in found.steps:
            if step.kind == "deploy_widened" and step.version == bundle.version_id \
                    and step.schema is not None:
                return KnownBundle(deployed_schema(step.schema),
                                   {s.id: s for s in step.data_steps})
        return None

    # -- deployments ------------------------------------------------------------------------
    def new_deployment(self, name: str, **options: Any) -> InMemoryDeployment:
        """A deployment of ``deployment_class`` sharing the fleet's catalog (not added)."""

        return self.deployment_class(name, catalog=self.catalog, **options)

    def add_deployment(self, name: str | None = None, *, url: str | None = None,
                       key: str | None = None, **options: Any) -> InMemoryDeployment:
        """A deployment reachable by URL, connected to nobody (nothing deployed unless
        ``version=`` / ``fingerprint=`` are given)."""

        if key is not None:
            options["key"] = key
        options.setdefault("version", None)
        dep = self.new_deployment(name or f"deployment-{len(self.deployments)}", url=url,
                                  **options)
        self.deployments[dep.url] = dep
        return dep

    @property
    def main(self) -> InMemoryDeployment:
        """The app's main deployment (reachable by ``main_target``)."""

        return self._main

    @main.setter
    def main(self, dep: InMemoryDeployment) -> None:
        if self.deployments.get(self._main.url) is self._main:
            del self.deployments[self._main.url]
        self._main = dep
        self.deployments[dep.url] = dep

    @property
    def main_target(self) -> DeploymentTarget:
        return DeploymentTarget(label="main", url=self.main.url, admin_key=self.main.key)

    def deploy_main(self, version: str | int | SchemaVersion | None = None) -> Bundle:
        """Put a version's main bundle (every table, the ``byodMain:*`` functions) on the
        main deployment, as the app's own deploy does."""

        v = version if isinstance(version, SchemaVersion) else self.version(version)
        bundle = compile_bundle(v.schema, version_id=v.id, config=self.config, target="main")
        self.catalog.note(bundle, deployed_schema(v.schema, "main"))
        self.main.deployed = bundle
        return bundle

    def add(self, user_id: str, *, status: ConnectionStatus = "connected",
            version: str | None = None,
            fingerprint: str | None = None, kind: str = "version",
            tables: Iterable[str] | None = None, record: bool = True,
            error: str | None = None) -> InMemoryDeployment:
        """Connect ``user_id`` to a new deployment ``dep-<user_id>``.

        ``version`` with ``fingerprint``: the deployment answers exactly that marker (any
        strings: a drifted or unknown bundle). ``version`` alone: the fleet's version of
        that id, number or ``head``, its bundle compiled and deployed. Neither: nothing
        deployed yet. ``record``: the deployment's ``byodVersions`` holds the version, as
        after a connect or a rollout. The registry gets encrypted credentials, the
        deployment record and ``status`` (``pending`` leaves the status unset; ``error``
        stores ``error`` as the reason)."""

        name = f"dep-{user_id}"
        bundle: Bundle | None = None
        if version is not None and fingerprint is None:
            bundle = self.bundle(version)
            dep = self.new_deployment(name, version=None, tables=tables)
            dep.deployed = bundle
        else:
            dep = self.new_deployment(name, version=version, fingerprint=fingerprint,
                                      kind=kind, tables=tables)
        if record and dep.version is not None:
            dep.record_version(dep.version, str(dep.fingerprint), dep.kind)
        self.deployments[dep.url] = dep
        self.users[user_id] = dep
        self._save_credentials(user_id, dep)
        if dep.version is not None:
            self.store.set_deployment(user_id, status="deployed", version=dep.version,
                                      fingerprint=dep.fingerprint)
        if status != "pending":
            if status == "error" and error is None:
                error = "the deployment failed its last check"
            self.store.set_connection_status(user_id, status,
                                             error=error if status == "error" else None)
        return dep

    def connect_user(self, user_id: str, version: str | int | None = None, *,
                     status: ConnectionStatus = "connected",
                     tables: Iterable[str] | None = None) -> ConnectedUser:
        """``user_id`` connected at ``version`` (None: the head), its bundle deployed and
        recorded on the deployment."""

        v = self.version(version)
        dep = self.add(user_id, status=status, version=v.id, tables=tables)
        return ConnectedUser(user_id=user_id, deployment=dep, version=v,
                             bundle=dep.deployed, fleet=self)

    def reconnect(self, user_id: str, dep: InMemoryDeployment) -> None:
        """Point ``user_id``'s stored credentials at ``dep`` (their status is unchanged)."""

        self.deployments[dep.url] = dep
        self.users[user_id] = dep
        self._save_credentials(user_id, dep)

    def _save_credentials(self, user_id: str, dep: InMemoryDeployment) -> None:
        url_ct, key_ct = self.vault.encrypt_credentials(user_id, dep.url, dep.key)
        self.store.upsert_credentials(user_id, url_ct=url_ct, key_ct=key_ct)

    def deployment(self, ref: str) -> InMemoryDeployment:
        """A deployment by user id, URL or name."""

        if ref in self.users:
            return self.users[ref]
        if ref in self.deployments:
            return self.deployments[ref]
        for dep in self.deployments.values():
            if dep.name == ref:
                return dep
        raise KeyError(f"no in-memory deployment for {ref!r}")

    def target(self, user_id: str) -> DeploymentTarget:
        """``user_id``'s target, decrypted from the registry."""

        return self.vault.target_for(self.store.get_user(user_id))

    # -- the Connector protocol --------------------------------------------------------------
    def _reach(self, target: DeploymentTarget) -> InMemoryDeployment | RefusedClient:
        dep = self.deployments.get(target.url)
        if dep is None:
            return RefusedClient.unreachable(target.label)
        if target.admin_key != dep.key:
            return RefusedClient.unauthorized(target.label)
        return dep

    def client(self, target: DeploymentTarget) -> InMemoryDeployment | RefusedClient:
        """The deployment ``target`` reaches (itself: a ``FunctionRunner``)."""

        return self._reach(target)

    def deployer(self, target: DeploymentTarget) -> InMemoryDeployment | RefusedClient:
        """The deployment ``target`` reaches (itself: a ``DeployAdapter``)."""

        return self._reach(target)

    def async_client(self, target: DeploymentTarget, timeout: float | None = None, *,
                     retries: int | None = None) -> AsyncInMemoryDeployment:
        """The async view of the deployment ``target`` reaches; ``timeout`` (default: the
        fleet's) is the simulated client timeout, ``retries`` is accepted and ignored."""

        return AsyncInMemoryDeployment(self._reach(target),
                                       timeout if timeout is not None else self.timeout)

    def async_deployer(self, target: DeploymentTarget
                       ) -> tuple[AsyncInMemoryDeployment, None]:
        """The async view, which deploys and runs functions itself (no second client)."""

        return self.async_client(target), None


if TYPE_CHECKING:
    from engine.ports.deployment import Connector

    def _is_a_connector(fleet: InMemoryFleet) -> Connector:
        return fleet  # mypy checks the protocol here
