"""Keeping the registry's own schema at the revision this engine needs, on SQLite and on
PostgreSQL, with Alembic (the revisions are ``engine.registry.migrations``).

Why it is built this way:

* **Opening a store costs one query** (two on PostgreSQL) when the schema is already
  current: the revision is read with plain SQL on the store's own connection, and
  SQLAlchemy and Alembic are imported only when something has to change (the CLI's
  start-up time is watched).
* **One writer decides**: the revision is read again under a lock — SQLite's
  ``BEGIN IMMEDIATE``, PostgreSQL's ``pg_advisory_xact_lock`` — and Alembic runs inside that
  same transaction, so processes opening a new registry at once create it once, and a
  failed revision leaves the schema as it was.
* **Policy**: SQLite is upgraded when a store opens it (one embedded file, one engine). A
  PostgreSQL registry may be shared by several machines, so only an empty database gets
  the schema on first open; an older schema is refused until an operator runs
  ``byod registry upgrade``. A schema newer than this engine (an unknown revision, or a
  ``PRAGMA user_version`` above the head) is refused on both, before anything is written.
* **Adoption**: a SQLite file from an engine before Alembic has ``PRAGMA user_version = N``
  and no ``alembic_version`` table; it is stamped at revision N, then upgraded. The Alembic
  revision is the source of truth from then on; on SQLite every revision also keeps
  ``user_version`` and ``schema_migrations`` in step, so ``SqliteStore.schema_version()``
  reads the revision number and an older engine still refuses a newer file.

Revision ids are the schema version written on four digits (``"0007"`` is schema 7); the
head is ``engine.registry.ddl.SCHEMA_VERSION``. A PostgreSQL URL carries a password: only
``describe`` (host, port, database) ever appears in a message.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import unquote, urlsplit

from engine.errors import RegistryError
from engine.registry.ddl import SCHEMA_VERSION

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["HEAD", "Location", "current", "describe", "ensure_current", "is_postgres",
           "revision_id", "script_heads", "upgrade"]

Location = Union[str, "os.PathLike[str]"]

HEAD = SCHEMA_VERSION
# Every table of the registry: a database holding none of them is empty (fair to create in).
REGISTRY_TABLES = frozenset({
    "users", "journal", "leases", "audit", "rollouts", "progress", "alerts",
    "rollout_deployments", "rollout_counts", "api_tokens", "jobs"})
# One advisory lock key for every schema change of a PostgreSQL registry ("byodreg" + 1).
_PG_LOCK_KEY = 0x62796F6472656701
_UPGRADE_HINT = "run `byod registry upgrade`"


def revision_id(version: int) -> str:
    """The Alembic revision id of registry schema ``version``."""

    return f"{version:04d}"


_KNOWN = {revision_id(n): n for n in range(1, HEAD + 1)}


def is_postgres(location: Location) -> bool:
    return os.fspath(location).lower().startswith(("postgresql://", "postgres://"))


def describe(location: Location) -> str:
    """The location as messages show it: a file path, or ``host:port/database`` of a
    PostgreSQL URL (never its user or password)."""

    text = os.fspath(location)
    if not is_postgres(text):
        return text
    parts = urlsplit(text)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return f"{parts.hostname or 'localhost'}:{port}/{unquote(parts.path.lstrip('/'))}"


# -- what a registry holds -------------------------------------------------------------------

@dataclass(frozen=True)
class _Found:
    revision: str | None  # the alembic_version row(s); None: no table, or no row
    legacy: int  # SQLite's PRAGMA user_version (0 on PostgreSQL)
    tables: bool  # some registry table exists


def _number(found: _Found, where: str) -> int | None:
    """The registry's schema version (None: empty). Refuses a schema newer than this
    engine, and one whose tables exist without any version."""

    if found.revision is not None and found.revision not in _KNOWN:
        shown = int(found.revision) if found.revision.isdigit() else repr(found.revision)
        raise _newer(where, shown)
    if found.legacy > HEAD:
        raise _newer(where, found.legacy)
    if found.revision is not None:
        return _KNOWN[found.revision]
    if found.legacy:
        return found.legacy
    if found.tables:
        raise RegistryError(f"the registry {where} has registry tables but no schema "
                            "version: it was not made by this engine; restore a backup")
    return None


def _newer(where: str, found: object) -> RegistryError:
    return RegistryError(f"the registry {where} has schema version {found}, newer than this "
                         f"engine understands ({HEAD}); upgrade the engine")


def _behind(where: str, found: int) -> RegistryError:
    return RegistryError(f"the registry at {where} has schema {found}, this engine needs "
                         f"{HEAD}: {_UPGRADE_HINT}")


def _cell(row: Any, index: int = 0) -> Any:
    """Column ``index`` of a row from any driver (tuples, ``sqlite3.Row``, dict rows)."""

    if isinstance(row, dict):
        return list(row.values())[index]
    return row[index]


def _fast_sqlite(conn: Any) -> _Found:
    """One query on an open SQLite connection; a second only when there is no
    ``alembic_version`` table (a new file, or one from an engine before Alembic)."""

    try:
        rows = conn.execute("SELECT version_num, (SELECT user_version FROM pragma_user_version)"
                            " FROM alembic_version").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        legacy = int(_cell(conn.execute("PRAGMA user_version").fetchone()))
        return _Found(None, legacy, False)
    if not rows:
        legacy = int(_cell(conn.execute("PRAGMA user_version").fetchone()))
        return _Found(None, legacy, False)
    revision = ",".join(sorted(str(_cell(r)) for r in rows))
    return _Found(revision, int(_cell(rows[0], 1)), True)


def _fast_postgres(conn: Any) -> _Found:
    """The revision through an open PostgreSQL (DB-API) connection, ending the read
    transaction it opens so no lock on ``alembic_version`` stays held."""

    try:
        present = _cell(conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
                        .fetchone())
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall() \
            if present else []
    finally:
        if not getattr(conn, "autocommit", True):
            conn.rollback()
    revision = ",".join(sorted(str(_cell(r)) for r in rows)) or None
    return _Found(revision, 0, revision is not None)


def _locked_read(sa: "Connection", postgres: bool) -> _Found:
    """What the registry holds, read inside the caller's locked transaction."""

    if postgres:
        sa.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        names = {r[0] for r in sa.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        legacy = 0
    else:
        names = {r[0] for r in sa.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        legacy = int(sa.exec_driver_sql("PRAGMA user_version").scalar() or 0)
    revision = None
    if "alembic_version" in names:
        rows = sorted(str(r[0]) for r in sa.exec_driver_sql(
            "SELECT version_num FROM alembic_version"))
        revision = ",".join(rows) or None
    return _Found(revision, legacy, bool(names & REGISTRY_TABLES))


# -- the engines Alembic runs on -----------------------------------------------------------

def _secrets(location: Location) -> list[str]:
    text = os.fspath(location)
    if not is_postgres(text):
        return []
    password = urlsplit(text).password
    return [s for s in (text, password, unquote(password or "")) if s]


def _scrub(message: str, location: Location) -> str:
    for secret in sorted(_secrets(location), key=len, reverse=True):
        message = message.replace(secret, "[REDACTED]")
    return message


def _engine(location: Location, busy_timeout_s: float) -> "Engine":
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.pool import NullPool

    text = os.fspath(location)
    if is_postgres(text):
        url = make_url(text).set(drivername="postgresql+psycopg")
        # waits (the advisory lock, a table another session uses) end after the timeout
        # with an error rather than hanging an upgrade or a store's first open
        wait_ms = max(1000, int(busy_timeout_s * 1000))
        return create_engine(url, poolclass=NullPool, connect_args={
            "connect_timeout": max(1, int(busy_timeout_s)), "application_name": "byod",
            "options": f"-c lock_timeout={wait_ms}"})
    engine = create_engine(URL.create("sqlite", database=text), poolclass=NullPool,
                           connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # the transaction is ours (BEGIN IMMEDIATE below)
        dbapi.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        dbapi.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock first, then the check

    return engine


def _alembic_config(sa: "Connection") -> Any:
    from alembic.config import Config

    from engine.registry.migrations import DIRECTORY

    config = Config()
    config.set_main_option("script_location", str(DIRECTORY).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = sa
    return config


def script_heads() -> tuple[str, ...]:
    """The head revision(s) of the shipped script directory (a test checks it is
    ``revision_id(HEAD)`` alone)."""

    from alembic.script import ScriptDirectory

    from engine.registry.migrations import DIRECTORY

    return tuple(ScriptDirectory(str(DIRECTORY)).get_heads())


def _upgrade(location: Location, *, allow_behind: bool, busy_timeout_s: float,
             ) -> tuple[int | None, int]:
    """Under the lock: read the revision again, refuse what policy refuses, adopt a
    pre-Alembic SQLite file, run the missing revisions. ``(before, after)``."""

    from alembic import command
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    where, postgres = describe(location), is_postgres(location)
    engine = _engine(location, busy_timeout_s)
    try:
        with engine.connect() as sa, sa.begin():
            found = _locked_read(sa, postgres)
            before = _number(found, where)
            if before == HEAD and found.revision is not None:
                return before, HEAD
            if before is not None and before < HEAD and not allow_behind:
                raise _behind(where, before)
            config = _alembic_config(sa)
            if found.revision is None and before is not None:
                command.stamp(config, revision_id(before))  # adopt a pre-Alembic file
            command.upgrade(config, revision_id(HEAD))
        return before, HEAD
    except DBAPIError as exc:
        if not postgres and isinstance(exc.orig, sqlite3.Error):
            raise exc.orig from None  # the store maps busy and damaged files itself
        raise RegistryError(f"cannot bring the registry at {where} to schema {HEAD}: "
                            f"{_scrub(str(exc.orig), location)}") from None
    except CommandError as exc:
        raise RegistryError(f"cannot bring the registry at {where} to schema {HEAD}: "
                            f"{_scrub(str(exc), location)}") from None
    finally:
        engine.dispose()


# -- the API the stores and `byod registry upgrade` use -------------------------------------

def ensure_current(location: Location, *, conn: Any = None, auto: bool,
                   busy_timeout_s: float = 30.0) -> int:
    """Make sure the registry at ``location`` has this engine's schema; returns it.

    ``conn`` is the store's open DB-API connection: when given, the revision is read on it
    (the fast path; nothing else is imported). ``auto``: upgrade an older schema (SQLite
    stores), or refuse it with the ``byod registry upgrade`` hint (PostgreSQL stores). An
    empty registry always gets the schema; a newer one is always refused."""

    where, postgres = describe(location), is_postgres(location)
    if conn is not None:
        found = _fast_postgres(conn) if postgres else _fast_sqlite(conn)
        number = _number(found, where)
        if number == HEAD and found.revision is not None:
            return HEAD
        if number is not None and number < HEAD and not auto:
            raise _behind(where, number)
    return _upgrade(location, allow_behind=auto, busy_timeout_s=busy_timeout_s)[1]


def upgrade(location: Location, *, busy_timeout_s: float = 30.0) -> tuple[int | None, int]:
    """Bring the registry to this engine's schema: ``(before, after)``; ``before`` is None
    for an empty PostgreSQL database. A SQLite file that does not exist is not created."""

    _require_file(location)
    return _upgrade(location, allow_behind=True, busy_timeout_s=busy_timeout_s)


def current(location: Location, *, busy_timeout_s: float = 30.0) -> int | None:
    """The registry's schema version, read without writing anything (None: empty, or no
    SQLite file); a revision this engine does not know is refused as newer."""

    where = describe(location)
    if is_postgres(location):
        from sqlalchemy.exc import DBAPIError

        engine = _engine(location, busy_timeout_s)
        try:
            with engine.connect() as sa:
                names = {r[0] for r in sa.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
                rows: list[str] = []
                if "alembic_version" in names:
                    rows = sorted(str(r[0]) for r in sa.exec_driver_sql(
                        "SELECT version_num FROM alembic_version"))
                sa.rollback()
        except DBAPIError as exc:
            raise RegistryError(f"cannot read the registry at {where}: "
                                f"{_scrub(str(exc.orig), location)}") from None
        finally:
            engine.dispose()
        return _number(_Found(",".join(rows) or None, 0, bool(names & REGISTRY_TABLES)), where)
    path = Path(os.fspath(location))
    if not path.exists():
        return None
    with _read_only(path) as conn:
        try:
            found = _fast_sqlite(conn)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot read the registry {where}: {exc}") from exc
    return _number(found, where)


class _read_only:
    """A read-only SQLite connection that is closed on exit (``sqlite3``'s own context
    manager only ends the transaction)."""

    def __init__(self, path: Path):
        from urllib.parse import quote

        try:
            self.conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro",
                                        uri=True, timeout=30.0)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot read the registry {path}: {exc}") from exc

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _require_file(location: Location) -> None:
    if not is_postgres(location) and not Path(os.fspath(location)).exists():
        raise RegistryError(f"there is no registry at {describe(location)}: nothing to "
                            "upgrade (the first command that needs one creates it)")

