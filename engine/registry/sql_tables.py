"""``RegistryTables`` written once for SQLite and PostgreSQL, as a mixin over ``SqlCore``.

Pages are read by key range (``WHERE (k1, k2) > (?, ?) ORDER BY k1, k2 LIMIT ?``), so
each page costs an index seek whatever the table's size and the copy holds one page at a
time. Text keys are ordered by code point on both databases: SQLite's BINARY collation
does that already; on PostgreSQL the keys are compared ``COLLATE "C"``, because the
database's locale would order ``"a_b"`` and ``"aB"`` differently from SQLite and the
checksum is taken in key order. (The registry's PostgreSQL DDL declares its text columns
``COLLATE "C"`` as well, so the primary key's index serves that order.)

Rows are inserted with their ids as given. PostgreSQL numbers ``audit`` and ``alerts`` from
an identity sequence that explicit ids do not advance, so each load moves the sequence past
the largest id (``setval``), and the next entry the engine appends follows the copied ones;
SQLite's AUTOINCREMENT tracks explicit ids itself.
"""

from __future__ import annotations

from typing import Any, Sequence

from engine.registry.sql_core import SqlCore
from engine.registry.tables import TABLE_NAMES, Key, portable_row, table

__all__ = ["SqlTables"]


class SqlTables(SqlCore):
    """``RegistryTables`` over the registry's SQL tables (see the module docstring)."""

    def table_names(self) -> tuple[str, ...]:
        return TABLE_NAMES

    def table_key(self, table_name: str) -> tuple[str, ...]:
        return table(table_name).key

    def _ordered(self, column: str, kind: str) -> str:
        """A key column as it is compared and sorted: by code point on either database."""

        if kind == "text" and self.dialect != "sqlite":
            return f'{column} COLLATE "C"'
        return column

    def dump_rows(self, table_name: str, *, after: Key | None,
                  limit: int) -> list[dict[str, Any]]:
        spec = table(table_name)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        keys = [self._ordered(c, spec.kind(c)) for c in spec.key]
        where, params = "", []
        if after is not None:
            if len(after) != len(spec.key):
                raise ValueError(f"table {spec.name}: a key has {len(spec.key)} parts, "
                                 f"got {len(after)}")
            if len(keys) == 1:
                where = f" WHERE {keys[0]} > ?"
            else:
                where = f" WHERE ({', '.join(keys)}) > ({', '.join('?' * len(keys))})"
            params = list(after)
        rows = self._read(f"SELECT {', '.join(spec.column_names)} FROM {spec.name}{where} "
                          f"ORDER BY {', '.join(keys)} LIMIT ?", [*params, limit])
        return [portable_row(spec, r) for r in rows]

    def _insert_sql(self, table_name: str) -> str:
        spec = table(table_name)
        override = " OVERRIDING SYSTEM VALUE" if spec.identity and self.dialect != "sqlite" \
            else ""
        return (f"INSERT INTO {spec.name} ({', '.join(spec.column_names)}){override} "
                f"VALUES ({', '.join('?' * len(spec.columns))})")

    def load_rows(self, table_name: str, rows: Sequence[dict[str, Any]]) -> None:
        spec = table(table_name)
        if not rows:
            return
        sql = self._insert_sql(spec.name)
        names = spec.column_names  # the PostgreSQL DDL has SQLite's types: values go as they are
        values = [tuple(row.get(name) for name in names) for row in rows]
        with self._write() as conn:
            many = getattr(conn, "executemany", None)
            if many is not None:
                many(sql, values)
            else:
                for params in values:
                    conn.execute(sql, params)
            if spec.identity and self.dialect != "sqlite":
                # past the largest id: the next id the engine appends follows the copied ones
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{spec.name}', "
                    f"'{spec.identity}'), (SELECT COALESCE(max({spec.identity}), 0) + 1 "
                    f"FROM {spec.name}), false)", ())

    def count(self, table_name: str) -> int:
        spec = table(table_name)
        return int(self._read(f"SELECT count(*) AS n FROM {spec.name}")[0]["n"])

    def clear_rows(self, table_name: str) -> None:
        spec = table(table_name)
        with self._write() as conn:
            conn.execute(f"DELETE FROM {spec.name}", ())
