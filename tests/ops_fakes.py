"""In-memory stand-ins for the health, routing and disconnect tests: a deployment that
answers the engine's bundle functions (version, export/import/delete/count pages, and the
main-only import-with-receipt, patch, get-by-ids and per-user export), with switchable
faults.

The registry and the vault are the real ones (a SQLite file in a temp dir, a fresh key).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import (
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    FunctionError,
)
from engine.ports.deployment import DeploymentTarget, VersionInfo
from engine.registry.sqlite import SqliteStore
from engine.schema.models import Location, Schema, SchemaVersion, Table
from engine.schema.types import parse_field_type
from engine.vault import Vault, generate_key

ADMIN_KEY_SECRET = "7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a"

_ids = itertools.count(1)


def admin_key(name: str) -> str:
    return f"{name}|{ADMIN_KEY_SECRET}"


class FakeDeployment:
    """A deployment with a byod bundle: tables of documents, opaque ids, faults."""

    def __init__(self, name: str, *, version: str = "v1", fingerprint: str = "fp1",
                 kind: str = "version", tables: list[str] | None = None):
        self.name = name
        self.url = f"https://{name}.convex.cloud"
        self.key = admin_key(name)
        self.version, self.fingerprint, self.kind = version, fingerprint, kind
        self.tables: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in tables or []}
        self.receipts: dict[str, dict[str, Any]] = {}
        self.fault: str | None = None  # "down" | "slow" | "revoked"
        self.delay = 0.0
        self.calls: list[str] = []
        self.before_call: Callable[[str, dict[str, Any]], None] | None = None
        self.closed = 0

    # -- data helpers for tests ------------------------------------------------------------
    def new_id(self, table: str) -> str:
        return f"{self.name[:3]}{next(_ids):06d}{table}"

    def insert(self, table: str, doc: dict[str, Any]) -> str:
        _id = self.new_id(table)
        self.tables.setdefault(table, {})[_id] = {"_id": _id, "_creationTime": float(next(_ids)),
                                                  **copy.deepcopy(doc)}
        return _id

    def docs(self, table: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in self.tables.get(table, {}).values()]

    @property
    def target(self) -> DeploymentTarget:
        return DeploymentTarget(label=self.name, url=self.url, admin_key=self.key)

    # -- FunctionRunner --------------------------------------------------------------------
    def _check(self, path: str, args: dict[str, Any]) -> None:
        self.calls.append(path)
        if self.before_call is not None:
            self.before_call(path, args)
        if self.fault == "down":
            raise DeploymentUnreachable(f"{path}: cannot connect", deployment=self.name)
        if self.fault == "slow":
            raise DeploymentTimeout(f"{path}: no answer within 1 s", deployment=self.name)
        if self.fault == "revoked":
            raise DeploymentUnauthorized(f"{path}: the key was rejected", deployment=self.name)

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.run("query", path, args)

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.run("mutation", path, args)

    def read_version(self) -> VersionInfo:
        value = self.query("byod:version")
        return VersionInfo(value["version"], value["fingerprint"], value["kind"])

    def close(self) -> None:
        self.closed += 1

    def run(self, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
        args = copy.deepcopy(args or {})
        self._check(path, args)
        fn = getattr(self, "_fn_" + path.replace(":", "_"), None)
        if fn is None:
            raise FunctionError("no such function", deployment=self.name, function=path)
        return copy.deepcopy(fn(**args))

    def _table(self, table: str) -> dict[str, dict[str, Any]]:
        if table not in self.tables:
            raise FunctionError(f"unknown table {table}", deployment=self.name)
        return self.tables[table]

    def _fn_byod_version(self) -> dict[str, Any]:
        return {"version": self.version, "fingerprint": self.fingerprint, "kind": self.kind}

    def _fn_byod_exportPage(self, table: str, cursor: str | None, numItems: int) -> dict:
        docs = list(self._table(table).values())
        start = int(cursor or 0)
        page = docs[start:start + numItems]
        end = start + len(page)
        return {"page": page, "continueCursor": str(end), "isDone": end >= len(docs)}

    def _fn_byod_countPage(self, table: str, cursor: str | None, numItems: int) -> dict:
        res = self._fn_byod_exportPage(table, cursor, numItems)
        return {"count": len(res["page"]), "continueCursor": res["continueCursor"],
                "isDone": res["isDone"]}

    def _fn_byod_deletePage(self, table: str, numItems: int) -> dict:
        rows = self._table(table)
        batch = list(rows)[:numItems]
        for _id in batch:
            del rows[_id]
        return {"deleted": len(batch), "isDone": not rows}

    def _insert_fields(self, table: str, doc: dict[str, Any]) -> str:
        fields = {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}
        return self.insert(table, fields)

    def _fn_byod_importPage(self, table: str, documents: list) -> list[str]:
        self._table(table)
        return [self._insert_fields(table, d) for d in documents]

    def _fn_byodMain_exportOwnedPage(self, table: str, index: str, field: str, value: str,
                                     cursor: str | None, numItems: int) -> dict:
        if not index:
            raise FunctionError("no index given", deployment=self.name)
        docs = [d for d in self._table(table).values() if d.get(field) == value]
        start = int(cursor or 0)
        page = docs[start:start + numItems]
        end = start + len(page)
        return {"page": page, "continueCursor": str(end), "isDone": end >= len(docs)}

    def _fn_byodMain_importPageOnce(self, table: str, documents: list, receipt: str,
                                    run: str) -> list[str]:
        self._table(table)
        if receipt in self.receipts:
            return list(self.receipts[receipt]["ids"])
        ids = [self._insert_fields(table, d) for d in documents]
        self.receipts[receipt] = {"run": run, "table": table, "ids": ids}
        return ids

    def _fn_byodMain_patchPage(self, table: str, patches: list) -> int:
        rows = self._table(table)
        for p in patches:
            rows[p["id"]].update(p["fields"])
        return len(patches)

    def _fn_byodMain_getByIds(self, table: str, ids: list[str]) -> list:
        rows = self._table(table)
        return [rows.get(i) for i in ids]

    def _fn_byodMain_clearReceipts(self, run: str, numItems: int) -> dict:
        mine = [k for k, r in self.receipts.items() if r["run"] == run][:numItems]
        for k in mine:
            del self.receipts[k]
        return {"deleted": len(mine),
                "isDone": not any(r["run"] == run for r in self.receipts.values())}


class AsyncFake:
    """The async client health uses, over a FakeDeployment (with a real delay for 'slow').
    ``in_flight``/``peak`` count concurrent reads across all fakes, so tests can assert
    on concurrency without timing assertions."""

    in_flight = 0
    peak = 0

    def __init__(self, dep: FakeDeployment, timeout: float):
        self.dep, self.timeout = dep, timeout

    async def read_version(self) -> VersionInfo:
        AsyncFake.in_flight += 1
        AsyncFake.peak = max(AsyncFake.peak, AsyncFake.in_flight)
        try:
            if self.dep.delay:
                if self.dep.delay >= self.timeout:
                    await asyncio.sleep(self.timeout)
                    raise DeploymentTimeout(
                        f"byod:version: no answer within {self.timeout:g} s",
                        deployment=self.dep.name)
                await asyncio.sleep(self.dep.delay)
            return self.dep.read_version()
        finally:
            AsyncFake.in_flight -= 1

    async def aclose(self) -> None:
        pass


class Fleet:
    """Fake deployments by URL, a real SQLite registry and a real vault."""

    def __init__(self, tmp: Path):
        self.store = SqliteStore(tmp / "registry.sqlite3")
        self.vault = Vault.from_hex(generate_key())
        self.deployments: dict[str, FakeDeployment] = {}
        self.main = FakeDeployment("main")

    def add(self, user_id: str, *, status: str = "connected", version: str = "v1",
            fingerprint: str = "fp1", tables: list[str] | None = None) -> FakeDeployment:
        dep = FakeDeployment(f"dep-{user_id}", version=version, fingerprint=fingerprint,
                             tables=tables)
        self.deployments[dep.url] = dep
        url_ct, key_ct = self.vault.encrypt_credentials(user_id, dep.url, dep.key)
        self.store.upsert_credentials(user_id, url_ct=url_ct, key_ct=key_ct)
        self.store.set_deployment(user_id, status="deployed", version=version,
                                  fingerprint=fingerprint)
        if status != "pending":
            self.store.set_connection_status(user_id, status,
                                             error="boom" if status == "error" else None)
        return dep

    def reconnect(self, user_id: str, dep: FakeDeployment) -> None:
        self.deployments[dep.url] = dep
        url_ct, key_ct = self.vault.encrypt_credentials(user_id, dep.url, dep.key)
        self.store.upsert_credentials(user_id, url_ct=url_ct, key_ct=key_ct)

    def client(self, target: DeploymentTarget) -> FakeDeployment:
        return self.deployments[target.url]

    def async_client(self, target: DeploymentTarget, timeout: float) -> AsyncFake:
        return AsyncFake(self.deployments[target.url], timeout)


def table(name: str, location: str = "user", /, **fields: str) -> Table:
    """A table from type expressions (``optional(T)`` for optional fields)."""

    defs = {key: parse_field_type(expr) for key, expr in fields.items()}
    return Table(name=name, location=Location(location), fields=defs)


def version(vid: str, number: int, *tables: Table, parents: tuple[str, ...] = ()) -> SchemaVersion:
    return SchemaVersion(id=vid, number=number, parents=parents,
                         schema=Schema(tables={t.name: t for t in tables}))


__all__ = ["AsyncFake", "FakeDeployment", "Fleet", "table", "version"]
