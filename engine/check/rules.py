"""Validation rules: every Convex deploy-time rule that can be checked offline, plus the
project's own rules (user tables never reference main tables, reference fields are
indexed, the version graph is sound). Pure: versions in, ``Problem`` list out. Rules that
span versions (graph, hints, consent) live in ``history_rules``; planning every edge lives
in ``edge_rules``.

Codes are stable and documented in ``docs/lint-codes.md`` ("Validation codes"); limits
come from Convex's source and docs (see the reference notes on Convex facts).
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, Final, Iterable, Sequence, TypedDict

from engine.check.edges import check_edges
from engine.check.history import VersionContext, check_graph, check_hints
from engine.config import EngineConfig
from engine.errors import Problem
from engine.schema.engine_tables import ENGINE_TABLE_NAMES
from engine.schema.models import (
    AnyV,
    ArrayV,
    Float64V,
    IdV,
    LiteralV,
    Location,
    NullV,
    ObjectV,
    RecordV,
    SchemaVersion,
    StringV,
    Table,
    UnionV,
)

__all__ = [
    "LIMITS", "Limits", "SYSTEM_TABLES", "check_versions", "has_errors", "identifier_problem",
]

class Limits(TypedDict):
    """Convex's deploy-time limits, typed per key so every comparison is checked."""

    identifier_length: int
    tables: int
    indexes_per_table: int
    index_fields: int
    search_indexes: int
    vector_indexes: int
    filter_fields: int
    vector_dimensions: tuple[int, int]  # inclusive (lowest, highest)
    object_fields: int
    nesting: int


LIMITS: Final[Limits] = {
    "identifier_length": 64,
    "tables": 10_000,
    "indexes_per_table": 32,
    "index_fields": 15,
    "search_indexes": 4,
    "vector_indexes": 4,
    "filter_fields": 16,
    "vector_dimensions": (2, 4096),
    "object_fields": 1024,
    "nesting": 16,
}
SYSTEM_TABLES = frozenset({"_storage", "_scheduled_functions"})
RESERVED_INDEX_NAMES = frozenset({"by_id", "by_creation_time"})
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_SAFE_INT = 2**53


def identifier_problem(name: str) -> str | None:
    """Why ``name`` is not a Convex identifier, or ``None`` when it is one."""

    if not name:
        return "is empty"
    if not name.isascii():
        return "contains non-ASCII characters"
    if not _IDENT.fullmatch(name):
        if not (name[0].isalpha() or name[0] == "_"):
            return "must start with a letter or '_'"
        return "may only contain letters, digits and '_'"
    if len(name) > LIMITS["identifier_length"]:
        return f"is {len(name)} characters long (at most {LIMITS['identifier_length']})"
    if set(name) == {"_"}:
        return "cannot be made only of underscores"
    return None


def _strip(v: Any) -> Any:
    """The validator without a ``| null`` (what a nullable reference points at)."""

    if isinstance(v, UnionV):
        rest = [m for m in v.members if not isinstance(m, NullV)]
        if len(rest) == 1 and len(rest) < len(v.members):
            return rest[0]
    return v


# ---------------------------------------------------------------------------------------
# Tables, fields, validators
# ---------------------------------------------------------------------------------------


def _check_table(ctx: VersionContext, t: Table) -> None:
    loc = f"tables.{t.name}"
    why = identifier_problem(t.name)
    if why:
        ctx.add("BYOD-E101", loc, f"table name {t.name!r} {why}",
                "table names are identifiers: [A-Za-z_][A-Za-z0-9_]*, at most 64 characters")
    elif t.name.startswith("_"):
        ctx.add("BYOD-E102", loc, f"table name {t.name!r} is reserved (names starting with "
                "'_' are Convex system tables)", "rename the table without the leading '_'")
    if t.name in ENGINE_TABLE_NAMES:
        ctx.add("BYOD-E103", loc, f"table name {t.name!r} is used by the engine itself",
                "rename the table; engine tables: " + ", ".join(sorted(ENGINE_TABLE_NAMES)))
    if len(t.fields) > LIMITS["object_fields"]:
        ctx.add("BYOD-E130", f"{loc}.fields", f"table {t.name!r} has {len(t.fields)} fields "
                f"(at most {LIMITS['object_fields']})", "group fields into nested objects")
    for name, field in t.fields.items():
        floc = f"{loc}.fields.{name}"
        if name.startswith("$"):
            ctx.add("BYOD-E104", floc, f"field {name!r} of table {t.name!r} starts with '$', "
                    "which Convex reserves", "rename the field")
        elif name.startswith("_"):
            ctx.add("BYOD-E104", floc, f"field {name!r} of table {t.name!r} starts with '_': "
                    "top-level '_' fields are reserved for system fields (_id, _creationTime)",
                    "rename the field without the leading '_'")
        elif (why := identifier_problem(name)):
            ctx.add("BYOD-E104", floc, f"field name {name!r} of table {t.name!r} {why}",
                    "field names are identifiers: [A-Za-z_][A-Za-z0-9_]*, at most 64 characters")
        _check_validator(ctx, t, field.type, floc, depth=2)
    _check_indexes(ctx, t)


def _check_validator(ctx: VersionContext, t: Table, v: Any, loc: str, depth: int) -> None:
    """Walk one field's validator. ``depth`` counts containers, the document being 1."""

    if depth > LIMITS["nesting"] and isinstance(v, (ObjectV, ArrayV, RecordV)):
        ctx.add("BYOD-E131", loc, f"nested more than {LIMITS['nesting']} levels deep",
                "flatten the structure or store it as `any`")
        return
    if isinstance(v, ObjectV):
        if len(v.fields) > LIMITS["object_fields"]:
            ctx.add("BYOD-E130", loc, f"object has {len(v.fields)} fields "
                    f"(at most {LIMITS['object_fields']})", "split it into nested objects")
        for key, f in v.fields.items():
            why = identifier_problem(key)
            if why:
                ctx.add("BYOD-E105", f"{loc}.{key}", f"object key {key!r} {why}",
                        "object keys in a schema are identifiers; use record(string, T) for "
                        "arbitrary keys")
            _check_validator(ctx, t, f.type, f"{loc}.{key}", depth + 1)
    elif isinstance(v, ArrayV):
        _check_validator(ctx, t, v.element, loc, depth + 1)
    elif isinstance(v, RecordV):
        if not _string_like(v.keys):
            ctx.add("BYOD-E132", loc, "record keys must be string, id(...) or a union of "
                    "those", "write record(string, T)")
        _check_validator(ctx, t, v.keys, loc, depth + 1)
        _check_validator(ctx, t, v.values, loc, depth + 1)
    elif isinstance(v, UnionV):
        for m in v.members:
            _check_validator(ctx, t, m, loc, depth)
    elif isinstance(v, LiteralV):
        _check_literal(ctx, v, loc)
    elif isinstance(v, IdV):
        _check_reference(ctx, t, v, loc)


def _string_like(v: Any) -> bool:
    if isinstance(v, (StringV, IdV)):
        return True
    return isinstance(v, UnionV) and bool(v.members) and all(_string_like(m) for m in v.members)


def _check_literal(ctx: VersionContext, v: LiteralV, loc: str) -> None:
    value = v.value
    if v.bigint:
        if isinstance(value, bool) or not isinstance(value, int) or \
                not -(2**63) <= value < 2**63:
            ctx.add("BYOD-E133", loc, f"int64 literal {value!r} is not a 64-bit integer")
    elif isinstance(value, float) and not math.isfinite(value):
        ctx.add("BYOD-E133", loc, f"literal {value!r} is not a finite number")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_SAFE_INT:
        ctx.add("BYOD-E133", loc, f"number literal {value} cannot be represented exactly as a "
                "float64", f"use an int64 literal: {value}n")


def _check_reference(ctx: VersionContext, t: Table, v: IdV, loc: str) -> None:
    tables = ctx.v.schema.tables
    target = v.table
    user = t.location == Location.USER
    if target == "_storage" and user and ctx.config.storage_on == "main":
        ctx.add("BYOD-E136", loc, f"table {t.name!r} is on the user's deployment but "
                "id(_storage) refers to a file there; files are stored on the main deployment",
                "write `storage` (a string holding main's storage id)")
    elif target in SYSTEM_TABLES:
        return
    elif target not in tables:
        known = sorted(tables)
        close = difflib.get_close_matches(target, known, n=1)
        ctx.add("BYOD-E134", loc, f"id({target}) references a table that does not exist in "
                f"version {ctx.v.id}",
                f"did you mean id({close[0]})?" if close else "declare the table or fix the name")
    elif user and tables[target].location == Location.MAIN:
        ctx.add("BYOD-E135", loc, f"user table {t.name!r} references main table {target!r}: "
                "the user's deployment cannot hold ids of the main deployment",
                "store the main-side key as a string (e.g. the Clerk user id) instead of "
                f"id({target})")
    elif not user and tables[target].location == Location.USER:
        ctx.add("BYOD-W142", loc, f"main table {t.name!r} references user table {target!r}: "
                "for users with their own deployment that document is not on main",
                "store the id as a string and resolve it through routing", "warning")


# ---------------------------------------------------------------------------------------
# Indexes
# ---------------------------------------------------------------------------------------


def _resolve_path(t: Table, path: str) -> list[Any] | None:
    """The validators a dotted path can reach in ``t``'s documents (``None``: missing)."""

    parts = path.split(".")
    field = t.fields.get(parts[0])
    if field is None:
        return None
    current: list[Any] = [field.type]
    for part in parts[1:]:
        nxt: list[Any] = []
        for v in current:
            nxt.extend(_child(v, part))
        if not nxt:
            return None
        current = nxt
    return current


def _child(v: Any, key: str) -> list[Any]:
    if isinstance(v, AnyV):
        return [AnyV()]
    if isinstance(v, ObjectV):
        return [v.fields[key].type] if key in v.fields else []
    if isinstance(v, UnionV):
        out: list[Any] = []
        for m in v.members:
            out.extend(_child(m, key))
        return out
    return []


def _check_field_path(ctx: VersionContext, t: Table, path: str, loc: str,
                      what: str) -> list[Any] | None:
    """Shared checks for index, search and filter fields; returns the reachable types."""

    first = path.split(".")[0]
    if path in ("_id", "_creationTime"):
        hint = ("Convex appends _creationTime to every index itself" if path == "_creationTime"
                else "every table is already indexed by _id (by_id)")
        ctx.add("BYOD-E110", loc, f"{what} uses the system field {path!r}", f"remove it: {hint}")
        return None
    if first.startswith("_"):
        ctx.add("BYOD-E110", loc, f"{what} uses {path!r}: fields starting with '_' are "
                "reserved", "index a user field")
        return None
    bad = [p for p in path.split(".") if identifier_problem(p)]
    if bad:
        ctx.add("BYOD-E116", loc, f"{what} has an invalid field path {path!r}",
                "a field path is identifiers joined by '.', e.g. meta.source")
        return None
    found = _resolve_path(t, path)
    if found is None:
        severity = "error" if ctx.v.schema.schema_validation else "warning"
        known = ", ".join(sorted(t.fields)) or "none"
        ctx.add("BYOD-E114", loc, f"{what} of table {t.name!r} uses field {path!r}, which does "
                "not exist", f"declare the field under tables.{t.name}.fields or fix the "
                f"name (fields: {known})", severity)
    return found


def _check_indexes(ctx: VersionContext, t: Table) -> None:
    loc = f"tables.{t.name}"
    _check_index_names(ctx, t, loc)
    _check_plain_indexes(ctx, t, loc)
    _check_search_indexes(ctx, t, loc)
    _check_vector_indexes(ctx, t, loc)
    _check_references_indexed(ctx, t)


def _check_index_names(ctx: VersionContext, t: Table, loc: str) -> None:
    """Names and counts over all three kinds of index, which share one namespace and one
    per-table limit."""

    named: list[tuple[str, str]] = (
        [(i.name, f"{loc}.indexes.{i.name}") for i in t.indexes]
        + [(i.name, f"{loc}.search_indexes.{i.name}") for i in t.search_indexes]
        + [(i.name, f"{loc}.vector_indexes.{i.name}") for i in t.vector_indexes])
    seen: dict[str, str] = {}
    for name, iloc in named:
        why = identifier_problem(name)
        if why:
            ctx.add("BYOD-E106", iloc, f"index name {name!r} {why}",
                    "index names are identifiers, at most 64 characters")
        elif name in RESERVED_INDEX_NAMES or name.startswith("_"):
            ctx.add("BYOD-E107", iloc, f"index name {name!r} is reserved by Convex",
                    "choose another name (by_id, by_creation_time and '_' names are reserved)")
        if name in seen:
            ctx.add("BYOD-E108", iloc, f"index name {name!r} is used twice in table {t.name!r}",
                    "index, search index and vector index names share one namespace")
        seen.setdefault(name, iloc)
    if len(named) > LIMITS["indexes_per_table"]:
        ctx.add("BYOD-E120", loc, f"table {t.name!r} has {len(named)} indexes (at most "
                f"{LIMITS['indexes_per_table']}, counting search and vector indexes)",
                "drop indexes that no query uses")
    if len(t.search_indexes) > LIMITS["search_indexes"]:
        ctx.add("BYOD-E121", f"{loc}.search_indexes", f"table {t.name!r} has "
                f"{len(t.search_indexes)} search indexes (at most {LIMITS['search_indexes']})")
    if len(t.vector_indexes) > LIMITS["vector_indexes"]:
        ctx.add("BYOD-E122", f"{loc}.vector_indexes", f"table {t.name!r} has "
                f"{len(t.vector_indexes)} vector indexes (at most {LIMITS['vector_indexes']})")


def _check_plain_indexes(ctx: VersionContext, t: Table, loc: str) -> None:
    """Each database index: some fields, not too many, none twice, all resolvable, and no
    two indexes over the same fields."""

    by_fields: dict[tuple[str, ...], str] = {}
    for idx in t.indexes:
        iloc = f"{loc}.indexes.{idx.name}"
        what = f"index {idx.name!r}"
        if not idx.fields:
            ctx.add("BYOD-E115", iloc, f"{what} of table {t.name!r} has no fields",
                    "list at least one field, e.g. [userId]")
            continue
        if len(idx.fields) > LIMITS["index_fields"]:
            ctx.add("BYOD-E113", iloc, f"{what} has {len(idx.fields)} fields (at most "
                    f"{LIMITS['index_fields']}: Convex adds _creationTime as the 16th)")
        dupes = sorted({f for f in idx.fields if idx.fields.count(f) > 1})
        if dupes:
            ctx.add("BYOD-E111", iloc, f"{what} lists {', '.join(map(repr, dupes))} more than "
                    "once", "list each field once")
        for f in dict.fromkeys(idx.fields):
            _check_field_path(ctx, t, f, iloc, what)
        if idx.fields in by_fields:
            ctx.add("BYOD-E112", iloc, f"{what} has the same fields as index "
                    f"{by_fields[idx.fields]!r}", "remove one of the two indexes")
        by_fields.setdefault(idx.fields, idx.name)


def _check_search_indexes(ctx: VersionContext, t: Table, loc: str) -> None:
    """Each search index searches a string field and filters on fields that exist."""

    for s in t.search_indexes:
        iloc = f"{loc}.search_indexes.{s.name}"
        what = f"search index {s.name!r}"
        found = _check_field_path(ctx, t, s.search_field, iloc, what)
        if found is not None and not all(isinstance(x, (StringV, AnyV)) for x in found):
            ctx.add("BYOD-E124", iloc, f"{what} searches {s.search_field!r}, which is not a "
                    "string", "search a string field (optional is fine)")
        _check_filters(ctx, t, s.filter_fields, iloc, what)


def _check_vector_indexes(ctx: VersionContext, t: Table, loc: str) -> None:
    """Each vector index: a float64 array field, a dimension count Convex allows, and
    filters on fields that exist."""

    lo, hi = LIMITS["vector_dimensions"]
    for vi in t.vector_indexes:
        iloc = f"{loc}.vector_indexes.{vi.name}"
        what = f"vector index {vi.name!r}"
        found = _check_field_path(ctx, t, vi.vector_field, iloc, what)
        if found is not None and not all(
                isinstance(x, ArrayV) and isinstance(x.element, Float64V) for x in found):
            severity = "error" if ctx.v.schema.schema_validation else "warning"
            ctx.add("BYOD-E125", iloc, f"{what} uses {vi.vector_field!r}, which is not an "
                    "array of float64", f"declare `{vi.vector_field}?: float64[]`", severity)
        if not lo <= vi.dimensions <= hi:
            ctx.add("BYOD-E126", iloc, f"{what} has {vi.dimensions} dimensions (allowed: "
                    f"{lo}-{hi})", "use the embedding model's dimension count, e.g. 1536")
        _check_filters(ctx, t, vi.filter_fields, iloc, what)


def _check_filters(ctx: VersionContext, t: Table, filters: Sequence[str], loc: str,
                   what: str) -> None:
    if len(filters) > LIMITS["filter_fields"]:
        ctx.add("BYOD-E123", loc, f"{what} has {len(filters)} filter fields (at most "
                f"{LIMITS['filter_fields']})")
    dupes = sorted({f for f in filters if list(filters).count(f) > 1})
    if dupes:
        ctx.add("BYOD-E128", loc, f"{what} lists filter field(s) {', '.join(map(repr, dupes))} "
                "more than once", "list each filter field once")
    for f in dict.fromkeys(filters):
        _check_field_path(ctx, t, f, loc, f"filter of {what}")


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
    """Every problem of every version (errors and warnings), ordered by file and line."""

    config = config or EngineConfig()
    versions = list(versions)
    out: list[Problem] = []
    check_graph(versions, config, out)
    by_id = {v.id: v for v in versions}
    for v in versions:
        ctx = VersionContext(v, config, out)
        if len(v.schema.tables) > LIMITS["tables"]:
            ctx.add("BYOD-E170", "tables", f"{len(v.schema.tables)} tables (at most "
                    f"{LIMITS['tables']})")
        for t in v.schema.tables.values():
            _check_table(ctx, t)
        check_hints(ctx, [by_id[p] for p in v.parents if p in by_id and p != v.id])
    check_edges(versions, config, out)  # after the hint rules: it skips malformed hints
    return sorted(out, key=lambda p: (p.file, p.line or 0, p.location, p.code))


def has_errors(problems: Iterable[Problem]) -> bool:
    """True when any problem is an error (warnings alone pass)."""

    return any(p.severity == "error" for p in problems)
