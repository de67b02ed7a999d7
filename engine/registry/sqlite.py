"""``SqliteStore``: the embedded default ``RegistryStore`` (one file, zero setup).

Why it is built this way:

* **Several processes at once** (a rollout, the app's backend, a monitor): WAL so readers
  never block the writer, a busy timeout so writers queue instead of failing, and every
  write in ``BEGIN IMMEDIATE`` so the write lock is taken up front (no lock-upgrade
  deadlocks, and read-check-write sequences like lease acquisition are atomic).
* **Threads**: one connection per store guarded by a lock; a forked child reopens its own.
* **Secrets at rest**: only vault envelopes are stored; the file is 0600 in a 0700 directory.
* **Versioned DDL**: ``PRAGMA user_version`` plus a ``schema_migrations`` table, applied
  under the write lock so two processes creating the file at once do not race; a file
  from an older engine is upgraded in place when it is opened (``engine.registry.ddl``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from engine.errors import InvalidTransition, LeaseHeld, RegistryError, UnknownUser
from engine.ports.registry import (
    CONNECTION_TRANSITIONS,
    JOURNAL_TRANSITIONS,
    PROGRESS_KINDS,
    AuditEntry,
    ConnectionStatus,
    DeploymentStatus,
    JournalEntry,
    JournalStatus,
    Lease,
    ProgressKind,
    UserConfig,
)
from engine.redact import redact
from engine.registry.ddl import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SqliteStore", "SCHEMA_VERSION", "open_store"]

_USER_COLS = (
    "user_id, url_ct, key_ct, connection_status, deployment_status, deployment_progress, "
    "schema_version, schema_fingerprint, last_connection_test, connection_error, entitled, "
    "created_at, updated_at"
)
_JOURNAL_COLS = (
    "user_id, plan_id, step_id, seq, kind, status, version, cursor, processed, attempts, "
    "error, fingerprint, started_at, completed_at, created_at"
)


def _user(row: sqlite3.Row) -> UserConfig:
    return UserConfig(
        user_id=row["user_id"], url_ct=row["url_ct"], key_ct=row["key_ct"],
        connection_status=row["connection_status"],
        deployment_status=row["deployment_status"],
        deployment_progress=row["deployment_progress"], schema_version=row["schema_version"],
        schema_fingerprint=row["schema_fingerprint"],
        last_connection_test=row["last_connection_test"],
        connection_error=row["connection_error"], entitled=bool(row["entitled"]),
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


def _entry(row: sqlite3.Row) -> JournalEntry:
    return JournalEntry(**{k: row[k] for k in row.keys()})


def _clean(text: str | None) -> str | None:
    """Defence in depth: whatever the caller passed, nothing key-shaped is stored."""

    return None if text is None else redact(str(text))[:2000]


def _secure_file(path: Path) -> None:
    """Create the parent directory (0700) and the file itself (0600) before SQLite opens it,
    so the file is never readable by others, not even for an instant."""

    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class SqliteStore:
    """The registry in one SQLite file. See the module docstring for the concurrency model."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._connection()  # create + migrate now: errors surface at open, not mid-flow

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def __enter__(self) -> "SqliteStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection and DDL ----------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            _secure_file(self.path)
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s,
                                   isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise RegistryError(f"cannot open the registry {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        self._use_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self._conn, self._pid = conn, os.getpid()
        self._migrate(conn)
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new file to WAL (the mode is stored in the file). The switch needs an
        exclusive lock and SQLite does not always wait for it through the busy timeout, so
        processes creating the file at once would see "database is locked": retry until the
        timeout instead."""

        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    conn.close()
                    raise RegistryError(f"the registry {self.path} is busy: {exc}") from exc
                time.sleep(0.01)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current == SCHEMA_VERSION:
            return
        if current > SCHEMA_VERSION:
            raise RegistryError(
                f"the registry {self.path} has schema version {current}, newer than this "
                f"engine understands ({SCHEMA_VERSION}); upgrade the engine"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                         "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)",
                             (version, self._clock()))
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from the start."""

        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise RegistryError(f"the registry {self.path} is busy: {exc}") from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection().execute(sql, tuple(params)).fetchall()

    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- helpers used inside write transactions ---------------------------------------------
    @staticmethod
    def _get(conn: sqlite3.Connection, user_id: str) -> UserConfig:
        row = conn.execute(f"SELECT {_USER_COLS} FROM users WHERE user_id = ?",
                           (user_id,)).fetchone()
        if row is None:
            raise UnknownUser(user_id)
        return _user(row)

    def _audit(self, conn: sqlite3.Connection, user_id: str, event: str,
               detail: dict[str, Any] | None) -> None:
        conn.execute("INSERT INTO audit (at, user_id, event, detail) VALUES (?, ?, ?, ?)",
                     (self._clock(), user_id, event,
                      redact(json.dumps(detail or {}, default=str, sort_keys=True))))

    # -- users --------------------------------------------------------------------------------
    def get_user(self, user_id: str) -> UserConfig:
        user = self.find_user(user_id)
        if user is None:
            raise UnknownUser(user_id)
        return user

    def find_user(self, user_id: str) -> UserConfig | None:
        rows = self._read(f"SELECT {_USER_COLS} FROM users WHERE user_id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    def list_users(self, *, connection_status: Iterable[str] | None = None) -> list[UserConfig]:
        if connection_status is None:
            rows = self._read(f"SELECT {_USER_COLS} FROM users ORDER BY user_id")
        else:
            wanted = list(connection_status)
            if not wanted:
                return []
            marks = ",".join("?" * len(wanted))
            rows = self._read(f"SELECT {_USER_COLS} FROM users WHERE connection_status IN "
                              f"({marks}) ORDER BY user_id", wanted)
        return [_user(r) for r in rows]

    def upsert_credentials(self, user_id: str, *, url_ct: str, key_ct: str) -> UserConfig:
        """Save a user's encrypted credentials: a new row (pending), or the same row updated
        in place — a re-connect never makes a second row."""

        if not user_id:
            raise RegistryError("a user id is required")
        now = self._clock()
        with self._write() as conn:
            existed = conn.execute("SELECT 1 FROM users WHERE user_id = ?",
                                   (user_id,)).fetchone() is not None
            conn.execute(
                "INSERT INTO users (user_id, url_ct, key_ct, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                "url_ct = excluded.url_ct, key_ct = excluded.key_ct, "
                "updated_at = excluded.updated_at",
                (user_id, url_ct, key_ct, now, now))
            self._audit(conn, user_id, "credentials_saved", {"replaced": existed})
            return self._get(conn, user_id)

    def set_connection_status(
        self, user_id: str, status: ConnectionStatus, *, error: str | None = None,
        tested_at: float | None = None,
    ) -> UserConfig:
        if status not in CONNECTION_TRANSITIONS:
            raise RegistryError(f"unknown connection status {status!r}")
        with self._write() as conn:
            user = self._get(conn, user_id)
            if status not in CONNECTION_TRANSITIONS[user.connection_status]:
                raise InvalidTransition("connection status", user.connection_status, status)
            # "connected" and "disconnected" clear the last error (the audit log keeps it);
            # other states keep it unless given a new one.
            new_error = None if status in ("connected", "disconnected") else (
                _clean(error) if error is not None else user.connection_error)
            conn.execute(
                "UPDATE users SET connection_status = ?, connection_error = ?, "
                "last_connection_test = COALESCE(?, last_connection_test), updated_at = ? "
                "WHERE user_id = ?",
                (status, new_error, tested_at, self._clock(), user_id))
            if status != user.connection_status or new_error != user.connection_error:
                self._audit(conn, user_id, "connection_status",
                            {"from": user.connection_status, "to": status, "error": new_error})
            return self._get(conn, user_id)

    def set_deployment(
        self, user_id: str, *, status: DeploymentStatus | None = None,
        progress: str | None = None, version: str | None = None,
        fingerprint: str | None = None,
    ) -> UserConfig:
        changes = {k: v for k, v in (("deployment_status", status),
                                     ("deployment_progress", progress),
                                     ("schema_version", version),
                                     ("schema_fingerprint", fingerprint)) if v is not None}
        with self._write() as conn:
            self._get(conn, user_id)
            if not changes:
                return self._get(conn, user_id)
            now = self._clock()
            sets = ", ".join(f"{k} = ?" for k in changes)
            extra = ", last_schema_deploy = ?" if version is not None else ""
            params: list[Any] = list(changes.values())
            if version is not None:
                params.append(now)
            try:
                conn.execute(f"UPDATE users SET {sets}{extra}, updated_at = ? WHERE user_id = ?",
                             (*params, now, user_id))
            except sqlite3.IntegrityError as exc:
                raise RegistryError(f"invalid deployment status {status!r}") from exc
            self._audit(conn, user_id, "deployment", changes)
            return self._get(conn, user_id)

    def set_entitled(self, user_id: str, entitled: bool) -> UserConfig:
        """Grant or revoke the premium entitlement; creates a credential-less pending row so
        a user can be entitled before they connect."""

        now = self._clock()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO users (user_id, entitled, created_at, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT (user_id) DO UPDATE SET entitled = excluded.entitled, "
                "updated_at = excluded.updated_at", (user_id, int(entitled), now, now))
            self._audit(conn, user_id, "entitlement", {"entitled": bool(entitled)})
            return self._get(conn, user_id)

    def replace_ciphertexts(self, user_id: str, *, url_ct: str, key_ct: str,
                            expect_url_ct: str, expect_key_ct: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE users SET url_ct = ?, key_ct = ?, updated_at = ? "
                "WHERE user_id = ? AND url_ct = ? AND key_ct = ?",
                (url_ct, key_ct, self._clock(), user_id, expect_url_ct, expect_key_ct))
            if cur.rowcount == 1:
                self._audit(conn, user_id, "credentials_reencrypted", {})
                return True
            return False

    # -- journal ------------------------------------------------------------------------------
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
                               "plan_id = ? AND step_id = ?",
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

    # -- leases -------------------------------------------------------------------------------
    def acquire_lease(self, deployment: str, holder: str, ttl_s: float) -> Lease:
        """Take the lease unless someone else holds an unexpired one (LeaseHeld). The check
        and the write happen under one write lock, so exactly one contender wins; a lease
        whose holder crashed expires and is taken over (and that is audited)."""

        if ttl_s <= 0:
            raise RegistryError("a lease needs a positive ttl")
        with self._write() as conn:
            now = self._clock()
            row = conn.execute("SELECT holder, expires_at FROM leases WHERE deployment = ?",
                               (deployment,)).fetchone()
            if row is not None and row["holder"] != holder and row["expires_at"] > now:
                raise LeaseHeld(deployment, row["holder"], row["expires_at"])
            expires = now + ttl_s
            conn.execute(
                "INSERT INTO leases (deployment, holder, acquired_at, expires_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (deployment) DO UPDATE SET "
                "holder = excluded.holder, acquired_at = excluded.acquired_at, "
                "expires_at = excluded.expires_at", (deployment, holder, now, expires))
            if row is not None and row["holder"] != holder:
                self._audit(conn, deployment, "lease_taken_over",
                            {"from": row["holder"], "to": holder,
                             "expired_at": row["expires_at"]})
            return Lease(deployment=deployment, holder=holder, expires_at=expires)

    def renew_lease(self, deployment: str, holder: str, ttl_s: float) -> Lease:
        with self._write() as conn:
            now = self._clock()
            row = conn.execute("SELECT holder, expires_at FROM leases WHERE deployment = ?",
                               (deployment,)).fetchone()
            if row is None or row["holder"] != holder:
                raise LeaseHeld(deployment, row["holder"] if row else "nobody",
                                row["expires_at"] if row else 0.0)
            expires = now + ttl_s
            conn.execute("UPDATE leases SET expires_at = ? WHERE deployment = ?",
                         (expires, deployment))
            return Lease(deployment=deployment, holder=holder, expires_at=expires)

    def release_lease(self, deployment: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE deployment = ? AND holder = ?",
                         (deployment, holder))

    def current_lease(self, deployment: str) -> Lease | None:
        """The unexpired lease on a deployment, if any (for status displays)."""

        rows = self._read("SELECT holder, expires_at FROM leases WHERE deployment = ? AND "
                          "expires_at > ?", (deployment, self._clock()))
        return Lease(deployment, rows[0]["holder"], rows[0]["expires_at"]) if rows else None

    # -- audit --------------------------------------------------------------------------------
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

    # -- rollouts -----------------------------------------------------------------------------
    def save_rollout(self, rollout_id: str, data: dict[str, Any]) -> None:
        now = self._clock()
        text = json.dumps(data, default=str, sort_keys=True)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO rollouts (rollout_id, data, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (rollout_id) DO UPDATE SET "
                "data = excluded.data, updated_at = excluded.updated_at",
                (rollout_id, text, now, now))

    def load_rollout(self, rollout_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT data FROM rollouts WHERE rollout_id = ?", (rollout_id,))
        return json.loads(rows[0]["data"]) if rows else None

    def list_rollouts(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._read("SELECT rollout_id, data FROM rollouts "
                          "ORDER BY updated_at DESC, rowid DESC LIMIT ?", (limit,))
        out = []
        for r in rows:
            data = json.loads(r["data"])
            if isinstance(data, dict):
                data.setdefault("rollout_id", r["rollout_id"])
            out.append(data)
        return out

    # -- per-user copy progress ---------------------------------------------------------------
    @staticmethod
    def _kind(kind: str) -> str:
        if kind not in PROGRESS_KINDS:
            raise RegistryError(f"unknown progress kind {kind!r}; "
                                f"expected one of {', '.join(PROGRESS_KINDS)}")
        return kind

    def save_progress(self, kind: ProgressKind, user_id: str, doc: dict[str, Any]) -> None:
        text = json.dumps(doc, default=str, sort_keys=True)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO progress (kind, user_id, doc, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, user_id) DO UPDATE SET "
                "doc = excluded.doc, updated_at = excluded.updated_at",
                (self._kind(kind), user_id, text, self._clock()))

    def load_progress(self, kind: ProgressKind, user_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT doc FROM progress WHERE kind = ? AND user_id = ?",
                          (self._kind(kind), user_id))
        return json.loads(rows[0]["doc"]) if rows else None


def open_store(config_or_path: Any) -> SqliteStore:
    """A store from an ``EngineConfig`` (its ``registry_path``), a path, or a string."""

    path = getattr(config_or_path, "registry_path", config_or_path)
    if isinstance(path, str) and "://" in path:
        raise RegistryError(
            f"registry location {path.split('://', 1)[0]}://… is not supported; "
            "give a file path for the embedded SQLite registry")
    return SqliteStore(Path(path))
