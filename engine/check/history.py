"""Rules across versions: the version graph (parents, cycles, heads, numbering) and the
migration hints and consent of each version, which may name tables and fields of its
parents. Pure: versions in, ``Problem`` list out. Codes: docs/lint-codes.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from engine.config import EngineConfig
from engine.errors import Problem, VersionError
from engine.schema.models import MigrationOp, SchemaVersion, Table

if TYPE_CHECKING:
    from engine.plan.graph import VersionGraph

__all__ = ["VersionContext", "check_graph", "check_hints"]


class VersionContext:
    """Collects the problems of one version, locating each in its file."""

    def __init__(self, version: SchemaVersion, config: EngineConfig, out: list[Problem]):
        self.v = version
        self.config = config
        self.out = out
        self.file = version.source.path if version.source else f"<version {version.id}>"

    def add(self, code: str, location: str, message: str, hint: str = "",
            severity: str = "error") -> None:
        line = self.v.source.line_of(location) if self.v.source else None
        self.out.append(Problem(self.file, line, location, message, hint, code, severity))


# ---------------------------------------------------------------------------------------
# Migration hints and consent
# ---------------------------------------------------------------------------------------

_REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "backfill": (("field",),),
    "rename": (("from_field",), ("field",)),
    "copy": (("from_field",), ("field",)),
    "map_values": (("field",), ("mapping",)),
    "convert": (("field",), ("mapping", "default", "code")),
    "drop_field": (("field",),),
    "delete_rows": (),
    "custom": (("code",),),
}
_SPELLING = {"from_field": "from", "field": "field (or to)"}


def _tables_around(v: SchemaVersion, parents: Sequence[SchemaVersion]) -> dict[str, list[Table]]:
    out: dict[str, list[Table]] = {}
    for version in (v, *parents):
        for name, t in version.schema.tables.items():
            out.setdefault(name, []).append(t)
    return out


def check_hints(ctx: VersionContext, parents: Sequence[SchemaVersion]) -> None:
    tables = _tables_around(ctx.v, parents)
    for i, op in enumerate(ctx.v.migrations):
        loc = f"migrations.{i}"
        for options in _REQUIRED[op.op]:
            if all(getattr(op, k) in (None, {}, "") for k in options):
                ctx.add("BYOD-E162", loc, f"{op.op} hint needs " + " or ".join(
                    f"`{_SPELLING.get(k, k)}`" for k in options), _example(op))
        if op.table not in tables:
            ctx.add("BYOD-E160", loc, f"{op.op} hint names table {op.table!r}, which is not in "
                    f"version {ctx.v.id} or its parents", "fix the table name")
            continue
        for key in ("from_field", "field"):
            name = getattr(op, key)
            if name and not any(name.split(".")[0] in t.fields for t in tables[op.table]):
                ctx.add("BYOD-E161", loc, f"{op.op} hint names field {name!r} of table "
                        f"{op.table!r}, which is not in version {ctx.v.id} or its parents",
                        "fix the field name")
    c = ctx.v.consent
    for kind, entries in (("drop_tables", c.drop_tables), ("delete_rows", c.delete_rows)):
        for j, name in enumerate(entries):
            if name not in tables:
                ctx.add("BYOD-E163", f"consent.{kind}.{j}", f"consent.{kind} names table "
                        f"{name!r}, which is not in version {ctx.v.id} or its parents",
                        "fix the table name")
    for j, entry in enumerate(c.drop_fields):
        table, _, field = entry.partition(".")
        if not field or table not in tables or not any(
                field.split(".")[0] in t.fields for t in tables[table]):
            ctx.add("BYOD-E163", f"consent.drop_fields.{j}", f"consent.drop_fields entry "
                    f"{entry!r} does not name a table.field of version {ctx.v.id} or its "
                    "parents", "write it as table.field, e.g. conversations.model")


def _example(op: MigrationOp) -> str:
    return {
        "backfill": "{op: backfill, table: T, field: F, value: V}",
        "rename": "{op: rename, table: T, from: OLD, to: NEW}",
        "copy": "{op: copy, table: T, from: SOURCE, to: TARGET}",
        "map_values": "{op: map_values, table: T, field: F, mapping: {old: new}}",
        "convert": "{op: convert, table: T, field: F, code: \"return Number(value)\"}",
        "drop_field": "{op: drop_field, table: T, field: F}",
        "custom": "{op: custom, table: T, code: \"return null\"}",
    }.get(op.op, "")


# ---------------------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------------------


def _check_ids_and_numbers(versions: Sequence[SchemaVersion], config: EngineConfig,
                           out: list[Problem]) -> dict[str, SchemaVersion]:
    """Duplicate ids and shared numbers; returns id → its first version, which the parent
    checks look names up in."""

    ctxs = {v.id: VersionContext(v, config, out) for v in versions}
    by_id: dict[str, SchemaVersion] = {}
    by_number: dict[int, list[SchemaVersion]] = {}
    for v in versions:
        if v.id in by_id:
            ctxs[v.id].add("BYOD-E151", "", f"version id {v.id!r} is defined twice",
                           "give every version its own file name")
        by_id.setdefault(v.id, v)
        by_number.setdefault(v.number, []).append(v)
    for number, same in sorted(by_number.items()):
        if len(same) > 1:
            for v in same:
                others = ", ".join(o.id for o in same if o is not v)
                VersionContext(v, config, out).add(
                    "BYOD-E150", "", f"version number {number} is also used by {others}",
                    "renumber one of the files")
    return by_id


def _check_parents(versions: Sequence[SchemaVersion], by_id: dict[str, SchemaVersion],
                   config: EngineConfig, out: list[Problem]) -> None:
    """Each parent list: no self, no repeats, only known and older versions."""

    for v in versions:
        ctx = VersionContext(v, config, out)
        for i, p in enumerate(v.parents):
            loc = f"parents.{i}"
            if p == v.id:
                ctx.add("BYOD-E155", loc, f"version {v.id} lists itself as a parent",
                        "name the version it follows")
            elif v.parents.index(p) != i:
                ctx.add("BYOD-E155", loc, f"parent {p!r} is listed twice", "list it once")
            elif p not in by_id:
                ctx.add("BYOD-E152", loc, f"parent {p!r} does not exist",
                        "known versions: " + ", ".join(sorted(by_id)))
            elif by_id[p].number >= v.number:
                ctx.add("BYOD-W157", loc, f"parent {p} has a number not lower than this "
                        f"version's ({v.number})", "number versions in order of creation",
                        "warning")


def _check_heads(graph: VersionGraph, config: EngineConfig, out: list[Problem]) -> None:
    """The heads of an acyclic graph: exactly ``expected_heads`` when it is set, else one."""

    heads = graph.heads()
    if config.expected_heads:
        expected: set[str] = set()
        for ref in config.expected_heads:
            try:
                expected.add(graph.resolve(ref).id)
            except VersionError:
                out.append(Problem(str(config.versions_dir), None, "expected_heads",
                                   f"expected head {ref!r} is not a known version",
                                   "fix expected_heads in byod.toml", "BYOD-E154"))
        for h in heads:
            if h not in expected:
                VersionContext(graph.get(h), config, out).add(
                    "BYOD-E154", "", f"version {h} is a head but is not in expected_heads",
                    "merge it or add it to expected_heads")
        for e in sorted(expected - set(heads)):
            VersionContext(graph.get(e), config, out).add(
                "BYOD-E154", "", f"version {e} is in expected_heads but versions "
                f"{', '.join(sorted(graph.descendants(e)))} build on it",
                "update expected_heads")
    elif len(heads) > 1:
        for h in heads:
            VersionContext(graph.get(h), config, out).add(
                "BYOD-E154", "", f"the version graph has {len(heads)} heads "
                f"({', '.join(heads)}); exactly one is expected",
                "add a merge version with parents [" + ", ".join(heads) + "]")


def check_graph(versions: Sequence[SchemaVersion], config: EngineConfig,
                 out: list[Problem]) -> None:
    from engine.plan.graph import (
        VersionGraph,  # the graph module imports the models, not the rules
    )

    if not versions:
        out.append(Problem(str(config.versions_dir), None, "", "no version files found",
                           "add a first version, e.g. 0001_initial.yaml with `parents: []`",
                           "BYOD-E156"))
        return
    by_id = _check_ids_and_numbers(versions, config, out)
    _check_parents(versions, by_id, config, out)
    graph = VersionGraph(versions)
    cycle = graph.find_cycle()
    if cycle:
        ctx = VersionContext(graph.get(cycle[0]), config, out)
        ctx.add("BYOD-E153", "parents", "the version graph has a cycle: " + " -> ".join(cycle),
                "a version's parents must be older versions")
        return
    _check_heads(graph, config, out)
