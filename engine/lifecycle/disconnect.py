"""Disconnect a user from their own deployment: keep, migrate back, or delete their data.

* ``keep``    — status ``disconnected``; nothing is deleted anywhere.
* ``migrate`` — every user-located table is copied from the user's deployment to the main
  deployment (parents before children), page by page, every ``id(table)`` remapped to the
  new ids; references that cannot be remapped yet (self-references, cycles) are patched
  in afterwards; then counts and checksums are verified per table. Main must run the main
  bundle of the user's version (``byod deploy VERSION --target main``): that is probed
  first, before the lease, the block or any write (``engine.lifecycle.main_bundle``).
* ``delete``  — needs ``confirm``; every user-located table is emptied in batches and
  verified empty.

While a data step runs, the user is blocked (status ``error`` with a "disconnect in
progress" reason) so no write lands on the old deployment mid-copy. Progress — per table
cursor, the old→new id map, deferred patches — is saved in the registry after every page
(``store.save_progress("disconnect", user, ...)``), and every page is imported on main with
a receipt in the same transaction, so an interrupted run is simply run again: it resumes
and creates no duplicates. Nothing is marked ``disconnected`` before its data step has
verifiably finished, and the end is two resumable writes: the progress saved as
``verified``, then the user marked (then the progress closed, ``done``); a run that finds
``verified`` only finishes, it never copies again.

A migrate whose verification failed (something other than the router wrote to the user's
deployment during the copy) re-copies the failing tables on the next run: new documents
are imported behind a saved marker and a receipt, changed ones patched on main. What that
cannot mend (a deletion) is given up with ``abandon_migrate`` for ``keep`` or ``delete``,
audited. The disconnect holds the user's registry lease (short TTL, heartbeat in the
background, checked before every write), so it never runs alongside a rollout or another
disconnect of the same user, and a killed one's lease is taken over at once.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.config import EngineConfig
from engine.convex.connector import HttpConnector
from engine.convex.targets import main_target_from_env
from engine.errors import (
    SAFETY_EXIT_CODE,
    ByodError,
    ConfirmationRequired,
    DisconnectError,
    LeaseHeld,
    UnknownVersion,
)
from engine.lifecycle.crashpoints import crash_point
from engine.lifecycle.main_bundle import deploy_main_command, require_main_bundle
from engine.lifecycle.progress import DISCONNECT, ProgressRun, read_pages
from engine.lifecycle.remap import (
    IdMaps,
    TableDigest,
    Unresolved,
    canonical,
    copy_order,
    final_form,
    prepare,
    remap_value,
)
from engine.lifecycle.routing import Router
from engine.plan.versions import Versions, as_version_source
from engine.ports.deployment import Connector, FunctionRunner, close_quietly
from engine.ports.registry import ProgressStore, RegistryStore, UserConfig
from engine.redact import redact
from engine.registry.heartbeat import LeaseHeartbeat
from engine.schema.engine_tables import ENGINE_TABLE_NAMES
from engine.schema.models import Location, Table
from engine.vault import Vault

__all__ = ["DisconnectRefused", "DisconnectReport", "Mode", "disconnect"]

Mode = Literal["keep", "migrate", "delete"]
MODES: tuple[str, ...] = ("keep", "migrate", "delete")

Hook = Callable[[str, dict[str, Any]], None]


class DisconnectRefused(DisconnectError):
    """(exit 3) Another runner holds the user's lease: nothing was changed."""

    exit_code = SAFETY_EXIT_CODE


@dataclass
class DisconnectReport:
    user_id: str
    mode: str
    status: str = ""  # the connection status at the end
    resumed: bool = False
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    dangling: list[dict[str, str]] = field(default_factory=list)
    patched: int = 0
    duration_s: float = 0.0
    message: str = ""

    @property
    def verified(self) -> bool:
        return all(t.get("verified") for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "mode": self.mode, "status": self.status,
                "resumed": self.resumed, "verified": self.verified, "tables": self.tables,
                "dangling": self.dangling, "patched": self.patched,
                "duration_s": round(self.duration_s, 3), "message": self.message}


class _Run(ProgressRun):
    """One disconnect data step: the clients, the persisted progress, the hooks."""

    KIND = DISCONNECT
    TABLE_COUNTERS = ("copied", "deleted")

    def __init__(self, user: UserConfig, mode: str, store: ProgressStore,
                 tables: dict[str, Table], source: FunctionRunner,
                 main: FunctionRunner | None, page_size: int, hook: Hook | None,
                 secrets: tuple[str, ...]):
        self.user, self.user_id, self.mode, self.store = user, user.user_id, mode, store
        self.tables, self.source, self.main = tables, source, main
        self.page_size, self.hook, self.secrets = page_size, hook, secrets
        doc = store.load_progress(self.KIND, user.user_id)
        self.resumed = doc is not None and doc.get("state") == "running"
        if doc is None or not self.resumed:
            doc = {"kind": "disconnect", "user_id": user.user_id, "mode": mode,
                   "run": uuid.uuid4().hex[:16], "version": user.schema_version,
                   "started_at": time.time(), "tables": {}, "ids": {}, "patches": [],
                   "dangling": [], "patched": False}
        assert doc is not None
        doc["state"] = "running"
        self.doc = doc
        self.ids = IdMaps.from_json(doc.get("ids"), tables)
        self.keep_lease: Callable[[], object] = lambda: None

    def save(self) -> None:
        # Renewed before every remote write and at every save: a lease lost to another
        # runner stops this one before its next write instead of racing it.
        self.keep_lease()
        super().save()

    # -- migrate ---------------------------------------------------------------------------
    def copy(self) -> None:
        assert self.main is not None
        order, group = copy_order(self.tables)
        self.doc["order"] = order
        for name in order:
            state = self.tstate(name)
            while not state["done"]:
                self._copy_page(name, state, group[name])
            self.ids.done.add(name)
            self.save()
        if not self.doc["patched"]:
            self._patch()
            self.doc["patched"] = True
            self.save()

    def _copy_page(self, name: str, state: dict[str, Any], pending: frozenset[str]) -> None:
        assert self.main is not None
        table = self.tables[name]
        result = self.source.query("byod:exportPage", {"table": name, "cursor": state["cursor"],
                                                       "numItems": self.page_size})
        docs = list(result.get("page") or [])
        if docs:
            prepared = [prepare(table, d, self.ids, pending) for d in docs]
            receipt = f"{self.doc['run']}:{name}:{state['page']}"
            self.keep_lease()  # still ours right before writing to main
            new_ids = self.main.mutation("byodMain:importPageOnce", {
                "table": name, "documents": [p.fields for p in prepared],
                "receipt": receipt, "run": self.doc["run"]})
            if not isinstance(new_ids, list) or len(new_ids) != len(docs):
                raise DisconnectError(
                    f"importing a page of {name} into main returned "
                    f"{len(new_ids) if isinstance(new_ids, list) else 'no'} ids for "
                    f"{len(docs)} documents")
            crash_point("disconnect.imported")
            olds = [str(d["_id"]) for d in docs]
            self.ids.add(name, olds, [str(i) for i in new_ids])
            for old, p in zip(olds, prepared):
                if p.deferred:
                    self.doc["patches"].append({"table": name, "id": old, "fields": p.deferred})
                for fname, ref_table, ref_id in p.dangling:
                    self.doc["dangling"].append({"table": name, "id": old, "field": fname,
                                                 "references": f"{ref_table} {ref_id}"})
        state["cursor"] = result.get("continueCursor")
        state["done"] = bool(result.get("isDone"))
        state["page"] += 1
        state["copied"] += len(docs)
        self.save()
        crash_point("disconnect.page")
        self.fire("page", table=name, page=state["page"], copied=state["copied"])

    def _patch(self) -> None:
        """Second pass: fill in references whose targets were not copied at import time."""

        assert self.main is not None
        by_table: dict[str, list[dict[str, Any]]] = {}
        for item in self.doc["patches"]:
            table = self.tables[item["table"]]
            fields: dict[str, Any] = {}
            for fname, raw in item["fields"].items():
                fdef = table.fields[fname]
                try:
                    fields[fname] = remap_value(fdef.type, raw, self.ids)
                except Unresolved as exc:  # optional by construction: leave it absent
                    self.doc["dangling"].append({"table": table.name, "id": item["id"],
                                                 "field": fname,
                                                 "references": f"{exc.table} {exc.old_id}"})
            if fields:
                new_id = self.ids.resolve(table.name, item["id"])
                by_table.setdefault(table.name, []).append({"id": new_id, "fields": fields})
        for name, patches in by_table.items():
            for start in range(0, len(patches), self.page_size):
                self.main.mutation("byodMain:patchPage",
                                   {"table": name, "patches": patches[start:start + self.page_size]})
        self.doc["patch_count"] = sum(len(p) for p in by_table.values())
        self.fire("patched", count=self.doc["patch_count"])

    # -- re-copy after a failed verification ------------------------------------------------
    def recopy_changed(self) -> None:
        """An earlier run's verification failed for some tables: something other than the
        router wrote to the user's deployment during the copy. Bring main's copy of those
        tables in line: documents new there are imported (behind a saved marker and a
        receipt, so a crash never imports them twice), documents that changed are patched
        on main. A document deleted there, or a field removed, cannot be undone on main:
        verification still fails and says so (``--abandon-migrate`` is the way out)."""

        assert self.main is not None
        self._settle_recopy()
        failed = set(self.doc.get("unverified") or [])
        if not failed:
            return
        order, group = copy_order(self.tables)
        for name in order:
            if name in failed:
                self._recopy(name, group[name])
        self.doc["unverified"] = []
        self.save()

    def _recopy(self, name: str, pending: frozenset[str]) -> None:
        assert self.main is not None
        table = self.tables[name]
        fresh: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for result in read_pages(lambda cursor: self.source.query("byod:exportPage", {
                "table": name, "cursor": cursor, "numItems": self.page_size}),
                what=f"reading {name}", deployment=self.user_id):
            docs = list(result.get("page") or [])
            mapped = self.ids.maps.get(name, {})
            fresh.extend(d for d in docs if str(d["_id"]) not in mapped)
            forms = []
            for d in docs:
                if str(d["_id"]) in mapped:
                    try:
                        forms.append(final_form(table, d, self.ids))
                    except Unresolved:
                        continue
            if forms:
                got = self.main.query("byodMain:getByIds",
                                      {"table": name, "ids": [f["_id"] for f in forms]})
                for f, g in zip(forms, got or []):
                    if g is not None and canonical(f) != canonical(g):
                        changed.append({"id": f["_id"],
                                        "fields": {k: v for k, v in f.items() if k != "_id"}})
        for start in range(0, len(fresh), self.page_size):
            chunk = fresh[start:start + self.page_size]
            prepared = [prepare(table, d, self.ids, pending) for d in chunk]
            count = int(self.doc.get("recopies", 0))
            self.doc["recopies"] = count + 1
            self.doc["recopy"] = {
                "table": name, "olds": [str(d["_id"]) for d in chunk],
                "fields": [p.fields for p in prepared],
                "deferred": [p.deferred for p in prepared],
                "receipt": f"{self.doc['run']}:{name}:recopy:{count}"}
            self.save()  # the marker first: a crash re-imports under the same receipt
            self._settle_recopy()
        for start in range(0, len(changed), self.page_size):
            self.keep_lease()
            self.main.mutation("byodMain:patchPage",
                               {"table": name, "patches": changed[start:start + self.page_size]})
        self.fire("recopied", table=name, added=len(fresh), patched=len(changed))

    def _settle_recopy(self) -> None:
        """Import the marked re-copy page (again: the receipt returns the same ids if it
        committed before a crash), then patch in its deferred references."""

        assert self.main is not None
        marker = self.doc.get("recopy")
        if not marker:
            return
        name = marker["table"]
        self.keep_lease()
        new_ids = self.main.mutation("byodMain:importPageOnce", {
            "table": name, "documents": marker["fields"], "receipt": marker["receipt"],
            "run": self.doc["run"]})
        if not isinstance(new_ids, list) or len(new_ids) != len(marker["olds"]):
            raise DisconnectError(f"re-importing a page of {name} into main returned the "
                                  "wrong number of ids")
        self.ids.add(name, marker["olds"], [str(i) for i in new_ids])
        self.tstate(name)["copied"] += len(new_ids)
        table, patches = self.tables[name], []
        for new_id, deferred in zip(new_ids, marker["deferred"]):
            fields = {}
            for fname, raw in deferred.items():
                try:
                    fields[fname] = remap_value(table.fields[fname].type, raw, self.ids)
                except Unresolved:
                    continue  # optional by construction: left out, as in the patch pass
            if fields:
                patches.append({"id": str(new_id), "fields": fields})
        if patches:
            self.main.mutation("byodMain:patchPage", {"table": name, "patches": patches})
        self.doc["recopy"] = None
        self.save()

    def verify_copy(self) -> dict[str, dict[str, Any]]:
        """Re-read every table on both sides: counts and checksums must match."""

        assert self.main is not None
        out: dict[str, dict[str, Any]] = {}
        for name in self.doc.get("order", list(self.tables)):
            table = self.tables[name]
            expected, actual = TableDigest(), TableDigest()
            missing: list[str] = []
            source_count = 0
            pages = read_pages(lambda cursor: self.source.query("byod:exportPage", {
                "table": name, "cursor": cursor, "numItems": self.page_size}),
                what=f"reading {name}", deployment=self.user.user_id)
            for result in pages:
                docs = list(result.get("page") or [])
                source_count += len(docs)
                forms = []
                for d in docs:
                    try:
                        forms.append(final_form(table, d, self.ids))
                    except Unresolved:
                        missing.append(f"{d['_id']} (not copied)")
                for f in forms:
                    expected.add(f)
                if forms:
                    got = self.main.query("byodMain:getByIds",
                                          {"table": name, "ids": [f["_id"] for f in forms]})
                    for f, g in zip(forms, got or []):
                        if g is None:
                            missing.append(f"{f['_id']} (on main)")
                        else:
                            actual.add(g)
                if not result.get("isDone"):
                    self.keep_lease()
            mapped = len(self.ids.maps.get(name, {}))
            ok = (not missing and source_count == expected.count == actual.count == mapped
                  and expected.hexdigest == actual.hexdigest)
            out[name] = {"source_count": source_count,
                         "copied": mapped, "main_count": actual.count,
                         "checksum": expected.hexdigest[:16],
                         "main_checksum": actual.hexdigest[:16], "verified": ok}
            if missing:
                out[name]["missing"] = missing[:10]
        return out

    def cleanup_receipts(self) -> None:
        assert self.main is not None
        while True:
            res = self.main.mutation("byodMain:clearReceipts",
                                     {"run": self.doc["run"], "numItems": 500})
            if res.get("isDone"):
                return

    # -- delete ----------------------------------------------------------------------------
    def delete(self) -> dict[str, dict[str, Any]]:
        order, _ = copy_order(self.tables)
        out: dict[str, dict[str, Any]] = {}
        for name in reversed(order):  # children first
            state = self.tstate(name)
            while not state["done"]:
                self.keep_lease()  # still ours right before deleting
                res = self.source.mutation("byod:deletePage",
                                           {"table": name, "numItems": self.page_size})
                crash_point("disconnect.deleted")
                state["deleted"] += int(res.get("deleted", 0))
                state["done"] = bool(res.get("isDone"))
                self.save()
                self.fire("deleted", table=name, deleted=state["deleted"])
            left = self.source.query("byod:countPage",
                                     {"table": name, "cursor": None, "numItems": 1})
            empty = left.get("count", 1) == 0 and bool(left.get("isDone"))
            out[name] = {"deleted": state["deleted"], "verified": empty}
        return out


def _user_tables(user: UserConfig, versions: Versions) -> dict[str, Table]:
    source = as_version_source(versions)
    if not user.schema_version:
        raise DisconnectError(
            f"user {user.user_id!r} has no deployed schema version on record; "
            "run `byod test-connection` or a rollout first")
    try:
        schema = source.schema(user.schema_version)
    except UnknownVersion as exc:
        raise DisconnectError(
            f"user {user.user_id!r} is on version {user.schema_version}, which is not in "
            f"the version files ({exc})") from None
    return {n: t for n, t in schema.tables.items()
            if t.location == Location.USER and n not in ENGINE_TABLE_NAMES}


def disconnect(
    user_id: str, mode: str, *, confirm: bool = False, store: RegistryStore, vault: Vault,
    config: EngineConfig | None = None, main_client: FunctionRunner | None = None,
    graph: Versions, connector: Connector | None = None,
    router: Router | None = None, page_size: int = 200, hook: Hook | None = None,
    abandon_migrate: bool = False,
) -> DisconnectReport:
    """Disconnect one user (see the module docstring). Re-running after an interruption
    resumes (or, past verification, only finishes); re-running after success reports that
    the user is already disconnected. ``abandon_migrate`` lets ``keep`` or ``delete``
    replace an interrupted migrate (audited; what it copied stays on main)."""

    config = config or EngineConfig()
    started = time.monotonic()
    user = store.get_user(user_id)
    report = DisconnectReport(user_id=user_id, mode=mode)
    stage = _refuse_or_resume(user, mode, confirm=confirm, store=store, page_size=page_size,
                              abandon_migrate=abandon_migrate)
    if user.connection_status == "disconnected" and stage == "new":
        _tidy_dead_lease(store, user_id)
        report.status = "disconnected"
        report.message = "already disconnected; nothing to do"
        return report
    owned: list[FunctionRunner] = []
    if mode == "migrate" and stage != "finish":
        # Main must have the main bundle: probed before the lease, before the user is
        # blocked and before anything is written, so a missing one changes nothing.
        connector = connector or HttpConnector(config)
        try:
            if main_client is None:
                main_client = connector.client(main_target_from_env())
                owned.append(main_client)
            require_main_bundle(main_client, version=user.schema_version,
                                purpose=f"disconnect --data migrate of user {user_id!r}")
            if user.schema_version:  # none on record: refused below, with that reason
                _check_main_version(main_client, user)
        except BaseException:
            for client in owned:
                close_quietly(client)
            raise
    # The user's lease (the one a rollout's runner takes too): two disconnects, or a
    # disconnect and a rollout, never work the same deployment at once. A short TTL kept
    # alive by a heartbeat: a killed disconnect's lease lapses quickly (at once when this
    # host can tell its process is gone).
    lease = LeaseHeartbeat(store, user_id, f"disconnect:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    try:
        lease.acquire()
    except LeaseHeld as exc:
        for client in owned:
            close_quietly(client)
        holder = _describe_lease(store, exc)
        raise DisconnectRefused(
            f"user {user_id!r} is being worked by another runner ({holder}); run the "
            "disconnect again once it has finished") from None
    try:
        if stage == "abandon":
            _abandon_migrate(store, user_id, mode)
        if stage == "finish":
            return _finish(store, user_id, mode, router=router, report=report,
                           started=started)
        if mode == "keep":
            store.set_connection_status(user_id, "disconnected")
            store.audit(user_id, "disconnected", {"mode": "keep"})
            _invalidate(router, user_id)
            report.status = "disconnected"
            report.message = "disconnected; the data stays on the user's deployment"
            report.duration_s = time.monotonic() - started
            return report
        tables = _user_tables(user, graph)
        target = vault.target_for(user)
        connector = connector or HttpConnector(config)
        source = connector.client(target)
        owned.append(source)
        return _data_step(user, mode, store=store, tables=tables, source=source,
                          main_client=main_client, page_size=page_size, hook=hook,
                          secrets=target.secrets, router=router, report=report,
                          started=started, keep_lease=lease.check)
    finally:
        for client in owned:
            close_quietly(client)
        lease.release()


def _tidy_dead_lease(store: RegistryStore, user_id: str) -> None:
    """A disconnect killed between its status write and its lease release left the lease
    behind: the re-run that finds the user disconnected takes it over (only a provably
    dead or lapsed holder's) and lets it go. A live holder's lease is left alone."""

    holder = f"disconnect:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    try:
        store.acquire_lease(user_id, holder, 1.0)
    except LeaseHeld:
        return
    store.release_lease(user_id, holder)


def _describe_lease(store: object, exc: LeaseHeld) -> str:
    """``holder, process P on H, lease until T`` for a refusal message (ISO 8601 UTC)."""

    parts = [str(exc.holder)]
    current = getattr(store, "current_lease", None)
    lease = current(exc.deployment) if callable(current) else None
    if lease is not None and lease.holder == exc.holder and lease.pid is not None:
        parts.append(f"process {lease.pid} on {lease.host}")
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exc.expires_at))
    parts.append(f"lease until {until}; `byod leases` shows it, `byod leases break "
                 f"{exc.deployment} --yes` ends it if that process is gone")
    return ", ".join(parts)


Stage = Literal["new", "resume", "finish", "abandon"]


def _refuse_or_resume(user: UserConfig, mode: str, *, confirm: bool, store: RegistryStore,
                      page_size: int, abandon_migrate: bool = False) -> Stage:
    """Refuse what cannot start (an unknown mode, a bad page size, another mode's
    interrupted run, an unconfirmed delete); otherwise say how this run starts: ``resume``
    an interrupted data step, ``finish`` one that verified but was not marked
    disconnected, ``abandon`` an interrupted migrate for ``keep``/``delete``, or ``new``."""

    if mode not in MODES:
        raise DisconnectError(f"unknown disconnect mode {mode!r}; use one of {', '.join(MODES)}")
    if not 1 <= page_size <= 8192:
        raise DisconnectError("page_size must be between 1 and 8192")
    if abandon_migrate and mode == "migrate":
        raise DisconnectError("--abandon-migrate gives a migrate up for --data keep or "
                              "--data delete; to finish the migrate, leave it out")
    progress = store.load_progress(DISCONNECT, user.user_id) or {}
    state, was = progress.get("state"), progress.get("mode")
    stage: Stage = "new"
    if state == "verified":
        if was != mode:
            raise DisconnectError(
                f"a {was} disconnect of user {user.user_id!r} finished and verified its data "
                f"step but was interrupted before marking the user; finish it with --data {was}")
        return "finish"
    if state == "running" and was != mode:
        if not (was == "migrate" and abandon_migrate):
            extra = (f"; or give it up with --data {mode} --abandon-migrate (the documents "
                     "it copied stay on main; audited)") if was == "migrate" else ""
            raise DisconnectError(
                f"a {was} disconnect of user {user.user_id!r} was interrupted"
                + (f" ({progress['last_error']})" if progress.get("last_error") else "")
                + f"; finish it with --data {was} (it resumes where it stopped){extra}")
        stage = "abandon"
    elif state == "running":
        stage = "resume"
    elif abandon_migrate:
        raise DisconnectError(f"user {user.user_id!r} has no interrupted migrate to abandon")
    already = user.connection_status == "disconnected" and stage == "new"
    if mode == "delete" and not confirm and not already:
        raise ConfirmationRequired(
            f"deleting user {user.user_id!r}'s content from their deployment cannot be "
            "undone; pass --yes (confirm=True) to go ahead")
    return stage


def _abandon_migrate(store: RegistryStore, user_id: str, mode: str) -> None:
    """Give up an interrupted migrate for ``mode`` (the operator asked): audited with
    what it had copied; its progress is kept, marked abandoned."""

    doc = store.load_progress(DISCONNECT, user_id) or {}
    copied = {n: int(t.get("copied", 0)) for n, t in (doc.get("tables") or {}).items()}
    doc.update(state="abandoned", abandoned_for=mode, abandoned_at=time.time())
    store.save_progress(DISCONNECT, user_id, doc)
    store.audit(user_id, "disconnect_migrate_abandoned",
                {"for": mode, "copied_to_main": copied, "run": doc.get("run"),
                 "last_error": doc.get("last_error")})


def _finish(store: RegistryStore, user_id: str, mode: str, *, router: Router | None,
            report: DisconnectReport, started: float) -> DisconnectReport:
    """The data step verified and said so, then the run stopped: mark the user
    disconnected (unless that got saved too) and close the progress. Copies nothing."""

    doc = store.load_progress(DISCONNECT, user_id) or {}
    report.resumed = True
    report.tables = dict(doc.get("verified") or {})
    report.dangling = list(doc.get("dangling", []))
    report.patched = int(doc.get("patch_count", 0))
    if store.get_user(user_id).connection_status != "disconnected":
        store.set_connection_status(user_id, "disconnected")
        store.audit(user_id, "disconnected", {"mode": mode, "tables": len(report.tables),
                                              "finished_after_interruption": True})
    doc["state"] = "done"
    store.save_progress(DISCONNECT, user_id, doc)
    _invalidate(router, user_id)
    report.status = "disconnected"
    report.duration_s = time.monotonic() - started
    report.message = ("an interrupted disconnect finished: "
                      + ("content was already copied to main and verified" if mode == "migrate"
                         else "content was already deleted and verified empty"))
    return report


def _data_step(user: UserConfig, mode: str, *, store: RegistryStore, tables: dict[str, Table],
               source: FunctionRunner, main_client: FunctionRunner | None, page_size: int,
               hook: Hook | None, secrets: tuple[str, ...], router: Router | None,
               report: DisconnectReport, started: float,
               keep_lease: Callable[[], object] | None = None) -> DisconnectReport:
    user_id = user.user_id
    run = _Run(user, mode, store, tables, source, main_client, page_size, hook, secrets)
    if keep_lease is not None:
        run.keep_lease = keep_lease
    report.resumed = run.resumed
    run.save()  # "running" before blocking: health leaves the user alone from here on
    if user.connection_status in ("connected", "error"):
        store.set_connection_status(
            user_id, "error",
            error=f"disconnect ({mode}) in progress: content is being "
                  f"{'copied to main' if mode == 'migrate' else 'deleted'}")
    _invalidate(router, user_id)
    store.audit(user_id, "disconnect_started", {"mode": mode, "resumed": run.resumed})
    try:
        if mode == "migrate":
            run.copy()
            run.recopy_changed()
            report.tables = run.verify_copy()
        else:
            report.tables = run.delete()
    except ByodError as exc:
        _interrupted(store, run, user_id, mode, redact(str(exc), secrets))
        raise DisconnectError(
            f"disconnect ({mode}) of user {user_id!r} stopped: {redact(str(exc), secrets)}; "
            "progress is saved, run the same command again to resume") from exc
    report.dangling = list(run.doc.get("dangling", []))
    report.patched = int(run.doc.get("patch_count", 0))
    if not report.verified:
        bad = sorted(n for n, t in report.tables.items() if not t.get("verified"))
        run.doc["unverified"] = bad
        _interrupted(store, run, user_id, mode, f"verification failed for {', '.join(bad)}")
        hint = ("run it again to re-copy what changed on the user's deployment, or give the "
                "migrate up with --data keep (or delete) --abandon-migrate"
                if mode == "migrate" else "run it again")
        raise DisconnectError(
            f"disconnect ({mode}) of user {user_id!r}: verification failed for "
            f"{', '.join(bad)}; the user stays blocked and nothing was marked disconnected: "
            + hint)
    if mode == "migrate":
        try:
            run.cleanup_receipts()
        except ByodError:  # receipts are bookkeeping; a later run's cleanup is harmless
            pass
    # Two steps, each resumable: "verified" first (a re-run only finishes from there,
    # never copies again), then the user is marked, then the progress is closed.
    run.doc["state"] = "verified"
    run.doc["verified"] = {n: t for n, t in report.tables.items()}
    run.doc["finished_at"] = time.time()
    run.save()
    crash_point("disconnect.verified")
    store.set_connection_status(user_id, "disconnected")
    store.audit(user_id, "disconnected", {"mode": mode, "tables": len(report.tables)})
    crash_point("disconnect.marked")
    run.doc["state"] = "done"
    run.save()
    _invalidate(router, user_id)
    report.status = "disconnected"
    report.duration_s = time.monotonic() - started
    report.message = ("content copied to main and verified" if mode == "migrate"
                      else "content deleted and verified empty")
    return report


def _check_main_version(main: FunctionRunner, user: UserConfig) -> None:
    """Main's bundle must be of the user's version: its tables are what the copy fills."""

    info = main.read_version()
    if info.version != user.schema_version:
        raise DisconnectError(
            f"the main deployment is on version {info.version} but user {user.user_id!r} is "
            f"on {user.schema_version}; bring them to the same version before migrating back "
            f"(a rollout of the user, or `{deploy_main_command(user.schema_version)}`); "
            "nothing was changed")


def _interrupted(store: RegistryStore, run: _Run, user_id: str, mode: str, why: str) -> None:
    run.doc["last_error"] = why
    try:
        run.save()
        current = store.get_user(user_id)
        if current.connection_status in ("connected", "error"):
            store.set_connection_status(
                user_id, "error",
                error=f"disconnect ({mode}) interrupted: {why}; re-run byod disconnect")
    except ByodError:
        pass


def _invalidate(router: Router | None, user_id: str) -> None:
    if router is not None:
        router.invalidate(user_id)