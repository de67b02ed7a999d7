"""Moving a registry from one store to another (``byod registry copy``), verified.

The copy goes table by table in key-ordered pages (``RegistryTables``), so memory holds
one page whatever the fleet's size, and rows arrive exactly as they were: the same user ids,
the same vault ciphertexts (the key never leaves the engine, so the target needs no
re-encryption), the same audit ids and timestamps. Then every table is read again on both
sides and its row count and checksum (``engine.registry.tables``) compared: a row lost,
added or changed on the way shows as a named table whose numbers differ.

Refusals come before anything is written: a target that already holds rows (unless
forced, which empties it first), a source that is being worked on (an unexpired lease, a
running job, a claimed rollout row: their writes would race the copy), and a copy of a
store onto itself. The caller shows locations through ``engine.config.registry_display``:
a PostgreSQL URL may carry a password.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

from engine.errors import RegistryError
from engine.registry.tables import RegistryTables, TableDigest, table

__all__ = [
    "TableCheck",
    "copy_tables",
    "live_work",
    "occupied_tables",
    "same_location",
    "table_digest",
    "verify_copy",
]

PAGE_SIZE = 1000


def _identity(location: str) -> tuple[Any, ...]:
    """What makes two locations the same store: a file's real path, a PostgreSQL server's
    host, port and database (whoever logs in), or the main Convex deployment."""

    text = location.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
        except ValueError:  # unbalanced brackets: no store will open it anyway
            return ("url", text)
        query = dict(parse_qsl(parts.query))
        try:
            host: str = parts.hostname or "localhost"
            port: Any = parts.port or 5432
        except ValueError:  # a port that is no number: compare the text after the login
            host, port = parts.netloc.rpartition("@")[2], None
        scheme = parts.scheme.lower().split("+", 1)[0]
        scheme = "postgresql" if scheme == "postgres" else scheme
        database = parts.path.lstrip("/") or query.get("dbname") or parts.username or ""
        return (scheme, (query.get("host") or host).lower(), str(query.get("port") or port),
                database)
    if text.startswith("convex:"):
        return ("convex", text.split(":", 1)[1])
    return ("file", str(Path(text).expanduser().resolve()))


def same_location(a: str, b: str) -> bool:
    """Whether two locations name the same store (a copy onto itself would empty it)."""

    if _identity(a) == _identity(b):
        return True
    if "://" in a or "://" in b or ":" in a.split("/")[0] or ":" in b.split("/")[0]:
        return False
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _pages(tables: RegistryTables, name: str,
           page_size: int) -> Iterator[list[dict[str, Any]]]:
    """Every row of one table, a page at a time, in key order, until an empty page (a store
    may return fewer rows than asked before the end: a page is "at most")."""

    key = table(name).key
    after: tuple[Any, ...] | None = None
    while rows := tables.dump_rows(name, after=after, limit=page_size):
        yield rows
        after = tuple(rows[-1][c] for c in key)


def occupied_tables(tables: RegistryTables) -> dict[str, int]:
    """The tables that hold rows, with their counts."""

    return {name: n for name in tables.table_names() if (n := tables.count(name))}


def live_work(source: RegistryTables, now: float, *, page_size: int = PAGE_SIZE) -> list[str]:
    """What is working on the source right now, one sentence each: unexpired leases (a
    rollout, a connect, a disconnect), running jobs with a live claim, rollout rows claimed
    by a worker. Their writes would land after the copy read the rows they change."""

    found: list[str] = []
    for rows in _pages(source, "leases", page_size):
        found += [f"lease {r['deployment']!r} is held by {r['holder']!r} until "
                  f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(r['expires_at']))}"
                  for r in rows if r["expires_at"] is not None and r["expires_at"] > now]
    for rows in _pages(source, "jobs", page_size):
        found += [f"job {r['job_id']} ({r['kind']} for user {r['user_id']!r}) is running"
                  for r in rows if r["state"] == "running"
                  and (r["claim_expires"] is None or r["claim_expires"] > now)]
    claimed: dict[str, int] = {}
    for rows in _pages(source, "rollout_deployments", page_size):
        for r in rows:
            if r["claimed_by"] and r["claim_expires"] is not None and r["claim_expires"] > now:
                claimed[r["rollout_id"]] = claimed.get(r["rollout_id"], 0) + 1
    found += [f"rollout {rid} has {n} deployment(s) claimed by a worker"
              for rid, n in sorted(claimed.items())]
    return found


def copy_tables(source: RegistryTables, target: RegistryTables, *,
                page_size: int = PAGE_SIZE,
                on_table: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy every table, in the target's load order, page by page; rows copied per table.
    ``on_table(name, rows)`` is told after each table (progress for a long copy)."""

    copied: dict[str, int] = {}
    for name in target.table_names():
        n = 0
        try:
            for rows in _pages(source, name, page_size):
                target.load_rows(name, rows)
                n += len(rows)
        except RegistryError as exc:
            raise RegistryError(
                f"the copy stopped in table {name} after {n} of its rows ({exc}); the target "
                "holds a partial copy: run the copy again with --force to replace it") from exc
        copied[name] = n
        if on_table is not None:
            on_table(name, n)
    return copied


@dataclass(frozen=True)
class TableCheck:
    """One table's numbers on both sides of a copy."""

    table: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str
    problem: str | None = None  # a side whose rows disagree with its own count, or order

    @property
    def ok(self) -> bool:
        return (self.problem is None and self.source_rows == self.target_rows
                and self.source_checksum == self.target_checksum)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def table_digest(tables: RegistryTables, name: str, *,
                 page_size: int = PAGE_SIZE) -> tuple[int, str, str | None]:
    """(count, checksum, problem) of one table on one store: the count the store reports,
    the checksum of its rows in key order, and what is wrong if the rows read do not agree
    with the count or arrive out of order."""

    digest = TableDigest(table(name))
    try:
        for rows in _pages(tables, name, page_size):
            digest.update(rows)
    except ValueError as exc:
        return tables.count(name), "", str(exc)
    count = tables.count(name)
    problem = None if digest.rows == count else \
        f"{digest.rows} rows read but the store counts {count}"
    return count, digest.hexdigest(), problem


def verify_copy(source: RegistryTables, target: RegistryTables, *,
                page_size: int = PAGE_SIZE) -> list[TableCheck]:
    """Counts and checksums of every table on both sides."""

    checks = []
    for name in source.table_names():
        s_count, s_sum, s_problem = table_digest(source, name, page_size=page_size)
        t_count, t_sum, t_problem = table_digest(target, name, page_size=page_size)
        problem = "; ".join(f"{side}: {p}" for side, p in (("source", s_problem),
                                                           ("target", t_problem)) if p)
        checks.append(TableCheck(name, s_count, t_count, s_sum, t_sum, problem or None))
    return checks
