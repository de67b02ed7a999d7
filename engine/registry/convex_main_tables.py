"""``RegistryTables`` for the registry on the main Convex deployment: what ``byod registry
copy --to convex:main`` (and back) moves and verifies.

Each registry table of ``engine.registry.tables`` has a ``byodReg*`` table on main whose
fields are its columns in camelCase (``audit.id`` is ``seq``). Rows are read in key order
through an index (``byodRegistry:dumpPage``: the rows after a composite key, one indexed
page per call) and written a page per transaction (``byodRegistry:loadRows``), so a
registry of any size moves within Convex's per-transaction limits. Two tables differ in
shape and are converted here: a rollout's rows belong to its record's live generation
(``engine.registry.convex_main_rollouts``), and a copy's progress document is stored in
parts of at most half a MiB (a Convex document holds at most 1 MiB).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from engine.errors import RegistryError
from engine.registry.tables import TABLE_NAMES, Key, Table, table

__all__ = ["ConvexTables", "camel"]

_CONVEX: dict[str, tuple[str, str]] = {  # registry table -> (table on main, key index)
    "users": ("byodRegUsers", "by_user"),
    "journal": ("byodRegJournal", "by_step"),
    "leases": ("byodRegLeases", "by_deployment"),
    "audit": ("byodRegAudit", "by_seq"),
    "rollouts": ("byodRegRollouts", "by_rollout"),
    "rollout_deployments": ("byodRegRolloutRows", "by_user"),
    "rollout_counts": ("byodRegRolloutCounts", "by_status"),
    "progress": ("byodRegProgress", "by_key"),
    "alerts": ("byodRegAlerts", "by_key"),
    "api_tokens": ("byodRegApiTokens", "by_key"),
    "jobs": ("byodRegJobs", "by_key"),
}
_RENAMED = {("audit", "id"): "seq"}
# (table, JSON column): the documents the engine parses when it reads them
_JSON_COLUMNS = (("rollouts", "data"), ("progress", "doc"), ("audit", "detail"),
                 ("alerts", "payload"), ("rollout_deployments", "data"))
_PART = 512 * 1024
_LOAD_BYTES = 4 * 1024 * 1024


def camel(column: str) -> str:
    """``pid_namespace`` → ``pidNamespace``."""

    head, *rest = column.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _field(spec: Table, column: str) -> str:
    return _RENAMED.get((spec.name, column), camel(column))


def _to_convex(spec: Table, row: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for column, kind in spec.columns:
        value = row.get(column)
        if value is not None:
            if kind in ("int", "real"):
                value = float(value)
            elif kind == "bool":
                value = bool(value)
            else:
                value = str(value)
        doc[_field(spec, column)] = value
    return doc


def _to_portable(spec: Table, doc: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, kind in spec.columns:
        value = doc.get(_field(spec, column))
        if value is not None:
            if kind in ("int", "bool"):
                value = int(value)
            elif kind == "real":
                value = float(value)
        row[column] = value
    return row


def _spec(name: str) -> Table:
    try:
        return table(name)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None


class ConvexTables:
    """``RegistryTables`` over ``byodRegistry:dumpPage`` / ``loadRows`` / ``countRows`` /
    ``clearRows`` (see the module docstring)."""

    if TYPE_CHECKING:
        _page: int

        def _query(self, name: str, **args: Any) -> Any: ...

        def _mutation(self, name: str, **args: Any) -> Any: ...

    def table_names(self) -> tuple[str, ...]:
        return TABLE_NAMES

    def table_key(self, table_name: str) -> tuple[str, ...]:
        return _spec(table_name).key

    def _dump(self, convex: str, index: str, key: Sequence[str], after: Sequence[Any] | None,
              limit: int, eq: Sequence[tuple[str, Any]] = ()) -> list[dict[str, Any]]:
        return list(self._query("dumpPage", table=convex, index=index,
                                eq=[[f, v] for f, v in eq], key=list(key),
                                after=None if after is None else list(after),
                                limit=min(limit, 1000)))

    def dump_rows(self, table_name: str, *, after: Key | None,
                  limit: int) -> list[dict[str, Any]]:
        spec = _spec(table_name)
        if limit <= 0:
            return []
        if table_name == "rollout_deployments":
            return self._dump_rollout_rows(spec, after, limit)
        if table_name == "progress":
            return self._dump_progress(spec, after, limit)
        convex, index = _CONVEX[table_name]
        key = [_field(spec, c) for c in spec.key]
        out: list[dict[str, Any]] = []
        cursor = None if after is None else list(after)
        while len(out) < limit:
            page = self._dump(convex, index, key, cursor, limit - len(out))
            out += [_to_portable(spec, d) for d in page]
            if len(page) < min(limit - len(out) + len(page), 1000) or not page:
                break
            cursor = [page[-1][k] for k in key]
        return out

    def _headers_from(self, rollout_id: str | None) -> Iterator[dict[str, Any]]:
        """Rollout records in key order, from ``rollout_id`` (included) on."""

        if rollout_id is not None:
            first = self._query("rolloutHeader", rolloutId=rollout_id)
            if first is not None:
                yield first
        cursor = None if rollout_id is None else [rollout_id]
        while True:
            page = self._dump("byodRegRollouts", "by_rollout", ["rolloutId"], cursor, 100)
            yield from page
            if len(page) < 100:
                return
            cursor = [page[-1]["rolloutId"]]

    def _dump_rollout_rows(self, spec: Table, after: Key | None,
                           limit: int) -> list[dict[str, Any]]:
        """The live generation's rows of each record, records in key order."""

        out: list[dict[str, Any]] = []
        start_rid = None if after is None else str(after[0])
        for header in self._headers_from(start_rid):
            rid, gen = header["rolloutId"], header["gen"]
            cursor = [after[1]] if after is not None and rid == start_rid else None
            while len(out) < limit:
                page = self._dump("byodRegRolloutRows", "by_user", ["userId"], cursor,
                                  limit - len(out), eq=(("rolloutId", rid), ("gen", gen)))
                out += [_to_portable(spec, d) for d in page]
                if len(page) < min(limit - len(out) + len(page), 1000) or not page:
                    break
                cursor = [page[-1]["userId"]]
            if len(out) >= limit:
                break
        return out

    def _dump_progress(self, spec: Table, after: Key | None,
                       limit: int) -> list[dict[str, Any]]:
        """Whole documents (their parts joined), in (kind, user) order."""

        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        key = ["kind", "userId", "part"]
        cursor = None if after is None else [after[0], after[1], 1e18]
        while len(groups) <= limit:
            page = self._dump("byodRegProgress", "by_key", key, cursor, self._page)
            for d in page:
                groups.setdefault((d["kind"], d["userId"]), []).append(d)
            if len(page) < self._page:
                break
            cursor = [page[-1][k] for k in key]
        out = []
        for (kind, user_id), parts in list(groups.items())[:limit]:
            out.append({"kind": kind, "user_id": user_id,
                        "doc": "".join(p["text"] for p in parts),
                        "updated_at": float(parts[-1]["updatedAt"])})
        return out

    def load_rows(self, table_name: str, rows: Sequence[dict[str, Any]]) -> None:
        spec = _spec(table_name)
        convex, _ = _CONVEX[table_name]
        docs: list[dict[str, Any]] = []
        if table_name == "progress":
            for row in rows:
                text = str(row["doc"])
                for part, start in enumerate(range(0, max(len(text), 1), _PART)):
                    docs.append({"kind": row["kind"], "userId": row["user_id"],
                                 "part": float(part), "text": text[start:start + _PART],
                                 "updatedAt": float(row["updated_at"])})
        elif table_name == "rollout_deployments":
            gens: dict[str, str] = {}
            for row in rows:
                rid = str(row["rollout_id"])
                if rid not in gens:
                    header = self._query("rolloutHeader", rolloutId=rid)
                    gens[rid] = header["gen"] if header is not None else "orphan"
                docs.append({**_to_convex(spec, row), "gen": gens[rid]})
        elif table_name == "rollouts":
            docs = [{**_to_convex(spec, row), "gen": uuid.uuid4().hex,
                     "touched": float(row["updated_at"])} for row in rows]
        else:
            docs = [_to_convex(spec, row) for row in rows]
        page: list[dict[str, Any]] = []
        size = 0
        for doc in docs:
            cost = sum(len(v) if isinstance(v, str) else 8 for v in doc.values()) + 64
            if page and (len(page) >= 1000 or size + cost > _LOAD_BYTES):
                self._mutation("loadRows", table=convex, docs=page)
                page, size = [], 0
            page.append(doc)
            size += cost
        if page:
            self._mutation("loadRows", table=convex, docs=page)

    def count(self, table_name: str) -> int:
        spec = _spec(table_name)
        if table_name in ("rollout_deployments", "progress"):
            n, after = 0, None
            while True:
                rows = self.dump_rows(table_name, after=after, limit=1000)
                n += len(rows)
                if len(rows) < 1000:
                    return n
                after = tuple(rows[-1][c] for c in spec.key)
        convex, _ = _CONVEX[table_name]
        n, cursor = 0, None
        while True:
            answer = self._query("countRows", table=convex, cursor=cursor, numItems=1000)
            n += int(answer["n"])
            if answer["isDone"]:
                return n
            cursor = answer["cursor"]

    def clear_rows(self, table_name: str) -> None:
        _spec(table_name)
        convex, _ = _CONVEX[table_name]
        while self._mutation("clearRows", table=convex, limit=self._page) >= self._page:
            pass

    def _all_rows(self, table_name: str) -> Iterator[dict[str, Any]]:
        spec = _spec(table_name)
        after: Key | None = None
        while True:
            rows = self.dump_rows(table_name, after=after, limit=1000)
            yield from rows
            if len(rows) < 1000:
                return
            after = tuple(rows[-1][c] for c in spec.key)

    def verify(self) -> list[str]:
        """Every defect found, one sentence each (empty = sound), as ``SqliteStore.verify``
        reports them: a stored JSON document the engine would fail to read, and rollout
        summary counts that disagree with the rows they count. Reads every row, a page per
        call."""

        problems: list[str] = []
        for name, column in _JSON_COLUMNS:
            spec = _spec(name)
            for row in self._all_rows(name):
                key = " ".join(str(row[c]) for c in spec.key)
                try:
                    doc = json.loads(row[column])
                except (TypeError, ValueError) as exc:
                    problems.append(f"{name} {key}: {column} is not JSON ({exc})")
                    continue
                if not isinstance(doc, dict):
                    problems.append(f"{name} {key}: {column} is not a JSON object")
        counted = {(r["rollout_id"], r["status"]): r["n"]
                   for r in self._all_rows("rollout_counts") if r["n"]}
        actual: dict[tuple[str, str], int] = {}
        for r in self._all_rows("rollout_deployments"):
            actual[(r["rollout_id"], r["status"])] = actual.get(
                (r["rollout_id"], r["status"]), 0) + 1
        problems += [f"rollout {rid}: its summary counts {counted.get((rid, status), 0)} "
                     f"{status} deployment(s), its rows {actual.get((rid, status), 0)}"
                     for rid, status in sorted(set(counted) | set(actual))
                     if counted.get((rid, status), 0) != actual.get((rid, status), 0)]
        return problems
