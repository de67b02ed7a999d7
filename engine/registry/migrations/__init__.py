"""The registry's schema history as an Alembic environment, shipped inside the package.

``engine.registry.schema_upgrade`` configures Alembic in code (no ``alembic.ini``): the
script location is this directory, and ``env.py`` runs on the connection and transaction
the caller already holds (the write lock is taken before Alembic looks at anything).

Revisions are ``0001`` .. ``0007`` (the number is the registry schema version):

* **SQLite**: revision N runs exactly ``engine.registry.ddl.MIGRATIONS[N-1]`` and keeps the
  pre-Alembic bookkeeping in step (``PRAGMA user_version = N`` and a ``schema_migrations``
  row), so a file upgraded here is the file the hand-rolled loop built, and an engine from
  before Alembic still refuses a file newer than itself.
* **PostgreSQL**: support began at registry schema 7. Revisions 1 to 6 do nothing there and
  revision 7 creates the whole schema (``engine.registry.pg_ddl``), so an empty database
  goes straight to the v7 baseline.

A later change of the schema is a new revision ``0008`` (down revision ``0007``, shaped
as ``script.py.mako``) that changes both dialects and ends, on SQLite, with
``mark_sqlite(8)``; ``engine.registry.ddl.SCHEMA_VERSION`` moves to its number.
Downgrades are not supported: a registry moves forward or is restored from a backup.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.registry.ddl import MIGRATIONS

__all__ = ["DIRECTORY", "dialect", "mark_sqlite", "no_downgrade", "run_script", "run_sqlite",
           "sqlite_statements"]

DIRECTORY = Path(__file__).resolve().parent


def dialect() -> str:
    """The dialect of the connection the running revision migrates (``sqlite``,
    ``postgresql``)."""

    from alembic import op

    return str(op.get_bind().dialect.name)


def sqlite_statements(script: str) -> list[str]:
    """The statements of one DDL script, split on ``;`` (none contains one in a string) and
    run as the pre-Alembic loop ran them (unstripped: the schema text is the same)."""

    return [s for s in script.split(";") if s.strip()]


def run_script(script: str) -> None:
    """Run every statement of ``script`` on the revision's connection, as written (no bind
    parameter parsing: the DDL holds literal ``:`` and ``%``)."""

    from alembic import op

    bind = op.get_bind()
    for statement in sqlite_statements(script):
        bind.exec_driver_sql(statement)


def run_sqlite(version: int) -> None:
    """Registry schema ``version`` (1 to 7) on SQLite: the frozen pre-Alembic DDL, then
    ``mark_sqlite``."""

    from alembic import op

    op.get_bind().exec_driver_sql("CREATE TABLE IF NOT EXISTS schema_migrations "
                                  "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    run_script(MIGRATIONS[version - 1])
    mark_sqlite(version)


def mark_sqlite(version: int) -> None:
    """The bookkeeping the pre-Alembic engine kept, in step with the revision: a
    ``schema_migrations`` row and ``PRAGMA user_version`` (which an engine from before
    Alembic reads to refuse a newer file). Every SQLite revision ends with it."""

    from alembic import op

    bind = op.get_bind()
    bind.exec_driver_sql("INSERT OR REPLACE INTO schema_migrations VALUES (?, ?)",
                         (version, time.time()))
    bind.exec_driver_sql(f"PRAGMA user_version = {int(version)}")


def no_downgrade(revision: str) -> None:
    raise RuntimeError(f"registry schema revision {revision} cannot be downgraded: "
                       "restore a backup of the registry instead")
