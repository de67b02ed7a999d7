"""Copy a user's existing content from the main deployment to their own one (on connect).

The reverse of a ``migrate`` disconnect, built from the same pieces (``engine.lifecycle.remap``):
tables in reference order, every ``id(table)`` remapped to the new deployment's ids,
progress (per-table cursor, the old→new id map) saved in the registry after every write
(``store.save_progress("copy_from_main", user, ...)``), then counts and checksums verified
per table over documents normalised through the map. Which documents are the user's is
decided by ``engine.lifecycle.ownership`` (``userId``, or required references to owned documents).
Main's copies are left in place.

Two differences from the migrate direction, both because the user's bundle has no
receipts table and no patch function:

* **Crash safety without receipts.** Before each import the engine saves a marker with
  the documents it is about to write and the table's expected size; after the import it
  saves the new ids and clears the marker. A run that finds a marker counts the table:
  at the old size the import never committed and is repeated; at old size + n it did,
  and the n newest documents (the table is read in creation order) are matched to the
  marker's documents by content to recover their ids; any other size means something
  else wrote to the deployment and the copy stops with a clear error. Nothing else writes
  there meanwhile: the user is blocked while the copy runs.
* **No patch pass.** A document is imported only once everything it references has a
  new id: a page is imported in rounds (a reply after its parent), and documents whose
  targets come in a later page are held back (in the progress document) until their
  reference group is complete. References to documents that were never copied are left
  out (optional fields) and reported; documents that reference each other in a cycle
  stop the copy with a clear error.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.convex.targets import main_target_from_env
from engine.errors import ByodError, CopyFromMainError, DisconnectError
from engine.lifecycle.crashpoints import crash_point
from engine.lifecycle.main_bundle import deploy_main_command, require_main_bundle
from engine.lifecycle.ownership import OwnerRule, owner_rules, owns
from engine.lifecycle.progress import COPY_FROM_MAIN, ProgressRun, read_pages
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
from engine.ports.deployment import Connector, FunctionRunner
from engine.ports.registry import ProgressStore, RegistryStore
from engine.schema.engine_tables import ENGINE_TABLE_NAMES
from engine.schema.models import Location, SchemaVersion, Table

__all__ = [
    "CopyPlan",
    "CopyReport",
    "copy_from_main",
    "plan_copy",
    "run_copy_stage",
]

Hook = Callable[[str, dict[str, Any]], None]
SOURCE = "main among this user's content"
_COUNT_PAGE = 4096


@dataclass
class CopyReport:
    user_id: str
    resumed: bool = False
    already_done: bool = False
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_copied: dict[str, str] = field(default_factory=dict)  # table → why (no owner)
    dangling: list[dict[str, str]] = field(default_factory=list)
    duration_s: float = 0.0
    message: str = ""

    @property
    def verified(self) -> bool:
        return all(t.get("verified") for t in self.tables.values())

    @property
    def copied(self) -> int:
        return sum(int(t.get("copied", 0)) for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "resumed": self.resumed,
                "already_done": self.already_done, "verified": self.verified,
                "copied": self.copied, "tables": self.tables, "not_copied": self.not_copied,
                "dangling": self.dangling, "duration_s": round(self.duration_s, 3),
                "message": self.message}


class _Recorder(IdMaps):
    """An id map that resolves nothing: it collects every reference ``remap_value`` meets."""

    def __init__(self, tables: frozenset[str]):
        super().__init__(tables=tables)
        self.seen: set[tuple[str, str]] = set()

    def resolve(self, table: str, old: str) -> str:
        if table in self.tables:
            self.seen.add((table, old))
        return old


def _refs(table: Table, doc: Mapping[str, Any], tables: frozenset[str]) -> set[tuple[str, str]]:
    rec = _Recorder(tables)
    for name, value in doc.items():
        fdef = table.fields.get(name)
        if fdef is not None and name not in ("_id", "_creationTime"):
            try:
                remap_value(fdef.type, value, rec)
            except Unresolved as exc:  # an id-only union member: still a reference
                rec.seen.add((exc.table, exc.old_id))
    return rec.seen


class _Copy(ProgressRun):
    """One copy: the clients, the rules, the persisted progress."""

    KIND = COPY_FROM_MAIN
    TABLE_COUNTERS = ("copied", "inserted")

    def __init__(self, user_id: str, store: ProgressStore, tables: dict[str, Table],
                 main: FunctionRunner, dest: FunctionRunner, version: str, page_size: int,
                 hook: Hook | None):
        self.user_id, self.store, self.tables = user_id, store, tables
        self.main, self.dest, self.page_size, self.hook = main, dest, page_size, hook
        self.names = frozenset(tables)
        self.rules: dict[str, OwnerRule] = owner_rules(tables)
        self.order, self.group = copy_order(tables)
        doc = store.load_progress(self.KIND, user_id)
        self.already_done = doc is not None and doc.get("state") == "done"
        self.resumed = doc is not None and doc.get("state") == "running"
        if self.resumed and doc is not None and doc.get("version") != version:
            raise CopyFromMainError(
                f"an interrupted copy from main for user {user_id!r} was for version "
                f"{doc.get('version')}, but the deployments are now on {version}; finish "
                "it on that version or start a new one (after emptying the copied tables)")
        if doc is None or not (self.resumed or self.already_done):
            doc = {"kind": "connect-copy", "user_id": user_id, "version": version,
                   "run": uuid.uuid4().hex[:16], "started_at": time.time(), "tables": {},
                   "ids": {}, "held": {}, "pending": None, "dangling": [],
                   "state": "running"}
        self.doc: dict[str, Any] = doc
        self.ids = IdMaps.from_json(doc.get("ids"), tables)

    def owned(self, table: str, old: str) -> bool:
        return old in self.ids.maps.get(table, {})

    # -- reading ---------------------------------------------------------------------------
    def export(self, name: str, cursor: str | None) -> dict[str, Any]:
        """One page of main's documents of ``name``: the user's only, through the owner
        index when there is one; otherwise every document (filtered by the caller)."""

        rule = self.rules[name]
        if rule.user_field is not None and rule.index is not None:
            result = self.main.query("byodMain:exportOwnedPage", {
                "table": name, "index": rule.index, "field": rule.user_field,
                "value": self.user_id, "cursor": cursor, "numItems": self.page_size})
        else:
            result = self.main.query("byod:exportPage", {
                "table": name, "cursor": cursor, "numItems": self.page_size})
        return dict(result or {})

    def mine(self, name: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [d for d in docs if owns(self.rules[name], d, self.user_id, self.owned)]

    def count_dest(self, name: str) -> int:
        pages = read_pages(lambda cursor: self.dest.query("byod:countPage", {
            "table": name, "cursor": cursor, "numItems": _COUNT_PAGE}),
            what=f"counting {name}", deployment=self.user_id)
        return sum(int(res.get("count", 0)) for res in pages)

    def dest_docs(self, name: str) -> list[dict[str, Any]]:
        pages = read_pages(lambda cursor: self.dest.query("byod:exportPage", {
            "table": name, "cursor": cursor, "numItems": _COUNT_PAGE}),
            what=f"reading {name}", deployment=self.user_id)
        return [doc for res in pages for doc in (res.get("page") or [])]

    # -- writing ---------------------------------------------------------------------------
    def import_docs(self, name: str, docs: list[dict[str, Any]], pending: frozenset[str]) -> None:
        table, state = self.tables[name], self.tstate(name)
        for start in range(0, len(docs), self.page_size):
            chunk = docs[start:start + self.page_size]
            prepared = [prepare(table, d, self.ids, pending, SOURCE) for d in chunk]
            if any(p.deferred for p in prepared):  # callers import only resolvable ones
                raise CopyFromMainError(f"internal: a document of {name} was imported before "
                                        "what it references")
            marker = {"table": name, "olds": [str(d["_id"]) for d in chunk],
                      "fields": [p.fields for p in prepared],
                      "before": state["base"] + state["inserted"],
                      "dangling": [{"table": name, "id": str(d["_id"]), "field": f,
                                    "references": f"{t} {i}"}
                                   for d, p in zip(chunk, prepared) for f, t, i in p.dangling]}
            self.doc["pending"] = marker
            self.save()
            new_ids = self.dest.mutation("byod:importPage",
                                         {"table": name, "documents": marker["fields"]})
            crash_point("copy.imported")
            if not isinstance(new_ids, list) or len(new_ids) != len(chunk):
                raise CopyFromMainError(
                    f"importing {len(chunk)} documents of {name} into the user's deployment "
                    f"returned {len(new_ids) if isinstance(new_ids, list) else 'no'} ids")
            self.apply(marker, [str(i) for i in new_ids])

    def apply(self, marker: dict[str, Any], new_ids: list[str]) -> None:
        name, olds = marker["table"], marker["olds"]
        self.ids.add(name, olds, new_ids)
        state = self.tstate(name)
        state["inserted"] += len(olds)
        state["copied"] += len(olds)
        self.doc["dangling"].extend(marker["dangling"])
        gone = set(olds)
        held = self.doc["held"].get(name)
        if held:
            self.doc["held"][name] = [d for d in held if str(d["_id"]) not in gone]
        self.doc["pending"] = None
        self.save()

    def settle(self) -> None:
        """Finish the import a crash interrupted (see the module docstring)."""

        marker = self.doc.get("pending")
        if not marker:
            return
        name, n, before = marker["table"], len(marker["olds"]), int(marker["before"])
        now = self.count_dest(name)
        if now == before:
            new_ids = self.dest.mutation("byod:importPage",
                                         {"table": name, "documents": marker["fields"]})
            if not isinstance(new_ids, list) or len(new_ids) != n:
                raise CopyFromMainError(f"re-importing {n} documents of {name} into the "
                                        "user's deployment returned the wrong number of ids")
            self.apply(marker, [str(i) for i in new_ids])
            return
        if now != before + n:
            raise CopyFromMainError(
                f"{name} on the user's deployment holds {now} documents; an interrupted copy "
                f"expected {before} or {before + n}. Something else wrote to it during the "
                "copy, so the copy cannot tell what it already imported; empty the table "
                "(or reset the deployment) and start the copy again")
        tail: deque[dict[str, Any]] = deque(maxlen=n)
        tail.extend(self.dest_docs(name))
        buckets: dict[str, list[str]] = {}
        for d in tail:
            body = {k: v for k, v in d.items() if k not in ("_id", "_creationTime")}
            buckets.setdefault(canonical(body), []).append(str(d["_id"]))
        recovered: list[str] = []
        for fields in marker["fields"]:
            bucket = buckets.get(canonical(fields))
            if not bucket:
                raise CopyFromMainError(
                    f"an interrupted import into {name} committed, but its documents could "
                    "not be recognised among the newest ones on the user's deployment; "
                    "empty the table (or reset the deployment) and start the copy again")
            recovered.append(bucket.pop(0))
        self.apply(marker, recovered)

    # -- the copy --------------------------------------------------------------------------
    def run(self) -> None:
        self.settle()
        groups: list[list[str]] = []
        for name in self.order:
            if groups and self.group[groups[-1][0]] == self.group[name]:
                groups[-1].append(name)
            else:
                groups.append([name])
        for names in groups:
            if all(n in self.ids.done for n in names):
                continue
            for name in names:
                state = self.tstate(name)
                if not self.rules[name].copied:
                    state["done"] = True
                    continue
                if "base" not in state:
                    state["base"] = self.count_dest(name)
                    self.save()
                while not state["done"]:
                    self.page(name, state)
            self.release_held(names)
            self.ids.done.update(names)
            self.save()

    def unresolved(self, name: str, doc: Mapping[str, Any]) -> set[tuple[str, str]]:
        """References into the current group (not complete yet) that have no new id."""

        pending = self.group[name]
        return {(t, i) for t, i in _refs(self.tables[name], doc, self.names)
                if t in pending and t not in self.ids.done and not self.owned(t, i)}

    def page(self, name: str, state: dict[str, Any]) -> None:
        result = self.export(name, state["cursor"])
        docs = list(result.get("page") or [])
        held = {str(d["_id"]) for d in self.doc["held"].get(name, [])}
        remaining = [d for d in self.mine(name, docs)
                     if not self.owned(name, str(d["_id"])) and str(d["_id"]) not in held]
        while remaining:  # rounds: a reply goes in after the parent of the same page
            ready = [d for d in remaining if not self.unresolved(name, d)]
            if not ready:
                break
            self.import_docs(name, ready, self.group[name])
            done = {str(d["_id"]) for d in ready}
            remaining = [d for d in remaining if str(d["_id"]) not in done]
        if remaining:
            self.doc["held"].setdefault(name, []).extend(remaining)
        state["cursor"] = result.get("continueCursor")
        state["done"] = bool(result.get("isDone"))
        state["page"] += 1
        self.save()
        crash_point("copy.page")
        self.fire("page", table=name, page=state["page"], copied=state["copied"],
                  held=len(self.doc["held"].get(name, [])))

    def release_held(self, names: list[str]) -> None:
        """Import the documents held back in this group once nothing they reference is
        still held; what they reference that was never copied is left out (optional)."""

        while True:
            remaining = [(n, d) for n in names for d in self.doc["held"].get(n, [])]
            if not remaining:
                return
            keys = {(n, str(d["_id"])) for n, d in remaining}
            ready: dict[str, list[dict[str, Any]]] = {}
            for n, d in remaining:
                if not (_refs(self.tables[n], d, self.names) & keys):
                    ready.setdefault(n, []).append(d)
            if not ready:
                sample = ", ".join(f"{n} {d['_id']}" for n, d in remaining[:3])
                raise CopyFromMainError(
                    f"{len(remaining)} document(s) on main reference each other in a cycle "
                    f"(e.g. {sample}); the copy imports a document only after what it "
                    "references, so it cannot copy them. Break the cycle on main (clear "
                    "one optional reference) and retry")
            for n, docs in ready.items():
                self.import_docs(n, docs, frozenset())
            self.fire("held", released=sum(len(d) for d in ready.values()))

    # -- verification ----------------------------------------------------------------------
    def verify(self) -> dict[str, dict[str, Any]]:
        """Re-read both sides: the user's documents on main normalised through the id
        map must equal, by count and checksum, the mapped documents on the user's
        deployment; and the deployment must hold nothing extra (no duplicates)."""

        out: dict[str, dict[str, Any]] = {}
        for name in self.order:
            if not self.rules[name].copied:
                continue
            table, state = self.tables[name], self.tstate(name)
            expected, actual = TableDigest(), TableDigest()
            missing: list[str] = []
            source_count = 0
            for result in read_pages(lambda cursor: self.export(name, cursor),
                                     what=f"reading {name} on main", deployment="main"):
                for d in self.mine(name, list(result.get("page") or [])):
                    source_count += 1
                    try:
                        expected.add(final_form(table, d, self.ids))
                    except (Unresolved, DisconnectError):
                        missing.append(f"{d['_id']} (not copied)")
            mapped = set(self.ids.maps.get(name, {}).values())
            dest = self.dest_docs(name)
            for d in dest:
                if str(d["_id"]) in mapped:
                    actual.add(d)
            expected_total = int(state.get("base", 0)) + int(state.get("inserted", 0))
            ok = (not missing and source_count == expected.count == actual.count == len(mapped)
                  and expected.hexdigest == actual.hexdigest and len(dest) == expected_total)
            out[name] = {"main_count": source_count, "copied": len(mapped),
                         "deployment_count": actual.count,
                         "checksum": expected.hexdigest[:16],
                         "deployment_checksum": actual.hexdigest[:16], "verified": ok}
            if len(dest) != expected_total:
                out[name]["unexpected"] = f"{len(dest)} documents, expected {expected_total}"
            if missing:
                out[name]["missing"] = missing[:10]
        return out


def copy_from_main(user_id: str, *, store: RegistryStore, tables: Mapping[str, Table],
                   version: str, main: FunctionRunner, dest: FunctionRunner,
                   page_size: int = 200, hook: Hook | None = None) -> CopyReport:
    """Copy ``user_id``'s documents of ``tables`` (the user-located tables of ``version``,
    which both deployments must run) from ``main`` to ``dest``, then verify. Resumes an
    interrupted copy; a finished one is not repeated. Raises ``CopyFromMainError`` (the
    progress is kept) when it stops or does not verify. Connection status is the caller's."""

    started = time.monotonic()
    if not 1 <= page_size <= 8192:
        raise CopyFromMainError("page_size must be between 1 and 8192")
    run = _Copy(user_id, store, dict(tables), main, dest, version, page_size, hook)
    report = CopyReport(user_id=user_id, resumed=run.resumed, already_done=run.already_done)
    report.not_copied = {n: r.describe() for n, r in run.rules.items() if not r.copied}
    if run.already_done:
        report.tables = dict(run.doc.get("verified") or {})
        report.message = "content was already copied from main and verified"
        return report
    _check_main_version(main, version)
    run.save()
    store.audit(user_id, "copy_from_main_started", {"resumed": run.resumed})
    try:
        run.run()
        report.tables = run.verify()
    except CopyFromMainError as exc:
        _stopped(run, str(exc))
        raise
    except ByodError as exc:
        _stopped(run, str(exc))
        raise CopyFromMainError(
            f"copying user {user_id!r}'s content from main stopped: {exc}; progress is "
            "saved, retry to resume") from exc
    report.dangling = list(run.doc.get("dangling", []))
    if not report.verified:
        bad = sorted(n for n, t in report.tables.items() if not t.get("verified"))
        _stopped(run, f"verification failed for {', '.join(bad)}")
        raise CopyFromMainError(
            f"copying user {user_id!r}'s content from main: verification failed for "
            f"{', '.join(bad)}; the user is not marked connected")
    run.doc.update(state="done", verified=report.tables, finished_at=time.time())
    run.save()
    crash_point("copy.verified")
    store.audit(user_id, "copied_from_main", {"documents": report.copied})
    report.duration_s = time.monotonic() - started
    report.message = f"{report.copied} documents copied from main and verified"
    return report


def _check_main_version(main: FunctionRunner, version: str) -> None:
    info = main.read_version()
    if info.version != version:
        raise CopyFromMainError(
            f"the main deployment is on version {info.version} but the user's deployment is "
            f"on {version}; bring them to the same version before copying "
            f"(`{deploy_main_command(version)}`)")


def _stopped(run: _Copy, why: str) -> None:
    run.doc["last_error"] = why
    try:
        run.save()
    except ByodError:
        pass


# -- the connect flow's copying stage --------------------------------------------------------

COPYING_REASON = ("connect in progress: the user's content is being copied from main to "
                  "their deployment")


@dataclass(frozen=True)
class CopyPlan:
    """A copy from main that a connect runs in its ``copying`` stage."""

    main: FunctionRunner
    page_size: int = 200


def plan_copy(wanted: bool, main_client: FunctionRunner | None, page_size: int,
              connector: Connector, owned: list[Any]) -> tuple[CopyPlan | None, tuple[str, ...]]:
    """(the plan or None, secrets to redact). Without ``main_client`` the main deployment
    comes from ``BYOD_MAIN_URL`` + ``BYOD_MAIN_ADMIN_KEY`` through ``connector``; the
    client built for it is appended to ``owned`` for the caller to close."""

    if not wanted:
        return None, ()
    if not 1 <= page_size <= 8192:
        raise CopyFromMainError("the copy's page size must be between 1 and 8192")
    secrets: tuple[str, ...] = ()
    if main_client is not None:
        client = main_client
    else:
        target = main_target_from_env()
        client = connector.client(target)
        owned.append(client)
        secrets = target.secrets
    # while the connect is still validating: a main without the main bundle stops it
    # before anything is stored, deployed or blocked
    require_main_bundle(client, version=None, purpose="connect --copy-from-main")
    return CopyPlan(main=client, page_size=page_size), secrets


def run_copy_stage(user_id: str, plan: CopyPlan, *, store: RegistryStore,
                   version: SchemaVersion, dest: FunctionRunner,
                   hook: Hook | None = None) -> CopyReport:
    """Block the user (status ``error``: routing must not send their writes to main while
    their content is copied away from it), then copy and verify. A finished copy is not
    repeated (and does not block). The caller marks the user connected afterwards."""

    progress = store.load_progress(COPY_FROM_MAIN, user_id) or {}
    if progress.get("state") != "done":
        _check_main_version(plan.main, version.id)  # before blocking the user
        store.set_connection_status(user_id, "error", error=COPYING_REASON)
    tables = {n: t for n, t in version.schema.tables.items()
              if t.location == Location.USER and n not in ENGINE_TABLE_NAMES}
    return copy_from_main(user_id, store=store, tables=tables, version=version.id,
                          main=plan.main, dest=dest, page_size=plan.page_size, hook=hook)
