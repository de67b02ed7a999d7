"""What the registry's SQL role mixins may use of a store, whatever the database.

Every role (journal, leases, audit, rollouts, progress, alerts, the service's tables, a
rollout's row claims) is written once, as a mixin over ``SqlCore``, and runs on SQLite and
on PostgreSQL alike. A store class provides the members declared here: its clock, one write
transaction (``_write``), reads (``_read``), a user's row inside a write (``_get``), the
audit append, and the few words where the dialects differ. Queries use ``?`` placeholders
and read columns by name; a PostgreSQL connection translates the placeholders.

``_for_update`` follows a ``SELECT`` inside a write whose answer decides what is written
(a lease's holder, a row's status): empty on SQLite, whose writes hold the database's one
write lock from ``BEGIN IMMEDIATE``; ``FOR UPDATE`` on PostgreSQL, so concurrent writers of
the same row wait instead of deciding on a stale read. ``_skip_locked`` follows a claim's
``SELECT`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so workers claiming rows at once each
take different rows instead of queueing behind each other.

Where the row that would be locked may not exist yet, a role either inserts it first
(``INSERT … ON CONFLICT DO NOTHING``, then the locking ``SELECT``) or, when there is no row
to lock at all (a user's one open job), calls ``_serialize(conn, key)``: a no-op on SQLite,
a transaction-scoped advisory lock on PostgreSQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable

if TYPE_CHECKING:
    from engine.ports.registry import UserConfig

__all__ = ["SqlCore"]


class SqlCore:
    """Declarations (``SqliteStore`` and ``PostgresStore`` define them) and SQLite's
    dialect words, which ``PostgresStore`` overrides."""

    dialect: str = "sqlite"
    _for_update: str = ""
    _skip_locked: str = ""

    if TYPE_CHECKING:
        _clock: Callable[[], float]

        def _write(self) -> ContextManager[Any]: ...

        def _read(self, sql: str, params: Iterable[Any] = ()) -> list[Any]: ...

        def _get(self, conn: Any, user_id: str) -> UserConfig: ...

        def _audit(self, conn: Any, user_id: str, event: str,
                   detail: dict[str, Any] | None) -> None: ...

    def _serialize(self, conn: Any, key: str) -> None:
        """Make writers of ``key`` wait for each other until this write ends (SQLite: they
        already do, one writer at a time)."""
