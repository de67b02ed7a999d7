"""``RolloutStore`` on the main Convex deployment: a header per rollout
(``byodRegRollouts``), a row per deployment (``byodRegRolloutRows``), a count per status
(``byodRegRolloutCounts``), as ``engine.registry.sql_rollouts`` keeps them in SQL.

Why generations: a rollout over 100k deployments cannot be written in one Convex
transaction (a transaction writes at most 16,000 documents), so ``save_rollout`` writes
its rows in pages under a new generation id that no reader follows yet, and one last
transaction switches the header (and its counts) to that generation. A crash mid-save
leaves the previous record whole; the rows of the replaced generation are deleted
afterwards, page by page; the next save of the rollout also deletes the rows of any
generation left behind by a crash (staged over an hour before, never switched to).
Saving one deployment's outcome stays one transaction (the row, its count and the
header's activity time), whatever the rollout's size, and every read of rows is one
indexed page (``after`` a position, at most ``PAGE`` rows).

Records written by an engine that kept the rows inside the document (``layout =
'document'``, e.g. copied from an old SQLite file) are read as they are; the first header
or row saved for one moves its rows out, as in SQL.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterable

from engine.errors import RegistryError
from engine.ports.registry import RolloutRow
from engine.registry.sql_rollouts import (
    _assemble,
    _compact_waves,
    _counts,
    _rows_of_document,
    split_rollout,
)

__all__ = ["ConvexRollouts"]

_ROW_COLUMNS = ("user_id", "status")
_ROWS, _DOCUMENT = "rows", "document"
STALE_S = 3600.0  # a generation not switched to within an hour of staging is a crashed save's
_PAGE_BYTES = 4 * 1024 * 1024  # per call: far inside Convex's 16 MiB of arguments and writes


def _dumps(doc: Any) -> str:
    return json.dumps(doc, default=str, sort_keys=True)


def _row(rollout_id: str, doc: dict[str, Any]) -> RolloutRow:
    return RolloutRow(rollout_id=rollout_id, user_id=doc["userId"],
                      position=int(doc["position"]), status=doc["status"],
                      data=json.loads(doc["data"]), updated_at=float(doc["updatedAt"]))


class ConvexRollouts:
    """``RolloutStore`` over ``byodRegistry:*`` (see the module docstring)."""

    if TYPE_CHECKING:
        _page: int
        _clock: Callable[[], float]

        def _query(self, name: str, **args: Any) -> Any: ...

        def _mutation(self, name: str, **args: Any) -> Any: ...

    # -- writes ----------------------------------------------------------------------------
    def save_rollout(self, rollout_id: str, data: dict[str, Any]) -> None:
        """The whole record: its rows staged page by page under a new generation, then the
        header and counts switched to it in one transaction (module docstring)."""

        if isinstance(data.get("deployments"), dict):
            header, rows = split_rollout(data)
            self._put(rollout_id, header, rows, _ROWS)
        else:
            self._put(rollout_id, data, [], _DOCUMENT)

    def save_rollout_header(self, rollout_id: str, header: dict[str, Any]) -> None:
        if "deployments" in header:
            raise RegistryError(f"rollout {rollout_id}: a header has no deployments; save "
                                "the whole record with save_rollout")
        text = _dumps(_compact_waves(header))
        for _ in range(2):
            if self._mutation("saveRolloutHeader", rolloutId=rollout_id, data=text,
                              gen=uuid.uuid4().hex, now=self._clock()):
                return
            self._rows_apart(rollout_id)
        raise RegistryError(f"rollout {rollout_id}: its record changed while its header "
                            "was saved; try again")

    def save_deployment_row(self, rollout_id: str, user_id: str, status: str,
                            data: dict[str, Any]) -> None:
        """One row and its count, in one transaction on main."""

        body = _dumps({k: v for k, v in data.items() if k not in _ROW_COLUMNS})
        for _ in range(2):
            answer = self._mutation("saveDeploymentRow", rolloutId=rollout_id,
                                    userId=user_id, status=str(status), data=body,
                                    now=self._clock())
            if answer == "saved":
                return
            if answer == "missing":
                raise RegistryError(f"no rollout {rollout_id!r} in the registry to record a "
                                    "deployment in; save the rollout first")
            self._rows_apart(rollout_id)
        raise RegistryError(f"rollout {rollout_id}: its record changed while a deployment "
                            "was saved; try again")

    def _put(self, rollout_id: str, header: dict[str, Any],
             rows: list[tuple[str, str, dict]], layout: str) -> None:
        gen = uuid.uuid4().hex
        now = self._clock()
        page: list[dict[str, Any]] = []
        size = 0
        for position, (uid, status, data) in enumerate(rows):
            body = _dumps(data)
            doc = {"userId": uid, "position": float(position), "status": status,
                   "data": body, "wave": 0.0}
            cost = len(body) + len(uid) + len(status) + 64
            if page and (len(page) >= self._page or size + cost > _PAGE_BYTES):
                self._mutation("putRolloutRows", rolloutId=rollout_id, gen=gen, rows=page,
                               now=now)
                page, size = [], 0
            page.append(doc)
            size += cost
        if page:
            self._mutation("putRolloutRows", rolloutId=rollout_id, gen=gen, rows=page, now=now)
        counts = [{"status": s, "n": float(n)} for s, n in _counts(rows).items()]
        replaced = self._mutation("switchRollout", rolloutId=rollout_id, gen=gen,
                                  data=_dumps(header), layout=layout, counts=counts, now=now)
        if replaced:
            self._drop_generation(rollout_id, replaced)
        self._drop_stale(rollout_id)

    def _drop_generation(self, rollout_id: str, gen: str) -> None:
        while self._mutation("dropRolloutRows", rolloutId=rollout_id, gen=gen,
                             limit=self._page) >= self._page:
            pass

    def _drop_stale(self, rollout_id: str) -> None:
        """Rows of generations the header does not name, staged over ``STALE_S`` ago: a
        crashed save's pages, or a replaced generation whose drop was cut short (a save
        still staging is newer and left alone)."""

        before = self._clock() - STALE_S
        while self._mutation("dropStaleRolloutRows", rolloutId=rollout_id, before=before,
                             limit=self._page) >= self._page:
            pass

    def _rows_apart(self, rollout_id: str) -> None:
        """Move a document-layout record's rows out of its document."""

        found = self._query("rolloutHeader", rolloutId=rollout_id)
        if found is None or found["layout"] == _ROWS:
            return
        doc = json.loads(found["data"])
        if isinstance(doc, dict) and isinstance(doc.get("deployments"), dict):
            header, rows = split_rollout(doc)
        else:
            header, rows = (doc if isinstance(doc, dict) else {}), []
        self._put(rollout_id, header, rows, _ROWS)

    # -- reads -----------------------------------------------------------------------------
    def _header(self, rollout_id: str) -> dict[str, Any] | None:
        found = self._query("rolloutHeader", rolloutId=rollout_id)
        if found is not None:
            found["doc"] = json.loads(found["data"])
        return found

    @staticmethod
    def _document_rows(rollout_id: str, found: dict[str, Any]) -> list[RolloutRow] | None:
        doc = found["doc"]
        if found["layout"] == _ROWS or not isinstance(doc, dict) \
                or not isinstance(doc.get("deployments"), dict):
            return None
        return _rows_of_document(rollout_id, doc, float(found["updatedAt"]))

    def load_rollout(self, rollout_id: str) -> dict[str, Any] | None:
        found = self._header(rollout_id)
        if found is None:
            return None
        doc = found["doc"]
        if found["layout"] != _ROWS or not isinstance(doc, dict):
            return doc
        rows = self._rows_of(rollout_id, found["gen"], None, -1, None)
        return _assemble(doc, rows, found.get("rowsTouched"))

    def rollout_rows(self, rollout_id: str, *, statuses: Iterable[str] | None = None,
                     after: int = -1, limit: int | None = None) -> list[RolloutRow]:
        wanted = None if statuses is None else list(dict.fromkeys(str(s) for s in statuses))
        if wanted == [] or (limit is not None and limit <= 0):
            return []
        found = self._header(rollout_id)
        if found is None:
            return []
        if found["layout"] != _ROWS:
            rows = [r for r in self._document_rows(rollout_id, found) or []
                    if r.position > after and (wanted is None or r.status in wanted)]
            return rows if limit is None else rows[:limit]
        if wanted is None:
            return self._rows_of(rollout_id, found["gen"], None, after, limit)
        merged = sorted((r for s in wanted
                         for r in self._rows_of(rollout_id, found["gen"], s, after, limit)),
                        key=lambda r: r.position)
        return merged if limit is None else merged[:limit]

    def _rows_of(self, rollout_id: str, gen: str, status: str | None, after: int,
                 limit: int | None) -> list[RolloutRow]:
        """Rows of one generation (one status, or all) after a position, page by page."""

        out: list[RolloutRow] = []
        cursor = float(after)
        while limit is None or len(out) < limit:
            want = self._page if limit is None else min(self._page, limit - len(out))
            page = self._query("rolloutRows", rolloutId=rollout_id, gen=gen, status=status,
                               after=cursor, limit=want)
            out += [_row(rollout_id, d) for d in page]
            if len(page) < want:
                break
            cursor = float(page[-1]["position"])
        return out

    def rollout_row(self, rollout_id: str, user_id: str) -> RolloutRow | None:
        doc = self._query("rolloutRow", rolloutId=rollout_id, userId=user_id)
        if doc is not None:
            return _row(rollout_id, doc)
        found = self._header(rollout_id)
        if found is None:
            return None
        return next((r for r in self._document_rows(rollout_id, found) or []
                     if r.user_id == user_id), None)

    def rollout_counts(self, rollout_id: str) -> dict[str, int]:
        counts = {c["status"]: int(c["n"])
                  for c in self._query("rolloutCounts", rolloutId=rollout_id) if c["n"] > 0}
        if counts:
            return dict(sorted(counts.items()))
        found = self._header(rollout_id)
        if found is None or found["layout"] == _ROWS:
            return {}
        doc = found["doc"]
        if not isinstance(doc, dict) or not isinstance(doc.get("deployments"), dict):
            return {}
        return dict(sorted(_counts(split_rollout(doc)[1]).items()))

    def list_rollouts(self, limit: int = 20) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        out: list[Any] = []
        for h in self._query("listRollouts", limit=min(limit, 1000)):
            doc = json.loads(h["data"])
            if not isinstance(doc, dict):
                out.append(doc)
                continue
            doc.setdefault("rollout_id", h["rolloutId"])
            if h["layout"] == _ROWS:
                doc["counts"] = dict(sorted((c["status"], int(c["n"])) for c in h["counts"]
                                            if c["n"] > 0))
                if float(h["touched"]) > float(doc.get("updated_at") or 0.0):
                    doc["updated_at"] = float(h["touched"])
            elif isinstance(doc.get("deployments"), dict):
                header, split = split_rollout(doc)
                doc = {**header, "counts": dict(sorted(_counts(split).items()))}
            out.append(doc)
        return out
