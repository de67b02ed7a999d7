"""The registry's smaller roles, written once for SQLite and PostgreSQL, as mixins over
``engine.registry.sql_core.SqlCore``.

One mixin per role protocol of ``engine.ports.registry``: ``SqlJournal``
(``JournalStore``), ``SqlLeases`` (``LeaseStore``), ``SqlAudit`` (``AuditLog``) and
``SqlProgress`` (``ProgressStore``); ``RolloutStore`` lives in
``engine.registry.sql_rollouts``, the users role in ``engine.registry.sql_users``. Each uses
only what ``SqlCore`` declares, which ``SqliteStore`` and ``PostgresStore`` provide: the
clock, ``_write`` (one write transaction), ``_read`` and ``_get``. Every ``SELECT`` inside a
write whose answer decides what is written carries ``self._for_update``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from engine.errors import InvalidTransition, LeaseHeld, RegistryError
from engine.ports.registry import (
    JOURNAL_TRANSITIONS,
    AuditEntry,
    JournalEntry,
    JournalStatus,
    Lease,
    ProgressKind,
    check_progress_kind,
)
from engine.redact import redact
from engine.registry.process import ProcessId, current_process, provably_dead
from engine.registry.sql_core import SqlCore

__all__ = [
    "SqlAudit",
    "SqlJournal",
    "SqlLeases",
    "SqlProgress",
]

_JOURNAL_COLS = (
    "user_id, plan_id, step_id, seq, kind, status, version, cursor, processed, attempts, "
    "error, fingerprint, started_at, completed_at, created_at"
)


def _entry(row: Any) -> JournalEntry:
    return JournalEntry(**{k: row[k] for k in row.keys()})


def _clean(text: str | None) -> str | None:
    """Defence in depth: whatever the caller passed, nothing key-shaped is stored."""

    return None if text is None else redact(str(text))[:2000]




class SqlAudit(SqlCore):
    """``AuditLog``: an append-only, redacted record of state changes."""

    def _audit(self, conn: Any, user_id: str, event: str,
               detail: dict[str, Any] | None) -> None:
        """Append one entry inside the caller's write transaction."""

        conn.execute("INSERT INTO audit (at, user_id, event, detail) VALUES (?, ?, ?, ?)",
                     (self._clock(), user_id, event,
                      redact(json.dumps(detail or {}, default=str, sort_keys=True))))

    def audit(self, user_id: str, event: str, detail: dict[str, Any] | None = None) -> None:
        with self._write() as conn:
            self._audit(conn, user_id, event, detail)

    def audit_log(self, user_id: str | None = None, limit: int = 100) -> list[AuditEntry]:
        if user_id is None:
            rows = self._read("SELECT at, user_id, event, detail FROM audit "
                              "ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._read("SELECT at, user_id, event, detail FROM audit WHERE user_id = ? "
                              "ORDER BY id DESC LIMIT ?", (user_id, limit))
        return [AuditEntry(at=r["at"], user_id=r["user_id"], event=r["event"],
                           detail=json.loads(r["detail"])) for r in reversed(rows)]


class SqlJournal(SqlCore):
    """``JournalStore``: the per-step migration journal."""

    def journal_plan(self, entries: list[JournalEntry]) -> None:
        now = self._clock()
        with self._write() as conn:
            for e in entries:
                self._get(conn, e.user_id)
                conn.execute(
                    f"INSERT INTO journal ({_JOURNAL_COLS}, updated_at) VALUES "
                    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (user_id, plan_id, step_id) DO NOTHING",
                    (e.user_id, e.plan_id, e.step_id, e.seq, e.kind, e.status, e.version,
                     e.cursor, e.processed, e.attempts, _clean(e.error), e.fingerprint,
                     e.started_at, e.completed_at, e.created_at or now, now))

    def journal(self, user_id: str, plan_id: str | None = None) -> list[JournalEntry]:
        if plan_id is None:
            rows = self._read(f"SELECT {_JOURNAL_COLS} FROM journal WHERE user_id = ? "
                              "ORDER BY created_at, plan_id, seq", (user_id,))
        else:
            rows = self._read(f"SELECT {_JOURNAL_COLS} FROM journal WHERE user_id = ? AND "
                              "plan_id = ? ORDER BY seq", (user_id, plan_id))
        return [_entry(r) for r in rows]

    def journal_update(
        self, user_id: str, plan_id: str, step_id: str, *, status: JournalStatus | None = None,
        cursor: str | None = None, processed: int | None = None, error: str | None = None,
        bump_attempts: bool = False,
    ) -> JournalEntry:
        with self._write() as conn:
            row = conn.execute(f"SELECT {_JOURNAL_COLS} FROM journal WHERE user_id = ? AND "
                               f"plan_id = ? AND step_id = ? {self._for_update}",
                               (user_id, plan_id, step_id)).fetchone()
            if row is None:
                raise RegistryError(
                    f"no journal step {step_id!r} in plan {plan_id!r} for user {user_id!r}")
            old = _entry(row)
            now = self._clock()
            sets: dict[str, Any] = {}
            if status is not None:
                if status not in JOURNAL_TRANSITIONS.get(old.status, frozenset()):
                    raise InvalidTransition(f"journal step {step_id!r}", old.status, status)
                sets["status"] = status
                if status == "running" and old.status != "running":
                    sets["started_at"] = now
                    sets["completed_at"] = None
                if status in ("completed", "failed", "skipped"):
                    sets["completed_at"] = now
                if status == "completed":
                    sets["error"] = None
            if cursor is not None:
                sets["cursor"] = cursor
            if processed is not None:
                sets["processed"] = processed
            if error is not None:
                sets["error"] = _clean(error)
            assignments = [f"{k} = ?" for k in sets]
            if bump_attempts:
                assignments.append("attempts = attempts + 1")
            assignments.append("updated_at = ?")
            conn.execute(
                f"UPDATE journal SET {', '.join(assignments)} "
                "WHERE user_id = ? AND plan_id = ? AND step_id = ?",
                (*sets.values(), now, user_id, plan_id, step_id))
            if status is not None and status != old.status:
                self._audit(conn, user_id, "journal", {
                    "plan": plan_id, "step": step_id, "from": old.status, "to": status,
                    "error": sets.get("error")})
            new = conn.execute(f"SELECT {_JOURNAL_COLS} FROM journal WHERE user_id = ? AND "
                               "plan_id = ? AND step_id = ?",
                               (user_id, plan_id, step_id)).fetchone()
            return _entry(new)


_LEASE_COLS = ("deployment, holder, acquired_at, expires_at, renewed_at, host, pid, "
               "pid_started, pid_namespace")


def _lease(row: Any) -> Lease:
    return Lease(deployment=row["deployment"], holder=row["holder"],
                 expires_at=row["expires_at"], acquired_at=row["acquired_at"],
                 renewed_at=row["renewed_at"], host=row["host"], pid=row["pid"],
                 pid_started=row["pid_started"], pid_namespace=row["pid_namespace"])


def holder_process(lease: Lease) -> ProcessId | None:
    """The process a lease row names, when it names one."""

    if lease.host is None or lease.pid is None:
        return None
    return ProcessId(host=lease.host, pid=int(lease.pid), started=lease.pid_started,
                     pid_namespace=lease.pid_namespace)


class SqlLeases(SqlCore):
    """``LeaseStore`` and ``LeaseAdmin``: one runner per deployment, through expiring
    leases that record their holder process."""

    def acquire_lease(self, deployment: str, holder: str, ttl_s: float) -> Lease:
        """Take the lease unless someone else holds an unexpired one (LeaseHeld). The check
        and the write happen under one write lock, so exactly one contender wins. A lease
        whose holder expired, or whose holder process is provably dead on this host
        (``engine.registry.process``), is taken over at once; that is audited."""

        if ttl_s <= 0:
            raise RegistryError("a lease needs a positive ttl")
        me = current_process()
        with self._write() as conn:
            now = self._clock()
            expires = now + ttl_s
            mine = Lease(deployment=deployment, holder=holder, expires_at=expires,
                         acquired_at=now, renewed_at=now, host=me.host, pid=me.pid,
                         pid_started=me.started, pid_namespace=me.pid_namespace)
            values = (deployment, holder, now, expires, now, me.host, me.pid, me.started,
                      me.pid_namespace)
            # a new key: the insert alone decides (concurrent inserters of the key wait on
            # its unique index, then find it taken); a key with a row: lock it, then decide
            if conn.execute(f"INSERT INTO leases ({_LEASE_COLS}) VALUES "
                            "(?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (deployment) DO NOTHING "
                            "RETURNING deployment", values).fetchone() is not None:
                return mine
            row = conn.execute(f"SELECT {_LEASE_COLS} FROM leases WHERE deployment = ? "
                               f"{self._for_update}", (deployment,)).fetchone()
            old = _lease(row) if row is not None else None
            why = ""
            if old is not None and old.holder != holder:
                if old.expires_at <= now:
                    why = "expired"
                else:
                    proc = holder_process(old)
                    if proc is None or not provably_dead(proc):
                        raise LeaseHeld(deployment, old.holder, old.expires_at)
                    why = "holder process is dead"
            conn.execute(
                f"INSERT INTO leases ({_LEASE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (deployment) DO UPDATE SET holder = excluded.holder, "
                "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at, "
                "renewed_at = excluded.renewed_at, host = excluded.host, pid = excluded.pid, "
                "pid_started = excluded.pid_started, pid_namespace = excluded.pid_namespace",
                values)
            if old is not None and old.holder != holder:
                self._audit(conn, deployment, "lease_taken_over",
                            {"from": old.holder, "to": holder, "reason": why,
                             "expired_at": old.expires_at, "host": old.host, "pid": old.pid})
            return mine

    def renew_lease(self, deployment: str, holder: str, ttl_s: float) -> Lease:
        with self._write() as conn:
            now = self._clock()
            row = conn.execute(f"SELECT {_LEASE_COLS} FROM leases WHERE deployment = ? "
                               f"{self._for_update}", (deployment,)).fetchone()
            if row is None or row["holder"] != holder:
                raise LeaseHeld(deployment, row["holder"] if row else "nobody",
                                row["expires_at"] if row else 0.0)
            expires = now + ttl_s
            conn.execute("UPDATE leases SET expires_at = ?, renewed_at = ? WHERE deployment = ?",
                         (expires, now, deployment))
            return replace(_lease(row), expires_at=expires, renewed_at=now)

    def release_lease(self, deployment: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE deployment = ? AND holder = ?",
                         (deployment, holder))

    def current_lease(self, deployment: str) -> Lease | None:
        """The unexpired lease on a deployment, if any (for status displays)."""

        rows = self._read(f"SELECT {_LEASE_COLS} FROM leases WHERE deployment = ? AND "
                          "expires_at > ?", (deployment, self._clock()))
        return _lease(rows[0]) if rows else None

    def list_leases(self) -> list[Lease]:
        """Every lease row, expired ones included (a crashed holder's stays until taken
        over or broken), ordered by what it covers."""

        return [_lease(r) for r in self._read(f"SELECT {_LEASE_COLS} FROM leases "
                                               "ORDER BY deployment")]

    def break_lease(self, deployment: str, *, reason: str = "") -> Lease | None:
        """End a lease whoever holds it (the operator's way out); audited with the
        holder it ended. None when there was no lease."""

        with self._write() as conn:
            row = conn.execute(f"SELECT {_LEASE_COLS} FROM leases WHERE deployment = ? "
                               f"{self._for_update}", (deployment,)).fetchone()
            if row is None:
                return None
            old = _lease(row)
            conn.execute("DELETE FROM leases WHERE deployment = ?", (deployment,))
            self._audit(conn, deployment, "lease_broken",
                        {"holder": old.holder, "host": old.host, "pid": old.pid,
                         "expires_at": old.expires_at, "reason": reason or None})
            return old


class SqlProgress(SqlCore):
    """``ProgressStore``: one user's resumable copy progress, per kind."""

    def save_progress(self, kind: ProgressKind, user_id: str, doc: dict[str, Any]) -> None:
        text = json.dumps(doc, default=str, sort_keys=True)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO progress (kind, user_id, doc, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, user_id) DO UPDATE SET "
                "doc = excluded.doc, updated_at = excluded.updated_at",
                (check_progress_kind(kind), user_id, text, self._clock()))

    def load_progress(self, kind: ProgressKind, user_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT doc FROM progress WHERE kind = ? AND user_id = ?",
                          (check_progress_kind(kind), user_id))
        return json.loads(rows[0]["doc"]) if rows else None
