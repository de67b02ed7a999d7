"""The engine's functions on an in-memory deployment: what the byod bundle answers once it
is deployed, as a mixin of ``InMemoryDeployment``.

``EngineFunctions`` holds one ``_fn_<module>_<name>`` method per function path
(``byod:exportPage`` → ``_fn_byod_exportPage``), which ``InMemoryDeployment.run`` finds by
name: the ``byod:*`` functions of every bundle (the version marker, ``verify``, the
deployment's own journal, the paginated export / import / count / delete), the main-only
``byodMain:*`` functions of disconnect and connect's copy from main, and the pages of a
widened bundle's ``byodMigrations:*`` data steps and ``byodMigrations:runSteps``
(``engine.plan.datasteps.apply_step``, the Python reference of the generated mutations). A test may replace one of these methods on an instance to
fake a fault in that function alone.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from engine.errors import FunctionError
from engine.plan.datasteps import DataStep, apply_step
from engine.schema.engine_tables import ENGINE_TABLE_NAMES
from engine.schema.validate_doc import validate_document

if TYPE_CHECKING:
    from engine.schema.models import Schema

__all__ = ["MAX_PAGE", "VERIFY_BYTES", "VERIFY_DOCS", "EngineFunctions"]

MAX_PAGE = 8192  # the largest page the bundle's functions accept (templates/bundle/byod.ts)
VERIFY_DOCS = 8000  # what one byod:verify call reads at most (templates/bundle/byod.ts)
VERIFY_BYTES = 4 * 1024 * 1024
_TX_LIMIT_MESSAGE = ("Too many documents read in a single function execution "
                     "(limit: 32000)")
_MISSING: Any = object()


class EngineFunctions:
    """The ``byod:*`` / ``byodMain:*`` / data-step handlers over the deployment's state
    (declared here, held by ``InMemoryDeployment``)."""

    if TYPE_CHECKING:
        name: str
        version: str | None
        fingerprint: str | None
        kind: str
        convex_version: str
        tables: dict[str, dict[str, dict[str, Any]]]
        receipts: dict[str, dict[str, Any]]
        tx_limit: int | None

        @property
        def schema(self) -> Schema | None: ...

        def _insert(self, table: str, doc: dict[str, Any], *, validate: bool) -> str: ...

        def record_version(self, version: str, fingerprint: str, kind: str = "version",
                           plan_id: str | None = None, applied_at: float | None = None
                           ) -> str: ...

        def record_step(self, step_id: str, version: str, status: str = "completed",
                        processed: int = 0, cursor: str | None = _MISSING,
                        at: float | None = None) -> str: ...

        def _data_steps(self) -> dict[str, DataStep] | None: ...

        def _table_names(self) -> list[str]: ...

    # -- helpers ----------------------------------------------------------------------------
    def _table(self, table: str) -> dict[str, dict[str, Any]]:
        if table not in self.tables:
            raise FunctionError(
                f"byod: unknown table {table!r}; this deployment (version {self.version}) "
                f"has: {', '.join(self.tables)}", deployment=self.name)
        return self.tables[table]

    def _page_size(self, num_items: Any) -> int:
        if not isinstance(num_items, int) or isinstance(num_items, bool) \
                or not 1 <= num_items <= MAX_PAGE:
            raise FunctionError(f"byod: numItems must be an integer from 1 to {MAX_PAGE}, "
                                f"got {num_items!r}", deployment=self.name)
        return num_items

    @staticmethod
    def _paginate(docs: list[dict[str, Any]], cursor: str | None,
                  num_items: int) -> dict[str, Any]:
        start = int(cursor or 0)
        page = docs[start:start + num_items]
        end = start + len(page)
        return {"page": page, "continueCursor": str(end), "isDone": end >= len(docs)}

    def _data_step_page(self, step: DataStep, path: str, args: dict[str, Any]) -> Any:
        size = args.get("batchSize")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise FunctionError(f"byod data step {step.id}: batchSize must be a positive "
                                f"integer, got {size!r}", deployment=self.name, function=path)
        if self.tx_limit is not None and size > self.tx_limit:
            raise FunctionError(_TX_LIMIT_MESSAGE, deployment=self.name, function=path)
        return self._apply_page(step, path, args.get("cursor"), size, bool(args.get("dryRun")))

    def _apply_page(self, step: DataStep, path: str, cursor: str | None, size: int,
                    dry: bool) -> dict[str, Any]:
        """One page of ``step`` from ``cursor`` (the generated ``runPage``)."""

        rows = self._table(step.table)
        ids = sorted(rows)
        page = [i for i in ids if cursor is None or i > cursor][:size]
        table = self.schema.tables.get(step.table) if self.schema is not None else None
        changed = 0
        for doc_id in page:
            doc = rows[doc_id]
            try:
                after = apply_step(doc, step)
                if after is not None and after != doc and table is not None:
                    problems = validate_document(after, table)
                    if problems:
                        raise ValueError(problems[0])
            except (ValueError, NotImplementedError) as exc:
                raise FunctionError(f"byod data step {step.id} failed on document {doc_id} "
                                    f"of table {step.table}: {exc}", deployment=self.name,
                                    function=path) from None
            if after is None:
                changed += 1
                if not dry:
                    del rows[doc_id]
            elif after != doc:
                changed += 1
                if not dry:
                    doc.clear()
                    doc.update(after)
        last = page[-1] if page else cursor
        done = len(page) < size or not page or page[-1] == ids[-1]
        return {"continueCursor": last or "", "isDone": done, "processed": len(page),
                "changed": changed}

    def _fn_byodMigrations_runSteps(self, steps: list[Any], cursor: str | None,
                                    batchSize: Any, expect: Any = None) -> dict[str, Any]:
        """``byodMigrations:runSteps`` as the generated mutation runs it: a page of the first
        step, then each following step whose table fits whole in what is left of the
        budget, every step's ``byodSteps`` row written in the same transaction (a failure
        leaves nothing behind)."""

        path = "byodMigrations:runSteps"
        known = self._data_steps()
        if known is None:
            raise FunctionError(f"Could not find public function for '{path}'",
                                deployment=self.name, function=path)
        if isinstance(expect, dict) and (expect.get("version"), expect.get("fingerprint")) \
                != (self.version, self.fingerprint):
            raise FunctionError(
                f"byod: this deployment runs {self.version} ({str(self.fingerprint)[:12]}), "
                f"not {expect.get('version')} ({str(expect.get('fingerprint'))[:12]}): the "
                "deploy did not take", deployment=self.name, function=path)
        if not isinstance(batchSize, int) or isinstance(batchSize, bool) or batchSize < 1:
            raise FunctionError(f"byod runSteps: batchSize must be a positive integer, got "
                                f"{batchSize!r}", deployment=self.name, function=path)
        touched = {"byodSteps"} | {known[s["stepId"]].table for s in steps
                                   if isinstance(s, dict) and s.get("stepId") in known}
        saved = {t: copy.deepcopy(self.tables[t]) for t in touched if t in self.tables}
        try:
            return {"results": self._run_steps(known, steps, cursor, batchSize, path)}
        except Exception:
            self.tables.update(saved)  # the transaction rolls back
            raise

    def _run_steps(self, known: dict[str, DataStep], steps: list[Any], cursor: str | None,
                   size: int, path: str) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        left = size
        for position, args in enumerate(steps):
            step = known.get(str(args.get("stepId"))) if isinstance(args, dict) else None
            if step is None:
                raise FunctionError(f"byod runSteps: this bundle has no data step "
                                    f"{json.dumps((args or {}).get('stepId'))}",
                                    deployment=self.name, function=path)
            if position == 0:  # a page, as the step's own mutation runs it
                result = self._data_step_page(step, path, {"cursor": cursor, "batchSize": size})
            else:
                take = min(left, int(args["limit"]))
                if take < 1 or len(self._table(step.table)) > take:
                    break  # the next call pages this step
                result = self._apply_page(step, path, None, take, False)
                result = {**result, "continueCursor": "", "isDone": True}
            left -= result["processed"]
            total = int(args["processed"]) + result["processed"]
            done = bool(result["isDone"])
            self.record_step(str(args["stepId"]), str(args["version"]),
                             "completed" if done else "running", total,
                             None if done else result["continueCursor"])
            results.append({**result, "stepId": args["stepId"], "total": total})
            if not done:
                break
        return results

    # -- the bundle's functions (byod:*) -----------------------------------------------------
    def _fn_byod_verify(self, **args: Any) -> dict[str, Any]:
        """``byod:verify``: the bundle's identity and every table's document count, at most
        a budget of documents / bytes per call, ``next`` where the next call resumes."""

        unknown = set(args) - {"from", "budget"}
        if unknown:
            raise FunctionError(f"ArgumentValidationError: unexpected {sorted(unknown)}",
                                deployment=self.name, function="byod:verify")
        docs_left = VERIFY_DOCS
        if args.get("budget") is not None:
            docs_left = min(self._page_size(args["budget"]), VERIFY_DOCS)
        bytes_left = VERIFY_BYTES
        names = self._table_names()
        counts: dict[str, int] = {}
        next_: dict[str, Any] | None = None
        start = 0
        resume = args.get("from")
        if resume is not None:
            table = str(resume.get("table"))
            if table not in names:
                raise FunctionError(
                    f"byod: unknown table {table!r}; this bundle (version {self.version}) "
                    f"has: {', '.join(names)}", deployment=self.name, function="byod:verify")
            page = self._paginate(list(self._table(table).values()), resume.get("cursor"),
                                  docs_left)
            counts[table] = len(page["page"])
            docs_left -= len(page["page"])
            bytes_left -= sum(_size(d) for d in page["page"])
            if not page["isDone"]:
                next_ = {"table": table, "cursor": page["continueCursor"]}
            start = names.index(table) + 1
        for table in names[start:] if next_ is None else ():
            count, whole = 0, True
            for doc in self.tables.get(table, {}).values():
                if count >= docs_left or bytes_left <= 0:
                    whole = False
                    break
                count += 1
                bytes_left -= _size(doc)
            if not whole:
                next_ = {"table": table, "cursor": None}
                break
            counts[table] = count
            docs_left -= count
        return {"version": self.version, "fingerprint": self.fingerprint, "kind": self.kind,
                "counts": counts, "next": next_}

    def _fn_byod_version(self) -> dict[str, Any]:
        versions = self.tables.get("byodVersions") or {}
        recorded = list(versions.values())[-1] if versions else None
        return {"version": self.version, "fingerprint": self.fingerprint, "kind": self.kind,
                "convexVersion": self.convex_version, "recorded": recorded}

    def _fn_byod_ping(self) -> dict[str, Any]:
        return {"ok": True, "version": self.version}

    def _fn_byod_recordVersion(self, version: str, fingerprint: str, kind: str,
                               planId: str | None = None) -> str:
        return self.record_version(version, fingerprint, kind, planId)

    def _fn_byod_recordStep(self, stepId: str, version: str, status: str, processed: int,
                            cursor: str | None = _MISSING) -> str:
        return self.record_step(stepId, version, status, processed, cursor)

    def _fn_byod_appliedSteps(self) -> list[dict[str, Any]]:
        return list(self.tables.get("byodSteps", {}).values())

    def _fn_byod_exportPage(self, table: str, cursor: str | None,
                            numItems: int) -> dict[str, Any]:
        docs = list(self._table(table).values())
        return self._paginate(docs, cursor, self._page_size(numItems))

    def _fn_byod_countPage(self, table: str, cursor: str | None,
                           numItems: int) -> dict[str, Any]:
        res = self._fn_byod_exportPage(table, cursor, numItems)
        return {"count": len(res["page"]), "continueCursor": res["continueCursor"],
                "isDone": res["isDone"]}

    def _fn_byod_deletePage(self, table: str, numItems: int) -> dict[str, Any]:
        rows = self._table(table)
        batch = list(rows)[:self._page_size(numItems)]
        for doc_id in batch:
            del rows[doc_id]
        return {"deleted": len(batch), "isDone": not rows}

    def _fn_byod_importPage(self, table: str, documents: list[Any]) -> list[str]:
        self._table(table)
        return [self._insert(table, d, validate=True) for d in documents]

    # -- the main deployment's functions (byodMain:*) ----------------------------------------
    def _fn_byodMain_exportOwnedPage(self, table: str, index: str, field: str, value: str,
                                     cursor: str | None, numItems: int) -> dict[str, Any]:
        if not index:
            raise FunctionError("no index given", deployment=self.name)
        docs = [d for d in self._table(table).values() if d.get(field) == value]
        return self._paginate(docs, cursor, self._page_size(numItems))

    def _fn_byodMain_importPageOnce(self, table: str, documents: list[Any], receipt: str,
                                    run: str) -> list[str]:
        self._table(table)
        if receipt in self.receipts:
            return list(self.receipts[receipt]["ids"])
        ids = [self._insert(table, d, validate=True) for d in documents]
        self.receipts[receipt] = {"run": run, "table": table, "ids": ids}
        return ids

    def _fn_byodMain_patchPage(self, table: str, patches: list[Any]) -> int:
        rows = self._table(table)
        for p in patches:
            rows[p["id"]].update(p["fields"])
        return len(patches)

    def _fn_byodMain_getByIds(self, table: str, ids: list[str]) -> list[Any]:
        if not ids and table in ENGINE_TABLE_NAMES:  # declared by every bundle, maybe empty
            return []
        rows = self._table(table)
        return [rows.get(i) for i in ids]

    def _fn_byodMain_clearReceipts(self, run: str, numItems: int) -> dict[str, Any]:
        mine = [k for k, r in self.receipts.items() if r["run"] == run][:numItems]
        for k in mine:
            del self.receipts[k]
        return {"deleted": len(mine),
                "isDone": not any(r["run"] == run for r in self.receipts.values())}


def _size(doc: dict[str, Any]) -> int:
    """A document's size, near enough to Convex's ``getDocumentSize`` for a read budget."""

    return len(json.dumps(doc, default=str))
