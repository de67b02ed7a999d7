"""Validation rules of ``byod check``: Convex's deploy-time rules (``convex_rules``, run on
each version's schema export, the same rule set the local deployments apply on push), the
project's own rules (user tables never reference main tables, reference fields are
indexed) and, from ``history``/``edges``, the version graph, hints and edges. Pure:
versions in, ``Problem`` list out.

Codes are stable and documented in ``docs/lint-codes.md``, each with the Convex backend
source file its rule comes from.
"""

from __future__ import annotations

from typing import Any, Iterable

from engine.check.convex_rules import (
    LIMITS,
    RULES,
    Finding,
    check_export,
    identifier_problem,
    table_count_finding,
)
from engine.check.edges import check_edges
from engine.check.history import VersionContext, check_graph, check_hints
from engine.config import EngineConfig
from engine.errors import Problem
from engine.schema.engine_tables import ENGINE_TABLE_NAMES
from engine.schema.models import (
    ArrayV,
    IdV,
    LiteralV,
    Location,
    NullV,
    ObjectV,
    RecordV,
    SchemaVersion,
    Table,
    UnionV,
)

__all__ = [
    "LIMITS", "SYSTEM_TABLES", "check_versions", "has_errors", "identifier_problem",
]

SYSTEM_TABLES = frozenset({"_storage", "_scheduled_functions"})
_INT64 = (-(2**63), 2**63)


def _strip(v: Any) -> Any:
    """The validator without a ``| null`` (what a nullable reference points at)."""

    if isinstance(v, UnionV):
        rest = [m for m in v.members if not isinstance(m, NullV)]
        if len(rest) == 1 and len(rest) < len(v.members):
            return rest[0]
    return v


# ---------------------------------------------------------------------------------------
# Convex's rules (convex_rules, on the version's schema export) and the project's rules
# ---------------------------------------------------------------------------------------


def _location(f: Finding) -> str:
    if f.table is None:
        return ".".join(f.where) or "tables"
    return ".".join(("tables", f.table, *f.where))


def _bad_int64(v: Any, loc: str) -> Iterable[str]:
    """Locations of int64 literals outside 64 bits (they cannot be rendered at all)."""

    if isinstance(v, LiteralV) and v.bigint:
        value = v.value
        if isinstance(value, bool) or not isinstance(value, int) or \
                not _INT64[0] <= value < _INT64[1]:
            yield loc
    elif isinstance(v, ObjectV):
        for key, f in v.fields.items():
            yield from _bad_int64(f.type, f"{loc}.{key}")
    elif isinstance(v, ArrayV):
        yield from _bad_int64(v.element, loc)
    elif isinstance(v, RecordV):
        yield from _bad_int64(v.keys, loc)
        yield from _bad_int64(v.values, loc)
    elif isinstance(v, UnionV):
        for m in v.members:
            yield from _bad_int64(m, loc)


def _table_export(ctx: VersionContext, t: Table) -> dict[str, Any]:
    """The table as ``defineSchema(...).export()`` has it; an int64 literal that cannot
    be rendered is BYOD-E137 and leaves the table's document as ``any``."""

    bad = [loc for name, f in t.fields.items()
           for loc in _bad_int64(f.type, f"tables.{t.name}.fields.{name}")]
    for loc in bad:
        ctx.add("BYOD-E137", loc, "int64 literal is not a 64-bit integer",
                "int64 literals range from -2^63 to 2^63-1")
    if not bad:
        return t.to_convex_json()
    return dict(Table(name=t.name, location=t.location, indexes=t.indexes,
                      search_indexes=t.search_indexes,
                      vector_indexes=t.vector_indexes).to_convex_json(),
                documentType={"type": "any"})


def _check_convex(ctx: VersionContext) -> None:
    """Convex's deploy-time rules (and the app-breaking ones) over the version's schema
    export. The table count is per deployment: user-located and main-located tables apart."""

    schema = ctx.v.schema
    export = {"tables": [_table_export(ctx, t) for t in schema.tables.values()],
              "schemaValidation": schema.schema_validation}
    for f in check_export(export):
        if f.code != "BYOD-E170":
            ctx.add(f.code, _location(f), f.message, f.hint, RULES[f.code].severity)
    for location in Location:
        count = table_count_finding(n for n, t in schema.tables.items()
                                    if t.location == location)
        if count is not None:
            ctx.add(count.code, "tables", f"{location.value}-located tables: "
                    + count.message, count.hint)


def _check_project(ctx: VersionContext, t: Table) -> None:
    """The engine's own rules for one table: its name is not an engine table, references
    respect where tables live, and reference fields are indexed."""

    if t.name in ENGINE_TABLE_NAMES:
        ctx.add("BYOD-E103", f"tables.{t.name}", f"table name {t.name!r} is used by the engine "
                "itself", "rename the table; engine tables: " + ", ".join(sorted(
                    ENGINE_TABLE_NAMES)))
    for name, field in t.fields.items():
        _check_references(ctx, t, field.type, f"tables.{t.name}.fields.{name}")
    _check_references_indexed(ctx, t)


def _check_references(ctx: VersionContext, t: Table, v: Any, loc: str) -> None:
    if isinstance(v, IdV):
        _check_reference(ctx, t, v, loc)
    elif isinstance(v, ObjectV):
        for key, f in v.fields.items():
            _check_references(ctx, t, f.type, f"{loc}.{key}")
    elif isinstance(v, ArrayV):
        _check_references(ctx, t, v.element, loc)
    elif isinstance(v, RecordV):
        _check_references(ctx, t, v.keys, loc)
        _check_references(ctx, t, v.values, loc)
    elif isinstance(v, UnionV):
        for m in v.members:
            _check_references(ctx, t, m, loc)


def _check_reference(ctx: VersionContext, t: Table, v: IdV, loc: str) -> None:
    tables = ctx.v.schema.tables
    target = v.table
    user = t.location == Location.USER
    if target == "_storage" and user and ctx.config.storage_on == "main":
        ctx.add("BYOD-E136", loc, f"table {t.name!r} is on the user's deployment but "
                "id(_storage) refers to a file there; files are stored on the main deployment",
                "write `storage` (a string holding main's storage id)")
    elif target in SYSTEM_TABLES or target not in tables:
        return  # BYOD-E134 (convex_rules) reports unknown tables
    elif user and tables[target].location == Location.MAIN:
        ctx.add("BYOD-E135", loc, f"user table {t.name!r} references main table {target!r}: "
                "the user's deployment cannot hold ids of the main deployment",
                "store the main-side key as a string (e.g. the Clerk user id) instead of "
                f"id({target})")
    elif not user and tables[target].location == Location.USER:
        ctx.add("BYOD-W142", loc, f"main table {t.name!r} references user table {target!r}: "
                "for users with their own deployment that document is not on main",
                "store the id as a string and resolve it through routing", "warning")


def _check_references_indexed(ctx: VersionContext, t: Table) -> None:
    first_fields = {i.fields[0] for i in t.indexes if i.fields}
    for name, field in t.fields.items():
        target = _strip(field.type)
        if isinstance(target, IdV) and name not in first_fields:
            ctx.add("BYOD-W140", f"tables.{t.name}.fields.{name}", f"reference field {name!r} "
                    f"of table {t.name!r} (id({target.table})) is not the first field of any "
                    "index", f"add `by_{name}: [{name}]` under tables.{t.name}.indexes so "
                    "lookups and cascading deletes stay fast", "warning")


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def check_versions(versions: Iterable[SchemaVersion],
                   config: EngineConfig | None = None) -> list[Problem]:
    """Every problem of every version (errors and warnings), ordered by file and line.
    Warnings whose code the version (``lint: {ignore: [...]}``) or the config
    (``lint_ignore``) ignores are left out."""

    config = config or EngineConfig()
    versions = list(versions)
    out: list[Problem] = []
    check_graph(versions, config, out)
    by_id = {v.id: v for v in versions}
    for v in versions:
        ctx = VersionContext(v, config, out)
        _check_convex(ctx)
        for t in v.schema.tables.values():
            _check_project(ctx, t)
        check_hints(ctx, [by_id[p] for p in v.parents if p in by_id and p != v.id])
    check_edges(versions, config, out)  # after the hint rules: it skips malformed hints
    ignored = {VersionContext(v, config, []).file: set(v.lint.ignore) for v in versions}
    everywhere = set(config.lint_ignore)
    out = [p for p in out if p.severity != "warning" or (
        p.code not in everywhere and p.code not in ignored.get(p.file, ()))]
    return sorted(out, key=lambda p: (p.file, p.line or 0, p.location, p.code))


def has_errors(problems: Iterable[Problem]) -> bool:
    """True when any problem is an error (warnings alone pass)."""

    return any(p.severity == "error" for p in problems)
