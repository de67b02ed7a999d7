"""``PostgresStore``: the ``RegistryStore`` on a PostgreSQL server
(``BYOD_REGISTRY=postgresql://user:password@host:port/database``), for fleets whose
registry is shared by several machines.

Why it is built this way:

* **The same queries as SQLite**: every role is a mixin over ``SqlCore`` shared with
  ``SqliteStore`` (``engine.registry.sql_users``, ``sql_roles``, ``sql_rollouts``, ...).
  The connection wrapper here turns their ``?`` placeholders into psycopg's ``%s`` (a
  literal ``%`` is doubled) and yields rows read by column name (or position).
* **psycopg 3, one connection per store**, guarded by a re-entrant lock, reopened in a
  forked child (the inherited socket is pointed at ``/dev/null`` first, so the child
  closing it never ends the parent's session). No pool: a store serves one process whose
  registry calls are short and serialised anyway, and a writer holds its connection for a
  whole transaction; a pool would add a dependency and idle connections on the server for
  nothing. The connection is in autocommit mode: a read is one statement, never an open
  transaction left idle. TCP keepalives (a probe after 10 s idle, dropped after 3
  unanswered 5 s apart) and ``tcp_user_timeout`` (30 s of unacknowledged data) make a call
  on a dead network fail within about half a minute, instead of hanging until the OS gives up.
* **Writes**: each ``_write()`` is one READ COMMITTED transaction. Every ``SELECT`` inside
  one whose answer decides what is written carries ``FOR UPDATE`` (``_for_update``), a
  new lease key is inserted before it is locked, and a claim skips rows another worker
  holds (``FOR UPDATE SKIP LOCKED``): concurrent writers of one row wait for each other,
  as SQLite's single writer does. A lock wait is bounded (``lock_timeout``), like SQLite's
  busy timeout.
* **Secrets**: the URL may carry a password. It never appears in a repr, an error or a
  log: messages name ``host:port/database`` only, and any driver text is scrubbed of the
  URL and the password before it is shown.
* **Schema**: Alembic's revisions (``engine.registry.schema_upgrade.ensure_current``),
  called from ``_ensure_schema``: an empty database gets schema 7 (``engine.registry.pg_ddl``)
  on first open, under an advisory lock; an older schema is refused until
  ``byod registry upgrade``.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, Sequence

import psycopg
from psycopg import IsolationLevel
from psycopg.conninfo import conninfo_to_dict

from engine.errors import RegistryError
from engine.redact import REDACTED
from engine.registry.ddl import SCHEMA_VERSION
from engine.registry.sql_alerts import SqlAlerts
from engine.registry.sql_claims import SqlClaims
from engine.registry.sql_roles import SqlAudit, SqlJournal, SqlLeases, SqlProgress
from engine.registry.sql_rollouts import SqlRollouts
from engine.registry.sql_serve import SqlServe
from engine.registry.sql_tables import SqlTables
from engine.registry.sql_users import SqlUsers
from engine.registry.sql_verify import SqlVerify

__all__ = ["PostgresStore", "pg_sql"]


@lru_cache(maxsize=2048)
def pg_sql(sql: str) -> str:
    """A query written with ``?`` placeholders in psycopg's format: ``?`` outside quotes
    becomes ``%s``, every ``%`` becomes ``%%`` (psycopg reads ``%`` everywhere, even in a
    string literal)."""

    out: list[str] = []
    quote = ""
    for ch in sql:
        if ch == "%":
            out.append("%%")
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append(ch)
    return "".join(out)


class Row(dict[str, Any]):
    """A row read by column name, like ``sqlite3.Row`` (and by position: ``row[0]``)."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return dict.__getitem__(self, key)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = [c.name for c in cursor.description or ()]
    return lambda values: Row(zip(names, values))


class PgConnection:
    """What the role mixins see of a psycopg connection: ``execute`` with ``?`` placeholders
    (a cursor with ``fetchone``, ``fetchall``, ``rowcount``) and ``executemany``."""

    def __init__(self, raw: psycopg.Connection[Any]):
        self.raw = raw

    def execute(self, sql: str, params: Iterable[Any] = ()) -> psycopg.Cursor[Any]:
        # params are always given (maybe empty) so psycopg always reads the doubled "%"
        return self.raw.execute(pg_sql(sql), tuple(params))

    def executemany(self, sql: str, seq: Iterable[Iterable[Any]]) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(pg_sql(sql), [tuple(p) for p in seq])
        return cur


# Every live store, so a forked child can drop the connections it inherited.
_STORES: "weakref.WeakSet[PostgresStore]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._forget_inherited()


os.register_at_fork(after_in_child=_after_fork_in_child)


class PostgresStore(SqlUsers, SqlJournal, SqlLeases, SqlAudit, SqlRollouts, SqlProgress,
                    SqlAlerts, SqlServe, SqlClaims, SqlTables, SqlVerify):
    """The registry in a PostgreSQL database. See the module docstring."""

    dialect = "postgresql"
    _for_update = "FOR UPDATE"
    _skip_locked = "FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0, clock: Callable[[], float] = time.time):
        self._url = url
        try:
            parts = conninfo_to_dict(url)
        except psycopg.Error:  # the driver's message quotes the URL: not shown
            raise RegistryError("the PostgreSQL registry URL is not valid: expected "
                                "postgresql://user:password@host:port/database") from None
        self._password = str(parts.get("password") or "")
        host = str(parts.get("host") or "localhost")
        self.where = f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"
        self._busy_timeout_s = busy_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._lock = threading.RLock()
        self._conn: PgConnection | None = None
        self._pid = -1
        _STORES.add(self)
        self._connection()  # connect + schema now: errors surface at open, not mid-flow

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    def __enter__(self) -> "PostgresStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- secrets ---------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        """Driver text without the URL or the password (libpq does not echo them; this
        makes sure)."""

        for secret in sorted((s for s in (self._url, getattr(self, "_password", ""))
                              if s and len(s) >= 3), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text.strip()

    def _error(self, doing: str, exc: BaseException) -> RegistryError:
        return RegistryError(f"{doing} the PostgreSQL registry at {self.where}: "
                             f"{self._scrub(str(exc)) or type(exc).__name__}")

    # -- connection ------------------------------------------------------------------------
    def _connection(self) -> PgConnection:
        if self._conn is not None and self._pid == os.getpid() and not self._conn.raw.closed:
            return self._conn
        self._conn = None
        try:
            raw = psycopg.connect(self._url, autocommit=True, row_factory=_row_factory,
                                  connect_timeout=max(1, math.ceil(self._connect_timeout_s)),
                                  application_name="byod", keepalives=1,
                                  keepalives_idle=10, keepalives_interval=5,
                                  keepalives_count=3, tcp_user_timeout=30_000)
        except psycopg.Error as exc:
            raise self._error("cannot reach", exc) from None
        try:
            raw.isolation_level = IsolationLevel.READ_COMMITTED
            raw.execute(f"SET lock_timeout = {int(self._busy_timeout_s * 1000)}")
            conn = PgConnection(raw)
            self._ensure_schema(conn)
        except BaseException as exc:
            raw.close()
            if isinstance(exc, psycopg.Error):
                raise self._error("cannot open", exc) from None
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _ensure_schema(self, conn: PgConnection) -> None:
        """This engine's schema, or a clear refusal (``schema_upgrade.ensure_current``: an
        empty database gets it under an advisory lock; an older one needs
        ``byod registry upgrade``; a newer one a newer engine)."""

        from engine.registry.schema_upgrade import ensure_current

        ensure_current(self._url, conn=conn.raw, auto=False,
                       busy_timeout_s=self._connect_timeout_s)

    def _forget_inherited(self) -> None:
        """In a forked child: the parent's socket is pointed at /dev/null and closed there,
        so nothing the child does ends the parent's session; the next call reconnects."""

        self._lock = threading.RLock()  # another thread may have held it at the fork
        conn, self._conn = self._conn, None
        if conn is None or conn.raw.closed:
            return
        try:
            fd = conn.raw.pgconn.socket
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
            conn.raw.close()
        except (OSError, psycopg.Error):
            pass

    def _broken(self) -> None:
        """Drop a connection the server or the network ended; the next call reconnects."""

        if self._conn is not None and self._conn.raw.broken:
            self._conn = None

    @contextmanager
    def _write(self) -> Iterator[PgConnection]:
        """One READ COMMITTED transaction; the roles lock the rows they decide on."""

        with self._lock:
            conn = self._connection()
            try:
                with conn.raw.transaction():
                    yield conn
            except psycopg.Error as exc:
                self._broken()
                raise self._error("a write failed on", exc) from None

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except psycopg.Error as exc:
                self._broken()
                raise self._error("a read failed on", exc) from None

    def _serialize(self, conn: Any, key: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def schema_version(self) -> int:
        rows = self._read("SELECT version_num FROM alembic_version")
        if len(rows) != 1 or not str(rows[0]["version_num"]).isdigit():
            raise RegistryError(f"the PostgreSQL registry at {self.where} has no single "
                                "schema revision")
        return int(rows[0]["version_num"])

    def verify(self) -> list[str]:
        """Every defect found, as one sentence each (empty = sound): the schema version,
        dangling references, stored JSON documents the engine could not read, and rollout
        summary counts that disagree with their rows. (PostgreSQL checks its own pages.)"""

        problems: list[str] = []
        try:
            version = self.schema_version()
        except RegistryError as exc:
            problems.append(str(exc))
        else:
            if version != SCHEMA_VERSION:
                problems.append(f"registry schema version {version}, expected "
                                f"{SCHEMA_VERSION}")
        problems += self.dangling_problems()
        problems += self.document_problems()
        problems += self.rollout_problems()
        return problems

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                try:
                    self._conn.raw.close()
                except psycopg.Error:
                    pass
            self._conn = None
