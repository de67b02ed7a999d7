"""Pure helpers for copying a user's content between deployments (disconnect/migrate to
main, and connect's copy from main).

* ``copy_order``: the user-located tables with every referenced table before the tables
  that reference it; tables in a reference cycle (including a table that references
  itself, like ``messages.parentMessageId``) share a group, and references inside a group
  may have to be patched in after the group is imported.
* ``IdMaps`` + ``remap_value``: rewrite every ``id(table)`` in a value — top-level or
  nested in objects, arrays, records and unions — from the source deployment's ids to
  the destination's, guided by the validator (values under ``any`` are left as they are).
* ``prepare`` / ``final_form``: what a page imports now, what is deferred, and what the
  document must look like on the destination once everything is copied.
* ``TableDigest``: an order-independent checksum over documents (``_creationTime`` left
  out; the destination assigns its own).

No I/O here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from engine.convex.values import to_convex_json
from engine.errors import DisconnectError
from engine.schema.models import FieldDef, Table

__all__ = [
    "IdMaps",
    "Prepared",
    "TableDigest",
    "Unresolved",
    "copy_order",
    "final_form",
    "prepare",
    "referenced_tables",
    "remap_value",
]


class Unresolved(Exception):
    """A reference whose target has no new id (yet)."""

    def __init__(self, table: str, old_id: str):
        self.table = table
        self.old_id = old_id
        super().__init__(f"{table}:{old_id}")


def referenced_tables(validator: Any) -> set[str]:
    """Every table an ``id(...)`` anywhere inside ``validator`` points to."""

    kind = validator.kind
    if kind == "id":
        return {validator.table}
    if kind == "array":
        return referenced_tables(validator.element)
    if kind == "object":
        out: set[str] = set()
        for f in validator.fields.values():
            out |= referenced_tables(f.type)
        return out
    if kind == "record":
        return referenced_tables(validator.keys) | referenced_tables(validator.values)
    if kind == "union":
        out = set()
        for m in validator.members:
            out |= referenced_tables(m)
        return out
    return set()


def copy_order(tables: Mapping[str, Table]) -> tuple[list[str], dict[str, frozenset[str]]]:
    """(order, group of each table): parents before children, ties in schema order."""

    names = list(tables)
    position = {n: i for i, n in enumerate(names)}
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_nodes_from(names)
    for name, table in tables.items():
        for f in table.fields.values():
            for ref in referenced_tables(f.type):
                if ref in tables:
                    g.add_edge(ref, name)  # ref must be copied before name
    cond = nx.condensation(g)
    members = {c: sorted(cond.nodes[c]["members"], key=position.__getitem__) for c in cond}
    order_c = nx.lexicographical_topological_sort(
        cond, key=lambda c: position[members[c][0]])
    order: list[str] = []
    group: dict[str, frozenset[str]] = {}
    for c in order_c:
        order.extend(members[c])
        for n in members[c]:
            group[n] = frozenset(members[c])
    return order, group


@dataclass
class IdMaps:
    """old id → new id per table, plus which tables are completely copied."""

    maps: dict[str, dict[str, str]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    tables: frozenset[str] = frozenset()  # the tables being copied

    def resolve(self, table: str, old: str) -> str:
        if table not in self.tables:
            return old  # not copied (main-located or a system table): stays as it is
        new = self.maps.get(table, {}).get(old)
        if new is None:
            raise Unresolved(table, old)
        return new

    def known(self, table: str, old: str) -> bool:
        return table not in self.tables or old in self.maps.get(table, {})

    def add(self, table: str, old_ids: Iterable[str], new_ids: Iterable[str]) -> None:
        self.maps.setdefault(table, {}).update(zip(old_ids, new_ids))

    def to_json(self) -> dict[str, Any]:
        return {"maps": self.maps, "done": sorted(self.done)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, tables: Iterable[str]) -> IdMaps:
        data = data or {}
        return cls(maps={t: dict(m) for t, m in (data.get("maps") or {}).items()},
                   done=set(data.get("done") or ()), tables=frozenset(tables))


def _object_fits(v: Any, x: dict[str, Any]) -> bool:
    required = {k for k, f in v.fields.items() if not f.optional}
    return set(x) <= set(v.fields) and required <= set(x)


def remap_value(v: Any, x: Any, ids: IdMaps) -> Any:
    """``x`` with every reference rewritten; raises ``Unresolved`` for one without a new id."""

    kind = v.kind
    if kind == "id":
        return ids.resolve(v.table, x) if isinstance(x, str) else x
    if kind == "array":
        return [remap_value(v.element, e, ids) for e in x] if isinstance(x, list) else x
    if kind == "object":
        if not isinstance(x, dict):
            return x
        return {k: remap_value(v.fields[k].type, val, ids) if k in v.fields else val
                for k, val in x.items()}
    if kind == "record":
        if not isinstance(x, dict):
            return x
        return {remap_value(v.keys, k, ids): remap_value(v.values, val, ids)
                for k, val in x.items()}
    if kind == "union":
        return _remap_union(v, x, ids)
    return x


def _remap_union(v: Any, x: Any, ids: IdMaps) -> Any:
    members = list(v.members)
    if isinstance(x, str):
        id_members = [m for m in members if m.kind == "id"]
        for m in id_members:
            if x in ids.maps.get(m.table, {}) or m.table not in ids.tables:
                return ids.resolve(m.table, x)
        plain = any(m.kind == "string" or (m.kind == "literal" and m.value == x)
                    for m in members)
        if plain or not id_members:
            return x
        raise Unresolved(id_members[0].table, x)
    if isinstance(x, dict):
        for m in members:
            if m.kind == "object" and _object_fits(m, x):
                return remap_value(m, x, ids)
        for m in members:
            if m.kind == "record":
                return remap_value(m, x, ids)
        return x
    if isinstance(x, list):
        for m in members:
            if m.kind == "array":
                return remap_value(m, x, ids)
    return x


@dataclass
class Prepared:
    """One source document made ready for import."""

    fields: dict[str, Any]  # what is imported now (no _id / _creationTime)
    deferred: dict[str, Any]  # field → raw source value, patched after the group is in
    dangling: list[tuple[str, str, str]]  # (field, table, old id) with no target at all


def _field_form(name: str, fdef: FieldDef | None, value: Any, ids: IdMaps, table: str,
                doc_id: str, pending: frozenset[str],
                source: str = "the user's deployment") -> tuple[str, Any]:
    """("ok", value) | ("defer", raw) | ("drop", (table, id)) for one top-level field."""

    if fdef is None:
        return "ok", value
    try:
        return "ok", remap_value(fdef.type, value, ids)
    except Unresolved as exc:
        if exc.table in pending and exc.table not in ids.done:
            if not fdef.optional:
                raise DisconnectError(
                    f"{table}.{name} of document {doc_id} references {exc.table} {exc.old_id}, "
                    "which is not copied yet, and the field is required; make it optional "
                    "or break the reference cycle") from None
            return "defer", value
        if not fdef.optional:
            raise DisconnectError(
                f"{table}.{name} of document {doc_id} references {exc.table} {exc.old_id}, "
                f"which does not exist on {source} (a dangling reference in a "
                "required field); fix or delete that document and re-run") from None
        return "drop", (exc.table, exc.old_id)


def prepare(table: Table, doc: Mapping[str, Any], ids: IdMaps,
            pending: frozenset[str], source: str = "the user's deployment") -> Prepared:
    """Split one exported document into importable fields and deferred references.
    ``pending``: tables of the current copy group that may still be copied; ``source``
    names where the documents come from (in errors)."""

    doc_id = str(doc.get("_id", "?"))
    out = Prepared({}, {}, [])
    for name, value in doc.items():
        if name in ("_id", "_creationTime"):
            continue
        how, result = _field_form(name, table.fields.get(name), value, ids, table.name,
                                  doc_id, pending, source)
        if how == "ok":
            out.fields[name] = result
        elif how == "defer":
            out.deferred[name] = result
        else:
            out.dangling.append((name, result[0], result[1]))
    return out


def final_form(table: Table, doc: Mapping[str, Any], ids: IdMaps) -> dict[str, Any]:
    """The document as it must read on the destination once every table is copied:
    ``_id`` mapped, references remapped, optional dangling references absent, no
    ``_creationTime``. Raises ``Unresolved`` if the document itself was not copied."""

    new_id = ids.resolve(table.name, str(doc["_id"]))
    prepared = prepare(table, doc, ids, frozenset())
    return {"_id": new_id, **prepared.fields}


def canonical(doc: Mapping[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "_creationTime"}
    return json.dumps(to_convex_json(body), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


class TableDigest:
    """Count + order-independent checksum (sum of per-document sha256 mod 2**256)."""

    _MOD = 1 << 256

    def __init__(self) -> None:
        self.count = 0
        self._acc = 0

    def add(self, doc: Mapping[str, Any]) -> None:
        h = hashlib.sha256(canonical(doc).encode("utf-8")).digest()
        self._acc = (self._acc + int.from_bytes(h, "big")) % self._MOD
        self.count += 1

    @property
    def hexdigest(self) -> str:
        return f"{self._acc:064x}"
