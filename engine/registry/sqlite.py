"""``SqliteStore``: the embedded default ``RegistryStore`` (one file, zero setup).

Why it is built this way:

* **Several processes at once** (a rollout, the app's backend, a monitor): WAL so readers
  never block the writer, a busy timeout so writers queue instead of failing, and every
  write in ``BEGIN IMMEDIATE`` so the write lock is taken up front (no lock-upgrade
  deadlocks, and read-check-write sequences like lease acquisition are atomic).
* **Threads**: one connection per store guarded by a lock; a forked child reopens its own.
* **Secrets at rest**: only vault envelopes are stored; the file is 0600 in a 0700 directory.
* **Versioned DDL**: Alembic revisions (``engine.registry.migrations``), applied under the
  write lock so two processes creating the file at once do not race; a file from an older
  engine is upgraded in place when it is opened (``engine.registry.schema_upgrade``).

Every role (users, journal, leases, audit, rollouts, progress, alerts, the service's
tables) is a mixin over ``engine.registry.sql_core.SqlCore`` shared with ``PostgresStore``
(``engine.registry.sql_users``, ``sql_roles``, ``sql_rollouts``, ``sql_alerts``,
``sql_serve``); this module keeps the connection and the file's own checks.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from engine.errors import RegistryError
from engine.registry.ddl import SCHEMA_VERSION
from engine.registry.sql_alerts import SqlAlerts
from engine.registry.sql_claims import SqlClaims
from engine.registry.sql_roles import SqlAudit, SqlJournal, SqlLeases, SqlProgress
from engine.registry.sql_rollouts import SqlRollouts
from engine.registry.sql_serve import SqlServe
from engine.registry.sql_tables import SqlTables
from engine.registry.sql_users import SqlUsers
from engine.registry.sql_verify import SqlVerify

__all__ = ["SqliteStore", "SCHEMA_VERSION", "open_store"]

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


class SqliteStore(SqlUsers, SqlJournal, SqlLeases, SqlAudit, SqlRollouts, SqlProgress,
                  SqlAlerts, SqlServe, SqlClaims, SqlTables, SqlVerify):
    """The registry in one SQLite file. See the module docstring for the concurrency model.

    The connection is here; every role comes from the SQL mixins it shares with
    ``PostgresStore``."""

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
        """Bring the file to this engine's schema (``engine.registry.schema_upgrade``): one
        query on ``conn`` when it is there already, else Alembic under ``BEGIN IMMEDIATE``
        (a file from an older engine is upgraded in place; a newer one is refused)."""

        from engine.registry.schema_upgrade import ensure_current

        ensure_current(self.path, conn=conn, auto=True, busy_timeout_s=self._busy_timeout_s)

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
        problems += self.document_problems()
        if sound_pages:  # a rollout's summary counts agree with its rows
            problems += self.rollout_problems()
        return problems

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None



def open_store(config_or_path: Any) -> SqliteStore:
    """A SQLite store from an ``EngineConfig`` (its ``registry_path``) or a path: the
    opener this module always had. ``engine.registry.open.open_store`` opens any location
    (a PostgreSQL URL too); this one refuses what is not a file."""

    from engine.config import is_registry_url, registry_display, registry_location

    location = registry_location(config_or_path)
    if is_registry_url(location) or "://" in location:
        raise RegistryError(f"{registry_display(location).split('://')[0]} registry "
                            "locations are not supported here: open them with "
                            "engine.registry.open_store")
    return SqliteStore(Path(location))
