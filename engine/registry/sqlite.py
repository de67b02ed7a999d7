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

The journal, lease, audit, rollout and progress roles live in
``engine.registry.sqlite_roles`` (mixins over the connection kept here); pending webhook
alerts (``AlertStore``) in ``engine.registry.sqlite_alerts``.
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

from engine.errors import InvalidTransition, RegistryError, UnknownUser
from engine.ports.registry import (
    CONNECTION_TRANSITIONS,
    ConnectionStatus,
    DeploymentStatus,
    UserConfig,
    check_user_id,
)
from engine.registry.ddl import MIGRATIONS, SCHEMA_VERSION
from engine.registry.sqlite_alerts import SqliteAlerts
from engine.registry.sqlite_roles import (  # the helpers moved there stay importable here
    SqliteAudit,
    SqliteJournal,
    SqliteLeases,
    SqliteProgress,
    _clean,
)
from engine.registry.sqlite_rollouts import SqliteRollouts
from engine.registry.sqlite_serve import SqliteServe

__all__ = ["SqliteStore", "SCHEMA_VERSION", "open_store"]

_USER_COLS = (
    "user_id, url_ct, key_ct, connection_status, deployment_status, deployment_progress, "
    "schema_version, schema_fingerprint, last_connection_test, connection_error, entitled, "
    "created_at, updated_at"
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


_RESTORE_HINT = ("`byod registry check` lists what is wrong; restore a backup, or move it "
                 "aside and run `byod reconcile --apply` to rebuild from the deployments")


def _damaged(exc: sqlite3.Error) -> bool:
    """The file is not a SQLite database, or its pages/tables are corrupt (as opposed to
    busy, a constraint, or a programming error)."""

    if getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return True
    text = str(exc).lower()
    return type(exc) is sqlite3.DatabaseError or "malformed" in text \
        or "not a database" in text


def _damaged_error(path: Path, exc: sqlite3.Error) -> RegistryError:
    return RegistryError(f"the registry {path} is damaged or not a registry file ({exc}): "
                         f"{_RESTORE_HINT}")


def _secure_file(path: Path) -> None:
    """Create the parent directory (0700) and the file itself (0600) before SQLite opens it,
    so the file is never readable by others, not even for an instant.

    An existing file is never opened here: POSIX locks belong to the process, so closing any
    descriptor of the file would drop the locks another connection of this process holds on
    it, and a process closing last elsewhere would then remove the WAL under that connection
    (``tests/registry/test_second_store_in_process.py``)."""

    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        return
    os.close(fd)  # a new, empty file: nobody holds a lock on it yet


class SqliteStore(SqliteJournal, SqliteLeases, SqliteAudit, SqliteRollouts, SqliteProgress,
                  SqliteAlerts, SqliteServe):
    """The registry in one SQLite file. See the module docstring for the concurrency model.

    The connection and the ``UserStore`` role are here; the other roles come from the
    mixins of ``engine.registry.sqlite_roles``."""

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
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a readable file
            self._conn, self._pid = conn, os.getpid()
            self._migrate(conn)
        except sqlite3.Error as exc:
            self._conn = None
            conn.close()
            if _damaged(exc):
                raise _damaged_error(self.path, exc) from exc
            raise
        except BaseException:
            self._conn = None
            conn.close()
            raise
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
            except sqlite3.Error as exc:
                if not _damaged(exc):
                    conn.execute("ROLLBACK")
                    raise
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # a damaged file may refuse even the rollback
                raise _damaged_error(self.path, exc) from exc
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._connection().execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                if _damaged(exc):
                    raise _damaged_error(self.path, exc) from exc
                raise

    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    # (table, key column, JSON column): the documents the engine parses when it reads them
    _JSON_COLUMNS = (("rollouts", "rollout_id", "data"), ("progress", "kind || ':' || user_id",
                     "doc"), ("audit", "id", "detail"), ("alerts", "id", "payload"),
                     ("rollout_deployments", "rollout_id || ' ' || user_id", "data"))

    def verify(self) -> list[str]:
        """Every defect found in the file, as one sentence each (empty = sound): SQLite's own
        page and index check, dangling references, and every stored JSON document the engine
        would fail to read later (a rollout record, a copy's progress, an audit detail, an
        alert, a rollout's deployment row), so a damaged row is found before the command that
        needs it, and rollout summary counts that disagree with the rows they count."""

        problems = [f"SQLite integrity check: {r[0]}"
                    for r in self._read("PRAGMA integrity_check") if r[0] != "ok"]
        sound_pages = not problems
        problems += [f"table {r[0]} row {r[1]} refers to a missing row of {r[2]}"
                     for r in self._read("PRAGMA foreign_key_check")]
        version = self.schema_version()
        if version != SCHEMA_VERSION:
            problems.append(f"registry schema version {version}, expected {SCHEMA_VERSION}")
        for table, key, column in self._JSON_COLUMNS:
            for row in self._read(f"SELECT {key} AS k, {column} AS v FROM {table}"):
                try:
                    doc = json.loads(row["v"])
                except (TypeError, ValueError) as exc:
                    problems.append(f"{table} {row['k']}: {column} is not JSON ({exc})")
                    continue
                if not isinstance(doc, dict):
                    problems.append(f"{table} {row['k']}: {column} is not a JSON object")
        if sound_pages:  # a rollout's summary counts agree with its rows
            problems += self.rollout_problems()
        return problems

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

        check_user_id(user_id)
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

        check_user_id(user_id)
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


def open_store(config_or_path: Any) -> SqliteStore:
    """A store from an ``EngineConfig`` (its ``registry_path``), a path, or a string."""

    path = getattr(config_or_path, "registry_path", config_or_path)
    if isinstance(path, str) and "://" in path:
        raise RegistryError(
            f"registry location {path.split('://', 1)[0]}://… is not supported; "
            "give a file path for the embedded SQLite registry")
    return SqliteStore(Path(path))
