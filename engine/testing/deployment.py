"""One in-memory deployment: what a user's (or the app's main) Convex deployment answers
once a byod bundle is on it, without a network, a subprocess or Node.js.

``InMemoryDeployment`` holds tables of documents with Convex-like ids, the version marker
``byod:version`` answers (``version`` / ``fingerprint`` / ``kind``, and ``recorded``: the
latest ``byodVersions`` row), the deployment's own journal (``byodVersions`` and
``byodSteps``, written by ``byod:recordVersion`` / ``byod:recordStep`` and by the data-step
pages of ``byodMigrations:runSteps``), ``byod:verify``, the paginated ``byod:*`` export /
import / count / delete functions, the main-only ``byodMain:*`` functions of disconnect
and connect's copy from main, and the ``byodMigrations:*`` data steps of a widened bundle
(run with ``engine.plan.datasteps.apply_step``, the Python reference of the generated
mutations).

It is the sync ports of ``engine.ports.deployment`` itself (``FunctionRunner``,
``DeployAdapter``: ``run`` / ``query`` / ``mutation`` / ``read_version`` / ``deploy`` /
``close``); ``AsyncInMemoryDeployment`` is the async view (``AsyncFunctionRunner``,
``AsyncDeployAdapter``). ``deploy`` checks every existing document against the bundle's
schema, as Convex does on push, when a ``BundleCatalog`` knows that schema.

Faults are switchable at any time (``fault``, ``delay``, ``tx_limit``), hooks run before a
call (``before_call``), after a mutation applied (``after_mutation``, where a test makes the
process "die" with ``Crash``) and before a deploy (``before_deploy``), and every call is
recorded (``calls``, ``history``, ``deploys``, ``mutations``, ``closed``).

The function handlers live in ``engine.testing.functions`` (the ``EngineFunctions`` mixin)
and the faults, ``Crash``, ``crash_at`` and ``RefusedClient`` in ``engine.testing.faults``;
they stay importable from here.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import inspect
import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from engine.errors import DeploymentTimeout, FunctionError, SchemaValidationFailed
from engine.ports.deployment import DeploymentTarget, DeployResult, VersionInfo
from engine.schema.engine_tables import ENGINE_TABLES
from engine.schema.models import Schema
from engine.schema.validate_doc import validate_document
from engine.testing.catalog import BundleCatalog
from engine.testing.faults import FAULTS, Crash, RefusedClient, check_fault, crash_at
from engine.testing.functions import _MISSING, EngineFunctions

__all__ = [
    "DEFAULT_CONVEX_VERSION",
    "FAULTS",
    "AsyncInMemoryDeployment",
    "Call",
    "Crash",
    "InMemoryDeployment",
    "RefusedClient",
    "crash_at",
]

DEFAULT_CONVEX_VERSION = "1.48.0"

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Convex ids: 32 characters of base32
_counter = itertools.count(1)
_clock_lock = threading.Lock()
_last_ms = 0.0

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One recorded call: ``kind`` is query / mutation / action, or ``deploy`` (then
    ``path`` is the bundle's version id)."""

    kind: str
    path: str
    args: dict[str, Any] = field(default_factory=dict)


def _now_ms() -> float:
    """Milliseconds since the epoch, strictly increasing within the process (documents
    keep their creation order, as ``_creationTime`` does on Convex)."""

    global _last_ms
    with _clock_lock:
        _last_ms = max(time.time() * 1000.0, _last_ms + 0.001)
        return _last_ms


def _encode(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, rest = divmod(number, 32)
        out.append(_ALPHABET[rest])
    return "".join(reversed(out))


class InMemoryDeployment(EngineFunctions):
    """One deployment in memory (see the module docstring). Attributes a test reads or
    sets directly:

    * ``tables``: table name → ``{_id: document}`` (insertion order is creation order);
    * ``version`` / ``fingerprint`` / ``kind``: the marker ``byod:version`` answers
      (``version is None``: no byod bundle answers; before any deploy, every function is
      missing);
    * ``deployed``: the last ``Bundle`` deployed (setting it sets the marker too);
    * ``fault`` (see ``FAULTS``), ``delay`` (seconds, simulated by the async view),
      ``tx_limit`` (data-step pages larger than this fail like Convex's transaction
      limit), ``before_call(path, args)``, ``after_mutation(path, args)``,
      ``before_deploy(bundle)``;
    * ``calls`` (function paths), ``history`` (``Call``s, deploys included), ``deploys``,
      ``mutations``, ``closed``; ``receipts`` (``byodMain:importPageOnce``'s receipts).
    """

    def __init__(self, name: str = "deployment", *, url: str | None = None,
                 key: str | None = None, version: str | None = None,
                 fingerprint: str | None = None, kind: str = "version",
                 tables: Iterable[str] | None = None, catalog: BundleCatalog | None = None,
                 convex_version: str = DEFAULT_CONVEX_VERSION) -> None:
        slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "deployment"
        self.name = name
        self.url = url or f"https://{slug}.convex.cloud"
        self.key = key or f"prod:{slug}|{secrets.token_hex(32)}"
        self.version = version
        self.fingerprint = fingerprint if fingerprint is not None else (
            None if version is None else "")
        self.kind = kind
        self.convex_version = convex_version
        self.catalog = catalog
        self._deployed: Any = None
        self.tables: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in tables or ()}
        for engine_table in ENGINE_TABLES:
            self.tables.setdefault(engine_table, {})
        self.receipts: dict[str, dict[str, Any]] = {}
        # faults and hooks
        self.fault: str | None = None
        self.delay = 0.0
        self.tx_limit: int | None = None
        self.before_call: Callable[[str, dict[str, Any]], None] | None = None
        self.after_mutation: Callable[[str, dict[str, Any]], None] | None = None
        self.before_deploy: Callable[[Any], None] | None = None
        # what happened
        self.calls: list[str] = []
        self.history: list[Call] = []
        self.deploys = 0
        self.mutations = 0
        self.closed = 0
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, "
                f"fault={self.fault!r})")

    # -- identity -----------------------------------------------------------------------
    @property
    def target(self) -> DeploymentTarget:
        """A target that reaches this deployment through an in-memory fleet."""

        return DeploymentTarget(label=self.name, url=self.url, admin_key=self.key)

    @property
    def deployed(self) -> Any:
        """The last bundle deployed (None: none, or only a marker was set)."""

        return self._deployed

    @deployed.setter
    def deployed(self, bundle: Any) -> None:
        self._deployed = bundle
        if bundle is None:
            return
        self.version, self.fingerprint, self.kind = (
            bundle.version_id, bundle.fingerprint, bundle.kind)
        manifest = getattr(bundle, "manifest", None) or {}
        self.convex_version = str(manifest.get("convexVersion") or self.convex_version)
        with self.lock:
            for name in manifest.get("tables", ()):
                self.tables.setdefault(name, {})

    @property
    def schema(self) -> Schema | None:
        """The deployed bundle's schema, when the catalog knows it."""

        if self._deployed is None or self.catalog is None:
            return None
        return self.catalog.schema_of(self._deployed)

    # -- documents ----------------------------------------------------------------------
    def new_id(self, table: str) -> str:
        """A fresh Convex-like id (32 characters of base32; ids sort in creation order)."""

        n = next(_counter)
        digest = int.from_bytes(hashlib.sha256(f"{self.name}\0{table}\0{n}".encode())
                                .digest()[:15], "big")
        return _encode(n, 8) + _encode(digest, 24)

    def insert(self, table: str, doc: dict[str, Any], *, validate: bool = True) -> str:
        """Insert ``doc`` (without system fields) as a mutation would; checked against the
        deployed schema when it is known and ``validate``. The new ``_id``."""

        with self.lock:
            return self._insert(table, doc, validate=validate)

    def docs(self, table: str) -> list[dict[str, Any]]:
        """Copies of the documents of ``table`` (empty for an unknown table)."""

        return self._copies(table)

    def _copies(self, table: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(d) for d in self.tables.get(table, {}).values()]

    def violations(self, schema: Schema) -> list[tuple[str, str, str]]:
        """(table, document id, problem) for every document ``schema`` rejects."""

        found = []
        with self.lock:
            for name, table in schema.tables.items():
                for doc_id, doc in self.tables.get(name, {}).items():
                    found += [(name, doc_id, p) for p in validate_document(doc, table)]
        return found

    # -- the deployment's own journal -----------------------------------------------------
    @property
    def recorded_versions(self) -> list[dict[str, Any]]:
        """The ``byodVersions`` rows, oldest first."""

        return self._copies("byodVersions")

    @property
    def recorded_steps(self) -> list[dict[str, Any]]:
        """The ``byodSteps`` rows."""

        return self._copies("byodSteps")

    def record_version(self, version: str, fingerprint: str, kind: str = "version",
                       plan_id: str | None = None, applied_at: float | None = None) -> str:
        """Add a ``byodVersions`` row, as ``byod:recordVersion`` does."""

        row: dict[str, Any] = {"version": version, "fingerprint": fingerprint, "kind": kind,
                               "appliedAt": applied_at if applied_at is not None
                               else time.time() * 1000}
        if plan_id is not None:
            row["planId"] = plan_id
        with self.lock:
            return self._insert("byodVersions", row, validate=False)

    def record_step(self, step_id: str, version: str, status: str = "completed",
                    processed: int = 0, cursor: str | None = _MISSING,
                    at: float | None = None) -> str:
        """Insert or update the ``byodSteps`` row of ``step_id``, as ``byod:recordStep``
        does (``at``: seconds since the epoch of the update, default now)."""

        fields: dict[str, Any] = {"stepId": step_id, "version": version, "status": status,
                                  "processed": processed,
                                  "updatedAt": (at if at is not None else time.time()) * 1000}
        if cursor is not _MISSING:
            fields["cursor"] = cursor
        with self.lock:
            rows = self.tables.setdefault("byodSteps", {})
            for doc_id, row in rows.items():
                if row.get("stepId") == step_id:
                    row.update(fields)
                    return doc_id
            return self._insert("byodSteps", fields, validate=False)

    # -- FunctionRunner / DeployAdapter -----------------------------------------------------
    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.run("query", path, args)

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.run("mutation", path, args)

    def read_version(self) -> VersionInfo:
        value = self.query("byod:version")
        return VersionInfo(value["version"], value["fingerprint"], value["kind"],
                           value.get("recorded"))

    def close(self) -> None:
        self.closed += 1

    def run(self, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
        args = copy.deepcopy(dict(args or {}))
        self.calls.append(path)
        self.history.append(Call(kind, path, copy.deepcopy(args)))
        if self.before_call is not None:
            self.before_call(path, args)
        self._gate(path)
        with self.lock:
            if kind == "mutation":
                self.mutations += 1
            result = copy.deepcopy(self._dispatch(path, args))
        if kind == "mutation" and self.after_mutation is not None:
            self.after_mutation(path, args)
        return result

    def deploy(self, bundle: Any) -> DeployResult:
        self.history.append(Call("deploy", str(bundle.version_id),
                                  {"fingerprint": bundle.fingerprint, "kind": bundle.kind}))
        self._gate("deploy")
        if self.fault == "deploy_fails":
            raise SchemaValidationFailed(
                "Schema validation failed: the deployment holds documents the new schema "
                "rejects", deployment=self.name)
        if self.before_deploy is not None:
            self.before_deploy(bundle)
        known = self.catalog.lookup(bundle) if self.catalog is not None else None
        with self.lock:
            if known is not None and known.schema.schema_validation:
                bad = self.violations(known.schema)
                if bad:
                    table, doc_id, problem = bad[0]
                    raise SchemaValidationFailed(
                        f"Schema validation failed: document {doc_id} in table {table} does "
                        f"not match the schema: {problem}", deployment=self.name,
                        table=table, documents=sorted({d for t, d, _ in bad if t == table}))
            self.deploys += 1
            if self.fault != "ignore_deploy":
                self.deployed = bundle
        return DeployResult(self.name, str(bundle.version_id), str(bundle.fingerprint), 0.0)

    # -- internals ------------------------------------------------------------------------
    def _data_steps(self) -> dict[str, Any] | None:
        """The deployed bundle's data steps by id (None: it carries none, so it has no
        ``byodMigrations`` module)."""

        if self._deployed is None or self.catalog is None:
            return None
        return self.catalog.steps_of(self._deployed) or None

    def _table_names(self) -> list[str]:
        """The tables the deployed bundle declares, in its order (``TABLES`` in byod.ts)."""

        manifest = getattr(self._deployed, "manifest", None) or {}
        names = manifest.get("tables")
        return [str(n) for n in names] if names else list(self.tables)

    def _gate(self, what: str) -> None:
        check_fault(self.fault, what, self.name)

    def _missing(self, path: str) -> FunctionError:
        return FunctionError(f"Could not find public function for '{path}'",
                             deployment=self.name, function=path)

    def _dispatch(self, path: str, args: dict[str, Any]) -> Any:
        if self.version is None and (path == "byod:version" or not self.deploys):
            raise self._missing(path)  # no byod bundle answers (nothing deployed yet)
        manifest = getattr(self._deployed, "manifest", None) or {}
        if path.startswith("byodMain:") and path not in manifest.get("functions", {path: 1}):
            raise self._missing(path)  # a deployed bundle without it: not the main bundle
        fn = getattr(self, "_fn_" + path.replace(":", "_"), None)
        if fn is not None:
            try:
                inspect.signature(fn).bind(**args)
            except TypeError as exc:
                raise FunctionError(f"ArgumentValidationError: {exc}", deployment=self.name,
                                    function=path) from None
            return fn(**args)
        module, _, name = path.partition(":")
        if module == "byodMigrations" and self._deployed is not None \
                and self.catalog is not None:
            step = self.catalog.steps_of(self._deployed).get(name)
            if step is not None:
                return self._data_step_page(step, path, args)
        raise self._missing(path)

    def _insert(self, table: str, doc: dict[str, Any], *, validate: bool) -> str:
        fields = {k: copy.deepcopy(v) for k, v in doc.items()
                  if k not in ("_id", "_creationTime")}
        if validate:
            self._check_fields(table, fields)
        doc_id = self.new_id(table)
        self.tables.setdefault(table, {})[doc_id] = {
            "_id": doc_id, "_creationTime": _now_ms(), **fields}
        return doc_id

    def _check_fields(self, table: str, doc: dict[str, Any]) -> None:
        schema = self.schema
        if schema is None or not schema.schema_validation or table not in schema.tables:
            return
        problems = validate_document(doc, schema.tables[table])
        if problems:
            raise FunctionError(
                f"Failed to insert or update a document in table {table!r} because it does "
                f"not match the schema: {problems[0]}", deployment=self.name)


class AsyncInMemoryDeployment:
    """The async view of an ``InMemoryDeployment`` (``AsyncFunctionRunner``,
    ``AsyncDeployAdapter``). Each call first waits ``deployment.delay`` seconds on the
    event loop; a delay of at least ``timeout`` waits ``timeout`` and raises
    ``DeploymentTimeout``, as a client with that timeout would.

    ``in_flight`` / ``peak`` count concurrent calls across every view (class attributes:
    reset ``peak`` before a run, then assert on it instead of on wall-clock time)."""

    in_flight: ClassVar[int] = 0
    peak: ClassVar[int] = 0

    def __init__(self, deployment: InMemoryDeployment | RefusedClient,
                 timeout: float | None = None) -> None:
        self.deployment = deployment
        self.timeout = timeout
        self.closed = False

    @property
    def dep(self) -> InMemoryDeployment | RefusedClient:
        return self.deployment

    def __repr__(self) -> str:
        return f"AsyncInMemoryDeployment({self.deployment!r})"

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        AsyncInMemoryDeployment.in_flight += 1
        AsyncInMemoryDeployment.peak = max(AsyncInMemoryDeployment.peak,
                                           AsyncInMemoryDeployment.in_flight)
        try:
            delay = self.deployment.delay
            if delay:
                if self.timeout is not None and delay >= self.timeout:
                    await asyncio.sleep(self.timeout)
                    raise DeploymentTimeout(f"{what}: no answer within {self.timeout:g} s",
                                            deployment=self.deployment.name)
                await asyncio.sleep(delay)
            return fn()
        finally:
            AsyncInMemoryDeployment.in_flight -= 1

    async def run(self, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self._call(path, lambda: self.deployment.run(kind, path, args))

    async def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self._call(path, lambda: self.deployment.query(path, args))

    async def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self._call(path, lambda: self.deployment.mutation(path, args))

    async def read_version(self) -> VersionInfo:
        return await self._call("byod:version", self.deployment.read_version)

    async def deploy(self, bundle: Any) -> DeployResult:
        return await self._call("deploy", lambda: self.deployment.deploy(bundle))

    async def aclose(self) -> None:
        self.closed = True
