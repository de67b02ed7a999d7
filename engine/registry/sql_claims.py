"""``RolloutClaims`` for SQLite and PostgreSQL: the rows of a rollout that worker processes
(``byod worker``) claim, renew, finish and release.

Why the rules live in the database: any number of workers on any number of machines work
one rollout, and each decides nothing on its own. One claim transaction reads the rollout's
header (locked: ``_for_update``), so every claim sees the same answer to "is the rollout
open, which wave is open, how many rows are in flight"; the rows themselves are picked with
``_skip_locked`` so claimers never queue behind a row another transaction holds. Finishing a
row writes its outcome, its summary count and — in the same transaction, under the header's
lock — the failure budget, the canary rule and completion: a rollout halts once, globally,
the moment the failure that exceeds its budget is recorded, whichever worker recorded it.

A row's life: ``pending`` → claimed (``running``, ``claimed_by`` a worker, ``claim_expires``
a deadline renewed by that worker's heartbeat) → its outcome (``succeeded``, ``already``,
``failed``, ``skipped``). A claim whose deadline passed is claimable again (its worker died
or lost the registry): the next claimer takes it over and the old holder's renewal fails,
so it stops. Writes by a holder that lost the row are refused, never applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from engine.errors import RegistryError
from engine.registry.sql_core import SqlCore

__all__ = ["Claim", "FinishResult", "SqlClaims", "WORKERS_MODE"]

WORKERS_MODE = "workers"
_OPEN = "open"
_IN_FLIGHT = ("pending", "running")


@dataclass(frozen=True)
class Claim:
    """A row a worker now holds: which deployment, its wave, and whose expired claim it
    took over (None: the row was pending)."""

    user_id: str
    wave: int
    position: int
    data: dict[str, Any]
    taken_from: str | None = None


@dataclass(frozen=True)
class FinishResult:
    """What finishing a row did: ``written`` False when the holder no longer held it;
    ``status`` the rollout's status after it (``open``, ``completed``, ``halted``) and the
    reason when it halted."""

    written: bool
    status: str
    halted_reason: str | None = None


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, default=str, sort_keys=True)


class SqlClaims(SqlCore):
    """``RolloutClaims``: claims over ``rollout_deployments`` decided under the header."""

    def claim_rows(self, rollout_id: str, holder: str, *, limit: int,
                   ttl_s: float) -> list[Claim]:
        """Up to ``limit`` claimable rows for ``holder`` for ``ttl_s`` seconds: pending
        rows (or running ones whose claim expired) of the lowest wave that still has
        unfinished rows, while the rollout is open for workers and its global concurrency
        (rows with a live claim) leaves room. [] when none."""

        if limit <= 0:
            return []
        with self._write() as conn:
            header = self._locked_header(conn, rollout_id)
            if header is None or not _open_for_workers(header):
                return []
            now = self._clock()
            concurrency = int((header.get("options") or {}).get("concurrency") or 1)
            live = conn.execute(
                "SELECT count(*) AS n FROM rollout_deployments WHERE rollout_id = ? AND "
                "status = 'running' AND claim_expires > ?", (rollout_id, now)).fetchone()["n"]
            room = min(limit, concurrency - int(live))
            if room <= 0:
                return []
            wave = conn.execute(
                "SELECT min(wave) AS w FROM rollout_deployments WHERE rollout_id = ? AND "
                "status IN ('pending', 'running')", (rollout_id,)).fetchone()["w"]
            if wave is None:
                return []
            rows = conn.execute(
                "SELECT user_id, wave, position, status, data, claimed_by FROM "
                "rollout_deployments WHERE rollout_id = ? AND wave = ? AND (status = "
                "'pending' OR (status = 'running' AND (claim_expires IS NULL OR "
                f"claim_expires <= ?))) ORDER BY position LIMIT {int(room)} {self._skip_locked}",
                (rollout_id, wave, now)).fetchall()
            claims = []
            for r in rows:
                conn.execute(
                    "UPDATE rollout_deployments SET status = 'running', claimed_by = ?, "
                    "claim_expires = ?, updated_at = ? WHERE rollout_id = ? AND user_id = ?",
                    (holder, now + ttl_s, now, rollout_id, r["user_id"]))
                if r["status"] != "running":
                    self._recount(conn, rollout_id, r["status"], "running", now)
                claims.append(Claim(r["user_id"], int(r["wave"]), int(r["position"]),
                                    json.loads(r["data"]),
                                    r["claimed_by"] if r["status"] == "running" else None))
            return claims

    def renew_claims(self, rollout_id: str, holder: str, user_ids: Iterable[str], *,
                     ttl_s: float) -> set[str]:
        """Extend ``holder``'s claims on ``user_ids``; the ones it still holds (a row taken
        over by another worker, or finished, is not renewed and not returned)."""

        wanted = list(dict.fromkeys(user_ids))
        if not wanted:
            return set()
        held = set()
        with self._write() as conn:
            now = self._clock()
            for uid in wanted:
                cur = conn.execute(
                    "UPDATE rollout_deployments SET claim_expires = ? WHERE rollout_id = ? "
                    "AND user_id = ? AND claimed_by = ? AND status = 'running'",
                    (now + ttl_s, rollout_id, uid, holder))
                if cur.rowcount == 1:
                    held.add(uid)
        return held

    def finish_claim(self, rollout_id: str, holder: str, user_id: str, status: str,
                     data: dict[str, Any]) -> FinishResult:
        """Record a claimed row's outcome (its row and summary count) only while
        ``holder`` still holds it, and decide in the same transaction what the outcome
        means for the whole rollout: a canary failure, or one failure more than the
        budget, halts it (with the reason in the header); no unfinished row left
        completes it."""

        body = _dumps({k: v for k, v in data.items() if k not in ("user_id", "status")})
        with self._write() as conn:
            header = self._locked_header(conn, rollout_id)
            if header is None:
                raise RegistryError(f"no rollout {rollout_id!r} in the registry")
            row = conn.execute(
                "SELECT status, wave, claimed_by FROM rollout_deployments WHERE rollout_id = ? "
                f"AND user_id = ? {self._for_update}", (rollout_id, user_id)).fetchone()
            state = str(header.get("status") or "")
            if row is None or row["claimed_by"] != holder or row["status"] != "running":
                return FinishResult(False, state, header.get("halted_reason"))
            now = self._clock()
            conn.execute(
                "UPDATE rollout_deployments SET status = ?, data = ?, claimed_by = NULL, "
                "claim_expires = NULL, updated_at = ? WHERE rollout_id = ? AND user_id = ?",
                (status, body, now, rollout_id, user_id))
            self._recount(conn, rollout_id, "running", status, now)
            reason = None
            if status == "failed" and state == _OPEN:
                reason = self._budget_spent(conn, header, rollout_id, user_id,
                                            int(row["wave"]))
            if reason is not None:
                header.update(status="halted", halted_reason=reason, updated_at=now)
                self._put_locked_header(conn, rollout_id, header, now)
            elif state == _OPEN and conn.execute(
                    "SELECT count(*) AS n FROM rollout_deployments WHERE rollout_id = ? AND "
                    "status IN ('pending', 'running')", (rollout_id,)).fetchone()["n"] == 0:
                header.update(status="completed", halted_reason=None, updated_at=now)
                self._put_locked_header(conn, rollout_id, header, now)
            return FinishResult(True, str(header.get("status")), header.get("halted_reason"))

    def release_claims(self, rollout_id: str, holder: str,
                       user_ids: Iterable[str] | None = None) -> int:
        """Give ``holder``'s claims back (all of them, or those on ``user_ids``): the rows
        are pending again, claimable at once by any worker. How many were released."""

        with self._write() as conn:
            now = self._clock()
            rows = conn.execute(
                "SELECT user_id FROM rollout_deployments WHERE rollout_id = ? AND "
                f"claimed_by = ? AND status = 'running' {self._for_update}",
                (rollout_id, holder)).fetchall()
            only = None if user_ids is None else set(user_ids)
            released = 0
            for r in rows:
                if only is not None and r["user_id"] not in only:
                    continue
                conn.execute(
                    "UPDATE rollout_deployments SET status = 'pending', claimed_by = NULL, "
                    "claim_expires = NULL, updated_at = ? WHERE rollout_id = ? AND user_id = ?",
                    (now, rollout_id, r["user_id"]))
                self._recount(conn, rollout_id, "running", "pending", now)
                released += 1
            return released

    def rollout_status(self, rollout_id: str) -> str | None:
        """The rollout's status as its header says now (None: no such rollout)."""

        rows = self._read("SELECT data FROM rollouts WHERE rollout_id = ?", (rollout_id,))
        if not rows:
            return None
        doc = json.loads(rows[0]["data"])
        return str(doc.get("status")) if isinstance(doc, dict) else None

    def open_worker_rollouts(self, limit: int = 50) -> list[str]:
        """Rollouts open for workers, oldest first: what a worker without ``--rollout``
        works."""

        out = []
        for r in self._read("SELECT rollout_id, data, created_at FROM rollouts "
                            "ORDER BY created_at, rollout_id"):
            doc = json.loads(r["data"])
            if isinstance(doc, dict) and _open_for_workers(doc):
                out.append(str(r["rollout_id"]))
        return out[:limit]

    def reopen_for_workers(self, rollout_id: str) -> int:
        """A halted (or completed) worker rollout opened again: its failed and skipped
        rows are pending, its header open (resumed once more). How many rows were
        reopened; ``RegistryError`` when it is already open or not a worker rollout."""

        with self._write() as conn:
            header = self._locked_header(conn, rollout_id)
            if header is None or header.get("mode") != WORKERS_MODE:
                raise RegistryError(f"rollout {rollout_id!r} is not a rollout for workers")
            if header.get("status") == _OPEN:
                raise RegistryError(f"rollout {rollout_id} is already open for workers")
            now = self._clock()
            rows = conn.execute(
                "SELECT user_id, status FROM rollout_deployments WHERE rollout_id = ? AND "
                f"status IN ('failed', 'skipped') {self._for_update}", (rollout_id,)).fetchall()
            for r in rows:
                conn.execute("UPDATE rollout_deployments SET status = 'pending', "
                             "updated_at = ? WHERE rollout_id = ? AND user_id = ?",
                             (now, rollout_id, r["user_id"]))
                self._recount(conn, rollout_id, r["status"], "pending", now)
            header.update(status=_OPEN, halted_reason=None, updated_at=now,
                          resumed=int(header.get("resumed") or 0) + 1)
            self._put_locked_header(conn, rollout_id, header, now)
            return len(rows)

    # -- inside a write transaction ----------------------------------------------------------
    def _locked_header(self, conn: Any, rollout_id: str) -> dict[str, Any] | None:
        row = conn.execute(f"SELECT data FROM rollouts WHERE rollout_id = ? {self._for_update}",
                           (rollout_id,)).fetchone()
        if row is None:
            return None
        doc = json.loads(row["data"])
        return doc if isinstance(doc, dict) else None

    @staticmethod
    def _put_locked_header(conn: Any, rollout_id: str, header: dict[str, Any],
                           now: float) -> None:
        conn.execute("UPDATE rollouts SET data = ?, updated_at = ? WHERE rollout_id = ?",
                     (_dumps(header), now, rollout_id))

    @staticmethod
    def _budget_spent(conn: Any, header: dict[str, Any], rollout_id: str, user_id: str,
                      wave: int) -> str | None:
        """Why the failure just recorded halts the rollout, or None."""

        waves = header.get("waves") or []
        name = waves[wave].get("name") if 0 <= wave < len(waves) \
            and isinstance(waves[wave], dict) else None
        if name == "canary":
            return f"canary {user_id} failed"
        failures = conn.execute(
            "SELECT count(*) AS n FROM rollout_deployments WHERE rollout_id = ? AND "
            "status = 'failed'", (rollout_id,)).fetchone()["n"]
        budget = int(header.get("max_failures") or 0)
        if failures > budget:
            return f"{failures} failures exceed the budget of {budget}"
        return None

    @staticmethod
    def _recount(conn: Any, rollout_id: str, old: str, new: str, now: float) -> None:
        if old == new:
            return
        # in the same (sorted) order as save_deployment_row, so two writers moving rows
        # between the same statuses never lock the two counts in opposite orders
        for status, delta in sorted(((old, -1), (new, 1))):
            conn.execute("INSERT INTO rollout_counts (rollout_id, status, n, updated_at) "
                         "VALUES (?, ?, ?, ?) ON CONFLICT (rollout_id, status) DO UPDATE SET "
                         "n = rollout_counts.n + excluded.n, updated_at = excluded.updated_at",
                         (rollout_id, status, delta, now))


def _open_for_workers(header: dict[str, Any]) -> bool:
    return header.get("mode") == WORKERS_MODE and header.get("status") == _OPEN
