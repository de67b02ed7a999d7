"""The registry as plain tables: what ``byod registry copy`` moves and verifies.

A store that can be copied implements ``RegistryTables``: its tables' names and keys, a
page of rows in key order, an insert of rows exactly as given (ids, ciphertexts and
timestamps unchanged), a count and an emptying. The copy itself
(``engine.registry.copy``) uses nothing else, so SQLite, PostgreSQL and the main Convex
deployment move into one another through the same loop.

``TABLES`` describes every registry table of the current schema (``engine.registry.ddl``):
its columns, each with a kind, and its primary key. Rows travel as dicts in the *portable
form*: ``text`` as ``str``, ``int`` as ``int``, ``real`` as ``float``, ``bool`` as the
integers 0/1 the SQLite schema stores, ``json`` as the JSON text the engine wrote, and NULL
as ``None``. A backend converts to and from its own storage (a boolean column, a stored
object) at its edge.

The checksum of a table is SHA-256 over one canonical line per row, in key order. The
canonical form is chosen so SQLite, PostgreSQL and Convex give the same bytes for the same
data:

* every value is normalised by its column's kind, not by the type the driver returned:
  ``real`` → float (an integer stored in a REAL column counts as the same number), ``int``
  and ``bool`` → int (``True`` → 1), ``text`` as it is (a value of another type, such as
  a BLOB SQLite accepted, is tagged with its type), NULL → null;
* ``json`` columns are compared as *parsed* JSON (then written with sorted keys), so a
  backend that stores documents as objects or re-spaces them agrees with one that keeps the
  text; a value that is not JSON is compared as its text, tagged, so it never equals a
  parsed document;
* a line is the JSON array of the row's values in column order (floats in their shortest
  round-tripping form, non-ASCII kept, no spaces), followed by a newline;
* key order is by code point for text keys and by value for integer keys — what SQLite's
  BINARY collation and PostgreSQL's ``COLLATE "C"`` both give, whatever the database's
  locale.

Pure: no I/O. The checksum streams (``TableDigest``), so a table of 100k rows never sits in
memory.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import (
    Any,
    Callable,
    Iterable,
    Literal,
    Protocol,
    Sequence,
    runtime_checkable,
)

__all__ = [
    "ColumnKind",
    "Key",
    "RegistryTables",
    "Table",
    "TableDigest",
    "TABLES",
    "TABLES_SCHEMA_VERSION",
    "TABLE_NAMES",
    "canonical_line",
    "canonical_value",
    "checksum",
    "key_of",
    "portable_row",
    "table",
]

ColumnKind = Literal["text", "int", "real", "bool", "json"]
Key = tuple[Any, ...]


@dataclass(frozen=True)
class Table:
    """One registry table: its columns (name, kind) in schema order, its primary key, and
    the integer column the database numbers itself (``audit.id``, ``alerts.id``), if any."""

    name: str
    columns: tuple[tuple[str, ColumnKind], ...]
    key: tuple[str, ...]
    identity: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def kind(self, column: str) -> ColumnKind:
        return dict(self.columns)[column]

    @cached_property
    def _convert(self) -> tuple[tuple[str, ColumnKind], ...]:
        """The columns whose driver values may need converting to the portable form."""

        return tuple((c, k) for c, k in self.columns if k in ("bool", "int", "json"))


def _cols(spec: str) -> tuple[tuple[str, ColumnKind], ...]:
    """``"a text, b int"`` → ``(("a", "text"), ("b", "int"))``."""

    out: list[tuple[str, ColumnKind]] = []
    for part in spec.split(","):
        name, kind = part.split()
        assert kind in ("text", "int", "real", "bool", "json"), kind
        out.append((name, kind))  # type: ignore[arg-type]
    return tuple(out)


# The schema these descriptions follow; tests compare them with a fresh registry's columns.
TABLES_SCHEMA_VERSION = 7

# In load order: a table comes after the tables it refers to (journal → users).
TABLES: tuple[Table, ...] = (
    Table("users", _cols(
        "user_id text, url_ct text, key_ct text, connection_status text, "
        "deployment_status text, deployment_progress text, schema_version text, "
        "schema_fingerprint text, last_schema_deploy real, last_connection_test real, "
        "connection_error text, entitled bool, created_at real, updated_at real"),
        ("user_id",)),
    Table("journal", _cols(
        "user_id text, plan_id text, step_id text, seq int, kind text, status text, "
        "version text, cursor text, processed int, attempts int, error text, "
        "fingerprint text, started_at real, completed_at real, created_at real, "
        "updated_at real"),
        ("user_id", "plan_id", "step_id")),
    Table("leases", _cols(
        "deployment text, holder text, acquired_at real, expires_at real, host text, "
        "pid int, pid_started real, pid_namespace text, renewed_at real"),
        ("deployment",)),
    Table("audit", _cols("id int, at real, user_id text, event text, detail json"),
          ("id",), identity="id"),
    Table("rollouts", _cols(
        "rollout_id text, data json, created_at real, updated_at real, layout text"),
        ("rollout_id",)),
    Table("rollout_deployments", _cols(
        "rollout_id text, user_id text, position int, status text, data json, "
        "updated_at real, wave int, claimed_by text, claim_expires real"),
        ("rollout_id", "user_id")),
    Table("rollout_counts", _cols("rollout_id text, status text, n int, updated_at real"),
          ("rollout_id", "status")),
    Table("progress", _cols("kind text, user_id text, doc json, updated_at real"),
          ("kind", "user_id")),
    Table("alerts", _cols(
        "id int, event text, payload json, created_at real, attempts int, next_at real, "
        "last_error text, delivered_at real, channel text"),
        ("id",), identity="id"),
    Table("api_tokens", _cols(
        "token_id text, name text, token_hash text, scopes text, created_at real, "
        "last_used_at real, revoked_at real"),
        ("token_id",)),
    Table("jobs", _cols(
        "job_id text, kind text, user_id text, state text, params json, stage text, "
        "progress json, result json, error text, created_at real, updated_at real, "
        "claimed_by text, claim_expires real"),
        ("job_id",)),
)
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)
_BY_NAME = {t.name: t for t in TABLES}


def table(name: str) -> Table:
    """The description of one registry table; a clear error for any other name (a table
    name reaches SQL text, so only these names ever do)."""

    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a registry table (tables: "
                         f"{', '.join(TABLE_NAMES)})") from None


@runtime_checkable
class RegistryTables(Protocol):
    """A registry store seen as tables, for copying between stores.

    ``dump_rows`` returns at most ``limit`` rows in the portable form (module docstring)
    whose keys come strictly after ``after`` (``None``: from the first), in key order; only
    an empty page means the end.
    ``load_rows`` inserts rows exactly as given, in one transaction, and keeps the
    store's own numbering (an identity sequence) ahead of the ids it was given."""

    def table_names(self) -> tuple[str, ...]: ...

    def table_key(self, table: str) -> tuple[str, ...]: ...

    def dump_rows(self, table: str, *, after: Key | None,
                  limit: int) -> list[dict[str, Any]]: ...

    def load_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> None: ...

    def count(self, table: str) -> int: ...

    def clear_rows(self, table: str) -> None: ...


def key_of(spec: Table, row: dict[str, Any]) -> Key:
    return tuple(row[c] for c in spec.key)


def _as_int(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # Convex numbers, or a driver's float for an integer
    return value


def _canon_text(value: Any) -> Any:
    if value is None or type(value) is str:
        return value
    return {"$" + type(value).__name__: str(value)}  # SQLite keeps whatever it was given


def _canon_real(value: Any) -> Any:
    if value is None:
        return None
    if type(value) is float and math.isfinite(value):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        return number if math.isfinite(number) else {"$float": repr(number)}
    return {"$text": str(value)}


def _canon_int(value: Any) -> Any:
    return value if value is None or type(value) is int else _as_int(value)


def _canon_json(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value  # NULL, or a backend that stores documents as objects
    try:
        return json.loads(value)
    except ValueError:
        return {"$unparsed": value}


_CANON: dict[str, Callable[[Any], Any]] = {
    "text": _canon_text, "real": _canon_real, "int": _canon_int, "bool": _canon_int,
    "json": _canon_json}

def _unusual(value: Any) -> Any:
    """A value JSON has no type for (a BLOB where text belongs): tagged with its type."""

    return {"$" + type(value).__name__: str(value)}


# one encoder for every line (json.dumps with options builds a new one per call)
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                            allow_nan=False, default=_unusual)
_NAMES = {t.name: t.column_names for t in TABLES}


_Plan = tuple[tuple[str, ...], tuple[tuple[int, Callable[[Any], Any]], ...]]


def _plan(spec: Table) -> _Plan:
    """A table's column names, and the positions whose values are normalised (with what)."""

    return (spec.column_names,
            tuple((i, _CANON[k]) for i, (_, k) in enumerate(spec.columns) if k != "text"))


_LINE_PLAN = {t.name: _plan(t) for t in TABLES}


def canonical_value(kind: ColumnKind, value: Any) -> Any:
    """One value in the checksum's form (module docstring)."""

    return _CANON[kind](value)


def canonical_line(spec: Table, row: dict[str, Any]) -> bytes:
    """The bytes one row adds to its table's checksum."""

    names, fixes = _LINE_PLAN.get(spec.name) or _plan(spec)
    get = row.get
    values = [get(name) for name in names]  # text as it is: str or null (else tagged)
    for i, canon in fixes:
        values[i] = canon(values[i])
    return (_ENCODER.encode(values) + "\n").encode("utf-8")


def portable_row(spec: Table, row: Any) -> dict[str, Any]:
    """A driver's row in the portable form (booleans as 0/1, JSON documents as text): a
    mapping read by column name, or a sequence of the table's columns in schema order (a
    ``sqlite3.Row`` of ``SELECT`` of ``column_names``)."""

    names = _NAMES.get(spec.name) or spec.column_names
    if isinstance(row, dict):  # exactly the selected columns: copied at C speed
        out = dict(row) if len(row) == len(names) else {n: row[n] for n in names}
    else:
        out = dict(zip(names, row))
    for name, kind in spec._convert:
        value = out[name]
        if kind in ("bool", "int") and isinstance(value, bool):
            out[name] = int(value)
        elif kind == "json" and value is not None and not isinstance(value, str):
            out[name] = json.dumps(value, sort_keys=True)
    return out


class TableDigest:
    """The running count and SHA-256 of one table's rows, fed page by page in key order;
    refuses rows out of order (a backend ordering keys differently would otherwise give a
    different checksum for the same data, or skip rows while paging)."""

    def __init__(self, spec: Table) -> None:
        self.spec = spec
        self.rows = 0
        self._hash = hashlib.sha256()
        self._last: Key | None = None

    def update(self, rows: Iterable[dict[str, Any]]) -> None:
        ints = [kind in ("int", "bool") for kind in map(self.spec.kind, self.spec.key)]
        for row in rows:
            key = tuple(_as_int(row[c]) if i else row[c] for c, i in zip(self.spec.key, ints))
            if self._last is not None and not key > self._last:
                raise ValueError(f"table {self.spec.name}: rows are not in key order "
                                 f"(a key follows a key not smaller than it)")
            self._last = key
            self._hash.update(canonical_line(self.spec, row))
            self.rows += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def checksum(spec: Table, rows: Iterable[dict[str, Any]]) -> str:
    """The checksum of a whole table given as rows in key order."""

    digest = TableDigest(spec)
    digest.update(rows)
    return digest.hexdigest()
