"""``RolloutStore`` for SQLite and PostgreSQL: a rollout's header in ``rollouts``, one row
per deployment in ``rollout_deployments``, the summary per status in ``rollout_counts``.

Why rows: a rollout saves progress after every deployment. Rewriting one document that
holds every deployment made that save grow with the fleet (quadratic over a rollout);
writing the deployment's row and its summary count in one transaction costs the same at
100 deployments and at 100k. The header (target, waves, budget, options, status) is
written only when it changes: when a run starts and when it ends.

A header's waves keep their names and sizes; their members are the rollout's rows in
``position`` order, cut by those sizes. ``load_rollout`` puts the document back together
in the shape every earlier engine saved (``deployments``: user id → row; each wave's
``deployments``), so its readers are unchanged.

Records written before rows were kept apart (``rollouts.layout = 'document'``, the rows
inside ``data``) are read as they are; the first header or row saved for one moves its
rows out, in the same transaction.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from engine.errors import RegistryError
from engine.ports.registry import RolloutRow
from engine.registry.sql_core import SqlCore

__all__ = ["SqlRollouts", "split_rollout"]

_ROW_COLUMNS = ("user_id", "status")  # held in columns, not in a row's data
_ROWS, _DOCUMENT = "rows", "document"


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, default=str, sort_keys=True)


def split_rollout(doc: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, dict]]]:
    """A whole rollout document as its header (each wave's member list replaced by its
    ``size``) and its rows in rollout order: (user id, status, data). The order is the
    waves' order; a deployment no wave names comes after them (in no wave)."""

    deployments = doc.get("deployments")
    if not isinstance(deployments, dict):
        raise RegistryError("a rollout document's deployments must be a JSON object")
    header = {k: v for k, v in doc.items() if k != "deployments"}
    order: list[str] = []
    placed: set[str] = set()
    waves = []
    for wave in doc.get("waves") or []:
        if not isinstance(wave, dict):
            raise RegistryError("a rollout document's waves must be JSON objects")
        members = [str(u) for u in wave.get("deployments") or [] if str(u) in deployments]
        members = [u for u in dict.fromkeys(members) if u not in placed]
        placed.update(members)
        order += members
        compact = {k: v for k, v in wave.items() if k not in ("deployments", "size")}
        waves.append({**compact, "size": len(members)})
    if "waves" in doc:
        header["waves"] = waves
    order += [str(u) for u in deployments if str(u) not in placed]
    rows = []
    for uid in order:
        row = deployments.get(uid)
        row = row if isinstance(row, dict) else {}
        rows.append((uid, str(row.get("status", "pending")),
                     {k: v for k, v in row.items() if k not in _ROW_COLUMNS}))
    return header, rows


def _compact_waves(header: dict[str, Any]) -> dict[str, Any]:
    """A header whose waves name their members keeps only their sizes (the rows hold the
    members, in order)."""

    waves = header.get("waves")
    if not isinstance(waves, list):
        return header
    out = []
    for wave in waves:
        if isinstance(wave, dict) and isinstance(wave.get("deployments"), list):
            wave = {**{k: v for k, v in wave.items() if k != "deployments"},
                    "size": len(wave["deployments"])}
        out.append(wave)
    return {**header, "waves": out}


def _assemble(header: dict[str, Any], rows: list[RolloutRow],
              touched: float | None) -> dict[str, Any]:
    """The whole document from a header and its rows (in order)."""

    doc = dict(header)
    doc["deployments"] = {r.user_id: r.to_dict() for r in rows}
    if isinstance(header.get("waves"), list):
        waves, start = [], 0
        for wave in header["waves"]:
            if not isinstance(wave, dict):
                waves.append(wave)
                continue
            size = int(wave.get("size") or 0)
            members = [r.user_id for r in rows[start:start + size]]
            start += size
            waves.append({**{k: v for k, v in wave.items() if k != "size"},
                          "deployments": members})
        doc["waves"] = waves
    if touched is not None and touched > float(doc.get("updated_at") or 0.0):
        doc["updated_at"] = touched
    return doc


def _row(rollout_id: str, r: Any) -> RolloutRow:
    return RolloutRow(rollout_id=rollout_id, user_id=r["user_id"], position=r["position"],
                      status=r["status"], data=json.loads(r["data"]),
                      updated_at=r["updated_at"])


def _rows_of_document(rollout_id: str, doc: dict[str, Any],
                      updated_at: float) -> list[RolloutRow]:
    _, rows = split_rollout(doc)
    return [RolloutRow(rollout_id, uid, i, status, data, updated_at)
            for i, (uid, status, data) in enumerate(rows)]


def _wave_of_position(header: dict[str, Any], n: int) -> list[int]:
    """Each row's wave index (the ``wave`` column worker claims are ordered by), from the
    header's wave sizes in row order; rows no wave holds take the last index after them."""

    out: list[int] = []
    waves = header.get("waves") if isinstance(header.get("waves"), list) else []
    for index, wave in enumerate(waves or []):
        size = int(wave.get("size") or 0) if isinstance(wave, dict) else 0
        out += [index] * size
    return (out + [len(waves or [])] * n)[:n]


def _counts(rows: Iterable[tuple[str, str, dict]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, status, _ in rows:
        out[status] = out.get(status, 0) + 1
    return out


class SqlRollouts(SqlCore):
    """``RolloutStore``: a header per rollout, a row per deployment, counts per status."""

    # -- writes ----------------------------------------------------------------------------
    def save_rollout(self, rollout_id: str, data: dict[str, Any]) -> None:
        """The whole record at once (a new rollout, or a document edited by hand): its
        header, and its rows replacing the ones stored. O(rows): the runner calls it once,
        when a rollout is created."""

        with self._write() as conn:
            if isinstance(data.get("deployments"), dict):
                header, rows = split_rollout(data)
                self._put_header(conn, rollout_id, header, _ROWS)
                self._put_rows(conn, rollout_id, rows, header)
            else:
                self._put_header(conn, rollout_id, data, _DOCUMENT)
                self._drop_rows(conn, rollout_id)

    def save_rollout_header(self, rollout_id: str, header: dict[str, Any]) -> None:
        """The header alone (status, options, waves' sizes, ...); the rows and counts stay.
        An older record's rows move out of its document first."""

        if "deployments" in header:
            raise RegistryError(f"rollout {rollout_id}: a header has no deployments; save "
                                "the whole record with save_rollout")
        with self._write() as conn:
            self._rows_apart(conn, rollout_id)
            self._put_header(conn, rollout_id, _compact_waves(header), _ROWS)

    def save_deployment_row(self, rollout_id: str, user_id: str, status: str,
                            data: dict[str, Any]) -> None:
        """One deployment's row and the summary count of its status, in one transaction:
        a primary-key update plus two small count rows, whatever the rollout's size."""

        body = _dumps({k: v for k, v in data.items() if k not in _ROW_COLUMNS})
        status = str(status)
        with self._write() as conn:
            now = self._clock()
            old = self._status_of(conn, rollout_id, user_id)
            if old is None:
                self._rows_apart(conn, rollout_id, missing_is_error=True)
                old = self._status_of(conn, rollout_id, user_id)
            if old is None:
                conn.execute(
                    "INSERT INTO rollout_deployments (rollout_id, user_id, position, status, "
                    "data, updated_at) VALUES (?, ?, (SELECT coalesce(max(position), -1) + 1 "
                    "FROM rollout_deployments WHERE rollout_id = ?), ?, ?, ?)",
                    (rollout_id, user_id, rollout_id, status, body, now))
            else:
                conn.execute("UPDATE rollout_deployments SET status = ?, data = ?, "
                             "updated_at = ? WHERE rollout_id = ? AND user_id = ?",
                             (status, body, now, rollout_id, user_id))
            moves = {status: 0 if old == status else 1}
            if old is not None and old != status:
                moves[old] = -1
            # count rows are locked in one order (by status) by every writer: two writers
            # moving rows between the same two statuses in opposite directions would
            # otherwise each hold the count the other waits for (PostgreSQL: a deadlock)
            for moved in sorted(moves):
                self._count(conn, rollout_id, moved, moves[moved], now)

    # -- reads -----------------------------------------------------------------------------
    def load_rollout(self, rollout_id: str) -> dict[str, Any] | None:
        """The whole record (every row: O(rows)); the readers that need one row or a page
        use ``rollout_row`` / ``rollout_rows``."""

        found = self._header(rollout_id)
        if found is None:
            return None
        doc, layout, _ = found
        if layout != _ROWS or not isinstance(doc, dict):
            return doc
        return _assemble(doc, self.rollout_rows(rollout_id), self._touched(rollout_id))

    def rollout_rows(self, rollout_id: str, *, statuses: Iterable[str] | None = None,
                     after: int = -1, limit: int | None = None) -> list[RolloutRow]:
        """Rows in rollout order after position ``after``, only the given ``statuses`` if
        any, at most ``limit``: one page through an index, however large the rollout."""

        wanted = None if statuses is None else [str(s) for s in statuses]
        if wanted == []:
            return []
        header = self._header(rollout_id)
        if header is None:
            return []
        doc, layout, updated_at = header
        if layout != _ROWS:
            if not (isinstance(doc, dict) and isinstance(doc.get("deployments"), dict)):
                return []
            rows = [r for r in _rows_of_document(rollout_id, doc, updated_at)
                    if r.position > after and (wanted is None or r.status in wanted)]
            return rows if limit is None else rows[:max(0, limit)]
        sql = ("SELECT user_id, position, status, data, updated_at FROM rollout_deployments "
               "WHERE rollout_id = ? AND position > ?")
        page = "" if limit is None else f" LIMIT {max(0, int(limit))}"
        if wanted is None:
            found = self._read(f"{sql} ORDER BY position{page}", (rollout_id, after))
        else:
            # one indexed read per status (rollout, status, position), merged in order: a
            # rare status is found without walking the rollout's other rows
            found = sorted((r for status in dict.fromkeys(wanted) for r in self._read(
                f"{sql} AND status = ? ORDER BY position{page}", (rollout_id, after, status))),
                key=lambda r: r["position"])
            found = found if limit is None else found[:max(0, limit)]
        return [_row(rollout_id, r) for r in found]

    def rollout_row(self, rollout_id: str, user_id: str) -> RolloutRow | None:
        """One deployment's row (a primary-key read), or None."""

        rows = self._read("SELECT user_id, position, status, data, updated_at FROM "
                          "rollout_deployments WHERE rollout_id = ? AND user_id = ?",
                          (rollout_id, user_id))
        if rows:
            return _row(rollout_id, rows[0])
        found = self._header(rollout_id)
        if found is None or found[1] == _ROWS or not isinstance(found[0], dict) \
                or not isinstance(found[0].get("deployments"), dict):
            return None
        return next((r for r in _rows_of_document(rollout_id, found[0], found[2])
                     if r.user_id == user_id), None)

    def rollout_counts(self, rollout_id: str) -> dict[str, int]:
        """Rows per status (statuses with none left out), from the summary, not the rows."""

        rows = self._read("SELECT status, n FROM rollout_counts WHERE rollout_id = ? "
                          "AND n > 0 ORDER BY status", (rollout_id,))
        if rows:
            return {r["status"]: r["n"] for r in rows}
        found = self._header(rollout_id)
        if found is None or found[1] == _ROWS or not isinstance(found[0], dict) \
                or not isinstance(found[0].get("deployments"), dict):
            return {}
        return dict(sorted(_counts(split_rollout(found[0])[1]).items()))

    def list_rollouts(self, limit: int = 20) -> list[dict[str, Any]]:
        """Headers, most recently active first, without their rows: a record that has
        deployments carries ``counts`` (per status) instead, and its waves their sizes."""

        # the later of the header's time and its last outcome's (CASE: SQLite has no
        # GREATEST, and its two-argument max() is not PostgreSQL's)
        rows = self._read(
            "SELECT rollout_id, data, layout, CASE WHEN last > updated_at THEN last ELSE "
            "updated_at END AS touched FROM (SELECT r.rollout_id, r.data, r.layout, "
            "r.updated_at, r.created_at, (SELECT coalesce(max(c.updated_at), 0) FROM "
            "rollout_counts c WHERE c.rollout_id = r.rollout_id) AS last FROM rollouts r) h "
            "ORDER BY touched DESC, created_at DESC, rollout_id DESC LIMIT ?", (limit,))
        out = []
        for r in rows:
            doc = json.loads(r["data"])
            if not isinstance(doc, dict):
                out.append(doc)
                continue
            doc.setdefault("rollout_id", r["rollout_id"])
            if r["layout"] == _ROWS:
                doc["counts"] = self.rollout_counts(r["rollout_id"])
                if r["touched"] > float(doc.get("updated_at") or 0.0):
                    doc["updated_at"] = r["touched"]
            elif isinstance(doc.get("deployments"), dict):
                header, split = split_rollout(doc)
                doc = {**header, "counts": dict(sorted(_counts(split).items()))}
            out.append(doc)
        return out

    def rollout_problems(self) -> list[str]:
        """What ``verify`` reports about rollouts: summary counts that disagree with the
        rows, and rows of a rollout with no record (or a record that keeps its rows in its
        document)."""

        counted = {(r["rollout_id"], r["status"]): r["n"] for r in self._read(
            "SELECT rollout_id, status, n FROM rollout_counts WHERE n != 0")}
        actual = {(r["rollout_id"], r["status"]): r["n"] for r in self._read(
            "SELECT rollout_id, status, count(*) AS n FROM rollout_deployments "
            "GROUP BY rollout_id, status")}
        problems = [f"rollout {rid}: its summary counts {counted.get((rid, status), 0)} "
                    f"{status} deployment(s), its rows {actual.get((rid, status), 0)}"
                    for rid, status in sorted(set(counted) | set(actual))
                    if counted.get((rid, status), 0) != actual.get((rid, status), 0)]
        for r in self._read(
                "SELECT d.rollout_id AS rid, count(*) AS n FROM rollout_deployments d "
                "LEFT JOIN rollouts r ON r.rollout_id = d.rollout_id "
                "WHERE r.rollout_id IS NULL OR r.layout != 'rows' GROUP BY d.rollout_id"):
            problems.append(f"rollout {r['rid']}: {r['n']} deployment row(s) without a "
                            "rollout record that keeps its rows apart")
        return problems

    # -- inside a write transaction ----------------------------------------------------------
    def _header(self, rollout_id: str) -> tuple[Any, str, float] | None:
        rows = self._read("SELECT data, layout, updated_at FROM rollouts WHERE rollout_id = ?",
                          (rollout_id,))
        if not rows:
            return None
        return json.loads(rows[0]["data"]), rows[0]["layout"], rows[0]["updated_at"]

    def _touched(self, rollout_id: str) -> float | None:
        rows = self._read("SELECT max(updated_at) AS t FROM rollout_counts WHERE rollout_id = ?",
                          (rollout_id,))
        return rows[0]["t"] if rows else None

    def _status_of(self, conn: Any, rollout_id: str, user_id: str) -> str | None:
        """A row's status, locked until the write ends: the counts move from it."""

        row = conn.execute("SELECT status FROM rollout_deployments WHERE rollout_id = ? AND "
                           f"user_id = ? {self._for_update}", (rollout_id, user_id)).fetchone()
        return None if row is None else str(row["status"])

    @staticmethod
    def _count(conn: Any, rollout_id: str, status: str, delta: int,
               now: float) -> None:
        conn.execute("INSERT INTO rollout_counts (rollout_id, status, n, updated_at) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT (rollout_id, status) DO UPDATE SET "
                     "n = rollout_counts.n + excluded.n, updated_at = excluded.updated_at",
                     (rollout_id, status, delta, now))

    def _put_header(self, conn: Any, rollout_id: str, header: dict[str, Any],
                    layout: str) -> None:
        now = self._clock()
        conn.execute(
            "INSERT INTO rollouts (rollout_id, data, created_at, updated_at, layout) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (rollout_id) DO UPDATE SET "
            "data = excluded.data, updated_at = excluded.updated_at, layout = excluded.layout",
            (rollout_id, _dumps(header), now, now, layout))

    @staticmethod
    def _drop_rows(conn: Any, rollout_id: str) -> None:
        conn.execute("DELETE FROM rollout_deployments WHERE rollout_id = ?", (rollout_id,))
        conn.execute("DELETE FROM rollout_counts WHERE rollout_id = ?", (rollout_id,))

    def _put_rows(self, conn: Any, rollout_id: str, rows: list[tuple[str, str, dict]],
                  header: dict[str, Any] | None = None) -> None:
        now = self._clock()
        self._drop_rows(conn, rollout_id)
        waves = _wave_of_position(header or {}, len(rows))
        conn.executemany(
            "INSERT INTO rollout_deployments (rollout_id, user_id, position, status, data, "
            "updated_at, wave) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((rollout_id, uid, i, status, _dumps(data), now, waves[i])
             for i, (uid, status, data) in enumerate(rows)))
        # a count's updated_at is the last outcome saved (0: none yet); the whole record's
        # time is its header's
        conn.executemany(
            "INSERT INTO rollout_counts (rollout_id, status, n, updated_at) VALUES (?,?,?,0)",
            ((rollout_id, status, n) for status, n in _counts(rows).items()))

    def _rows_apart(self, conn: Any, rollout_id: str, *,
                    missing_is_error: bool = False) -> None:
        """Move an older record's rows out of its document (once); nothing for a record
        that already keeps them apart. ``missing_is_error``: no record is an error."""

        # locked: a new row's position, and a move of the rows, follow from the header
        row = conn.execute(f"SELECT data, layout FROM rollouts WHERE rollout_id = ? "
                           f"{self._for_update}", (rollout_id,)).fetchone()
        if row is None:
            if missing_is_error:
                raise RegistryError(f"no rollout {rollout_id!r} in the registry to record a "
                                    "deployment in; save the rollout first")
            return
        if row["layout"] == _ROWS:
            return
        doc = json.loads(row["data"])
        if isinstance(doc, dict) and isinstance(doc.get("deployments"), dict):
            header, rows = split_rollout(doc)
        else:
            header, rows = (doc if isinstance(doc, dict) else {}), []
        self._put_header(conn, rollout_id, header, _ROWS)
        self._put_rows(conn, rollout_id, rows, header)
