"""``PostgresStore``: the ``RegistryStore`` on a PostgreSQL server
(``BYOD_REGISTRY=postgresql://user:password@host:port/database``), for fleets whose
registry is shared by several machines.

Why it is built this way:

* **The same queries as SQLite**: every role is a mixin over ``SqlCore`` shared with
  ``SqliteStore`` (``engine.registry.sql_users``, ``sql_roles``, ``sql_rollouts``, ...).
  The connection wrapper here turns their ``?`` placeholders into psycopg's ``%s`` (a
  literal ``%`` is doubled) and yields rows read by column name (or position).
* **psycopg 3 and its pool** (``psycopg_pool``): a store holds up to ``POOL_SIZE``
  connections, so a worker's slots, a service's request threads and its monitor write at
  once instead of queueing behind one connection (with a registry a few milliseconds
  away, one connection caps a process at a few dozen transactions a second). A thread
  inside a write keeps its connection for the whole call: a read or a nested write inside
  it runs in the same transaction. The first connection is made directly at open, so an
  unreachable server or a refused login says why, and the schema is checked on it. The
  connections are in autocommit mode: a read is one statement, never an open transaction
  left idle. TCP keepalives (a probe after 10 s idle, dropped after 3 unanswered 5 s apart)
  and ``tcp_user_timeout`` (30 s of unacknowledged data) make a call on a dead network fail
  within about half a minute, instead of hanging until the OS gives up; a broken connection
  is replaced by the pool. In a forked child the inherited sockets are pointed at
  ``/dev/null`` and closed there (the parent's sessions live on) and a new pool is opened.
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

import atexit
import logging
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
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

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

__all__ = ["POOL_SIZE", "PostgresStore", "pg_sql"]

POOL_SIZE = 8
"""Connections one store may hold at once: a worker's slots, a service's request threads
and its monitor each write on their own, without queueing behind one connection."""

FAST_S = 1.0
"""How long a call waits for the pool before making its own connection (see ``_take``)."""

# The pool logs its failed connection attempts; the store raises its own error naming the
# server (never the URL), so they are not printed on stderr when the app configures no
# logging (a configured handler still receives them).
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


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


@atexit.register
def _close_at_exit() -> None:
    """Close the pools a process left open: their threads then stop at once, instead of
    the interpreter waiting on them while it shuts down."""

    for store in list(_STORES):
        store.close()


class PostgresStore(SqlUsers, SqlJournal, SqlLeases, SqlAudit, SqlRollouts, SqlProgress,
                    SqlAlerts, SqlServe, SqlClaims, SqlTables, SqlVerify):
    """The registry in a PostgreSQL database. See the module docstring."""

    dialect = "postgresql"
    _for_update = "FOR UPDATE"
    _skip_locked = "FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0, pool_size: int = POOL_SIZE,
                 clock: Callable[[], float] = time.time):
        self._url = url
        try:
            parts = conninfo_to_dict(url)
        except psycopg.Error:  # the driver's message quotes the URL: not shown
            raise RegistryError("the PostgreSQL registry URL is not valid: expected "
                                "postgresql://user:password@host:port/database") from None
        if pool_size < 1:
            raise RegistryError("the PostgreSQL registry needs a pool of at least one "
                                "connection")
        self._password = str(parts.get("password") or "")
        host = str(parts.get("host") or "localhost")
        self.where = f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"
        self._busy_timeout_s = busy_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._pool_size = pool_size
        self._clock = clock
        self._open_lock = threading.Lock()
        self._local = threading.local()  # the connection this thread is inside a call on
        self._pool: ConnectionPool[Any] | None = None
        self._made: "weakref.WeakSet[psycopg.Connection[Any]]" = weakref.WeakSet()
        self._pid = -1
        _STORES.add(self)
        self._pool_here()  # connect + schema now: errors surface at open, not mid-flow

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    def __del__(self) -> None:
        """A store dropped without ``close()`` still closes its connections (as a lone
        psycopg connection would), in the process that opened them."""

        if getattr(self, "_pool", None) is not None:  # None too when __init__ failed
            try:
                self.close(timeout=1.0)
            except Exception:  # noqa: BLE001 - at collection or shutdown: nothing to tell
                pass

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

    # -- connections -----------------------------------------------------------------------
    def _connect_kwargs(self) -> dict[str, Any]:
        return dict(autocommit=True, row_factory=_row_factory,
                    connect_timeout=max(1, math.ceil(self._connect_timeout_s)),
                    application_name="byod", keepalives=1, keepalives_idle=10,
                    keepalives_interval=5, keepalives_count=3, tcp_user_timeout=30_000)

    def _configure(self, raw: psycopg.Connection[Any]) -> None:
        """Every connection's session settings (the pool calls this on each new one)."""

        raw.isolation_level = IsolationLevel.READ_COMMITTED
        raw.execute(f"SET lock_timeout = {int(self._busy_timeout_s * 1000)}")
        self._made.add(raw)

    def _connect_once(self) -> psycopg.Connection[Any]:
        """One connection made here and now, so a failure says why (the pool's own
        attempts run in its thread and would only time out)."""

        try:
            raw = psycopg.connect(self._url, **self._connect_kwargs())
        except psycopg.Error as exc:
            raise self._error("cannot reach", exc) from None
        try:
            self._configure(raw)
        except BaseException as exc:
            raw.close()
            if isinstance(exc, psycopg.Error):
                raise self._error("cannot open", exc) from None
            raise
        return raw

    def _pool_here(self) -> ConnectionPool[Any]:
        """This process's pool, opened on first use: the schema is checked (or created)
        on a first connection made directly, then the pool keeps one connection warm and
        grows to ``pool_size`` as threads need them."""

        pool = self._pool  # every call comes here: no lock once the pool is open
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._open_lock:
            if self._pool is not None and self._pid == os.getpid():
                return self._pool
            raw = self._connect_once()
            try:
                self._ensure_schema(raw)
            except psycopg.Error as exc:
                raise self._error("cannot open", exc) from None
            finally:
                raw.close()
            self._pool, self._pid = self._new_pool(), os.getpid()
            return self._pool

    def _new_pool(self) -> ConnectionPool[Any]:
        me = weakref.ref(self)  # the pool's threads must not keep a dropped store alive

        def configure(raw: psycopg.Connection[Any]) -> None:
            store = me()
            if store is None:
                raise RegistryError("the PostgreSQL registry store was dropped")
            store._configure(raw)

        pool: ConnectionPool[Any] = ConnectionPool(
            self._url, kwargs=self._connect_kwargs(), min_size=1, max_size=self._pool_size,
            configure=configure, timeout=self._connect_timeout_s, num_workers=1,
            name="byod-registry", open=False)
        pool.open(wait=False)
        return pool

    def _renew_pool(self, failing: ConnectionPool[Any]) -> None:
        """A new pool in place of one whose own connection attempts failed (an outage
        now over): the old one would retry only after its back-off, which grows with
        the outage. Its connections still lent out are closed when given back."""

        with self._open_lock:
            if self._pool is not failing:
                return
            self._pool = self._new_pool()
        failing.close(timeout=1.0)

    def _take(self) -> tuple[psycopg.Connection[Any], ConnectionPool[Any] | None]:
        """A connection for one call, and the pool to give it back to. When the pool has
        none to give within ``FAST_S`` (every one busy, or the server unreachable), one is
        made directly: a failure says at once why the registry cannot be reached, instead
        of waiting out the pool's retries; a success serves this call alone (closed after
        it) and, if the pool's own attempts had failed, replaces the pool."""

        pool = self._pool_here()
        try:
            return pool.getconn(timeout=min(FAST_S, self._connect_timeout_s)), pool
        except PoolTimeout:
            pass
        except PoolClosed:
            raise RegistryError(f"the PostgreSQL registry store for {self.where} is "
                                "closed") from None
        raw = self._connect_once()
        if pool.pop_stats().get("connections_errors"):
            self._renew_pool(pool)
        return raw, None

    def _ensure_schema(self, raw: psycopg.Connection[Any]) -> None:
        """This engine's schema, or a clear refusal (``schema_upgrade.ensure_current``: an
        empty database gets it under an advisory lock; an older one needs
        ``byod registry upgrade``; a newer one a newer engine)."""

        from engine.registry.schema_upgrade import ensure_current

        ensure_current(self._url, conn=raw, auto=False,
                       busy_timeout_s=self._connect_timeout_s)

    @contextmanager
    def _borrow(self) -> Iterator[PgConnection]:
        """The connection for this thread's call: the one it is already inside (a read or
        a nested write inside a write sees that write), else one from the pool, given back
        after the call (a broken one is replaced by the pool)."""

        inside: PgConnection | None = getattr(self._local, "conn", None)
        if inside is not None:
            yield inside
            return
        raw, pool = self._take()
        self._local.conn = conn = PgConnection(raw)
        try:
            yield conn
        finally:
            self._local.conn = None
            if pool is None:
                raw.close()
            else:
                pool.putconn(raw)

    def _forget_inherited(self) -> None:
        """In a forked child: every inherited socket is pointed at /dev/null and closed
        there, so nothing the child does ends the parent's sessions; the pool (whose
        threads did not survive the fork) is dropped, and the next call opens another."""

        self._open_lock = threading.Lock()  # another thread may have held it at the fork
        self._local = threading.local()
        self._pool = None
        for raw in list(self._made):
            if raw.closed:
                continue
            try:
                fd = raw.pgconn.socket
                null = os.open(os.devnull, os.O_RDWR)
                try:
                    os.dup2(null, fd)
                finally:
                    os.close(null)
                raw.close()
            except (OSError, psycopg.Error):
                pass
        self._made = weakref.WeakSet()

    @contextmanager
    def _write(self) -> Iterator[PgConnection]:
        """One READ COMMITTED transaction (a savepoint when nested); the roles lock the
        rows they decide on."""

        with self._borrow() as conn:
            try:
                with conn.raw.transaction():
                    yield conn
            except psycopg.Error as exc:
                raise self._error("a write failed on", exc) from None

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        with self._borrow() as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except psycopg.Error as exc:
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

    def close(self, timeout: float = 5.0) -> None:
        """Close this process's pool (a connection in use is closed when given back);
        a later call opens another. An inherited pool is only forgotten."""

        with self._open_lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close(timeout=timeout)
