"""Convex's deploy-time schema rules, derived from the open-source backend and applied to
the schema *export* (the JSON of ``defineSchema(...).export()``), so one rule set serves
``byod check`` (which renders each version to that JSON) and the local deployments' push
gate (which receives it in ``start_push``).

Pure: JSON in, findings out; the standard library only, so the push gate's process starts
fast. Every rule is one entry of ``RULES``: its byod code, the Convex error code when
Convex refuses it, its severity, its kind and the backend source file it comes from.

Kinds: ``deploy`` — Convex refuses the push (the local deployments refuse it too);
``runtime`` — Convex accepts the push but the app breaks when it writes such documents;
``byod`` — the engine cannot render it; ``opinion`` — a warning, accepted by Convex.

Findings come in the order Convex evaluates a schema (``crates/common/src/schemas/json.rs``
table by table, then ``crates/application/src/lib.rs`` index fields, then
``DatabaseSchema::check_index_references``, then the table count), so the first deploy
finding is the error Convex would report.
"""

from __future__ import annotations

import base64
import difflib
import math
import struct
from dataclasses import dataclass
from typing import Any, Final, Iterable, Literal, Mapping, Sequence

__all__ = [
    "EVALUATE_PREFIX", "Finding", "LIMITS", "RULES", "Rule", "check_export",
    "identifier_problem", "refusals", "table_count_finding",
]

Kind = Literal["deploy", "runtime", "byod", "opinion"]
Severity = Literal["error", "warning"]

_IDENT_SRC = "crates/convex/sync_types/src/identifier.rs"
_JSON_SRC = "crates/common/src/schemas/json.rs"
_SCHEMA_SRC = "crates/common/src/schemas/mod.rs"
_VALIDATOR_SRC = "crates/common/src/schemas/validator.rs"
_FIELDS_SRC = "crates/common/src/bootstrap_model/index/database_index/indexed_fields.rs"
_APP_SRC = "crates/application/src/lib.rs"
_INDEX_TYPES_SRC = "crates/common/src/types/index.rs"
_PATH_SRC = "crates/value/src/field_path.rs"


@dataclass(frozen=True)
class Rule:
    """One rule: ``convex_code`` is the error code Convex answers a refused push with."""

    code: str
    severity: Severity
    kind: Kind
    convex_code: str | None
    source: str
    summary: str


RULES: Final[dict[str, Rule]] = {r.code: r for r in (
    Rule("BYOD-E101", "error", "deploy", "InvalidTableName", _IDENT_SRC,
         "table name is not an identifier"),
    Rule("BYOD-E102", "error", "deploy", "TableNameReserved", _JSON_SRC,
         "table name starts with `_`"),
    Rule("BYOD-E104", "error", "deploy", "InvalidSchema", _JSON_SRC,
         "top-level field name is not an identifier (or starts with `$`)"),
    Rule("BYOD-E105", "error", "deploy", "InvalidSchema", _JSON_SRC,
         "nested object key is not an identifier (or starts with `$`)"),
    Rule("BYOD-E106", "error", "deploy", "InvalidIndexName", _INDEX_TYPES_SRC,
         "index name is not an identifier"),
    Rule("BYOD-E107", "error", "deploy", "IndexNameReserved", _INDEX_TYPES_SRC,
         "index name is by_id, by_creation_time or starts with `_`"),
    Rule("BYOD-E108", "error", "deploy", "IndexNamesNotUnique", _JSON_SRC,
         "two indexes of a table (any kinds, staged or not) share a name"),
    Rule("BYOD-E109", "error", "runtime", None, _VALIDATOR_SRC,
         "top-level field starts with `_`: Convex drops it from the schema and refuses "
         "documents carrying it"),
    Rule("BYOD-E110", "error", "deploy", "IndexFieldsContainId", _FIELDS_SRC,
         "a database index lists `_id`"),
    Rule("BYOD-E111", "error", "deploy", "FieldsNotUniqueWithinIndex", _FIELDS_SRC,
         "a database index lists a field twice"),
    Rule("BYOD-E112", "error", "deploy", "IndexNotUnique", _JSON_SRC,
         "two database indexes have the same field list"),
    Rule("BYOD-E113", "error", "deploy", "IndexTooManyFields", _APP_SRC,
         "more than 15 fields in a database index (with `_creationTime` appended, 16)"),
    Rule("BYOD-E114", "error", "deploy", "SchemaDefinitionError", _SCHEMA_SRC,
         "an index, search, search-filter or vector field does not exist "
         "(schemaValidation on)"),
    Rule("BYOD-E115", "error", "deploy", "EmptyIndex", _JSON_SRC,
         "a database index has no fields"),
    Rule("BYOD-E116", "error", "deploy", "InvalidIndexField", _PATH_SRC,
         "an index, search, vector or filter field path is not identifiers joined by `.`"),
    Rule("BYOD-E117", "error", "deploy", "IndexFieldsContainCreationTime", _APP_SRC,
         "a database index lists `_creationTime`"),
    Rule("BYOD-E118", "error", "deploy", "IndexFieldNameReserved", _APP_SRC,
         "a database index field has a component starting with `_` (at any depth)"),
    Rule("BYOD-W119", "warning", "opinion", None, _PATH_SRC,
         "a field path starts or ends with `.` (Convex trims the dots)"),
    Rule("BYOD-E120", "error", "deploy", "TooManyIndexes", _SCHEMA_SRC,
         "more than 64 indexes in a table (database, search and vector, staged included)"),
    Rule("BYOD-E123", "error", "deploy", "IndexTooManyFilterFields",
         "crates/common/src/bootstrap_model/index/mod.rs",
         "more than 16 distinct filter fields in a search or vector index"),
    Rule("BYOD-W124", "warning", "opinion", None, _SCHEMA_SRC,
         "the search field is not a string (documents without a string there are not "
         "searchable)"),
    Rule("BYOD-E125", "error", "deploy", "SchemaDefinitionError", _VALIDATOR_SRC,
         "the vector field can never hold an array of float64 (schemaValidation on)"),
    Rule("BYOD-E126", "error", "deploy", "InvalidVectorDimensionError",
         "crates/common/src/bootstrap_model/index/vector_index/dimensions.rs",
         "vector dimensions outside 2-4096"),
    Rule("BYOD-E127", "error", "deploy", "SearchIndexFieldNotUnique", _JSON_SRC,
         "two search indexes have the same search field and filter fields"),
    Rule("BYOD-W128", "warning", "opinion", None, _JSON_SRC,
         "a filter field is listed twice (Convex keeps it once)"),
    Rule("BYOD-E129", "error", "deploy", "VectorIndexFieldNotUnique", _JSON_SRC,
         "two vector indexes have the same vector field and dimensions"),
    Rule("BYOD-E130", "error", "runtime", "TooManyFieldsError", "crates/value/src/object.rs",
         "more than 1024 fields in an object (1022 at the top level: `_id` and "
         "`_creationTime` count)"),
    Rule("BYOD-E131", "error", "runtime", "TooNestedError", "crates/common/src/document.rs",
         "a document nested more than 16 levels"),
    Rule("BYOD-E132", "error", "deploy", "InvalidRecordType", _JSON_SRC,
         "record keys are not string/id (or a union of those) or record values are optional"),
    Rule("BYOD-E133", "error", "deploy", "UnsupportedFloatLiteral", _JSON_SRC,
         "a number literal is NaN or infinite"),
    Rule("BYOD-E134", "error", "runtime", None, _VALIDATOR_SRC,
         "`id(t)` names a table that is not in the schema (no value can match)"),
    Rule("BYOD-E137", "error", "byod", None, "crates/value/src/numeric.rs",
         "an int64 literal is outside the 64-bit range"),
    Rule("BYOD-W138", "warning", "opinion", None, "crates/value/src/numeric.rs",
         "a number literal beyond 2^53 is not exactly a float64 (write it as int64)"),
    Rule("BYOD-E139", "error", "deploy", "InvalidSchema", _JSON_SRC,
         "a literal is not a string, number, boolean or int64, or its string is not valid "
         "Unicode (a lone surrogate)"),
    Rule("BYOD-E141", "error", "deploy", "InvalidSchema", _JSON_SRC,
         "`id(t)` names something that is not a table name"),
    Rule("BYOD-E143", "error", "deploy", "InvalidTopLevelTypeInSchemaError", _SCHEMA_SRC,
         "a table's document validator is not an object, a union of objects or `any`"),
    Rule("BYOD-W147", "warning", "opinion", None, _SCHEMA_SRC,
         "an index field does not exist while schemaValidation is off (Convex does not "
         "check it then)"),
    Rule("BYOD-W148", "warning", "opinion", None, _SCHEMA_SRC,
         "a vector index filter field does not exist (Convex does not check it)"),
    Rule("BYOD-W149", "warning", "opinion", None, _SCHEMA_SRC,
         "a search, vector or filter field is a system field (`_id`, `_creationTime`, `_...`)"),
    Rule("BYOD-W145", "warning", "opinion", None, _JSON_SRC,
         "index name starts with `_fivetran` (accepted: Convex reserves it for Fivetran)"),
    Rule("BYOD-E170", "error", "deploy", "TooManyTables",
         "crates/database/src/bootstrap_model/table.rs",
         "more than 10,000 tables on a deployment (tables already there included)"),
)}


LIMITS: Final[dict[str, Any]] = {
    "identifier_length": 64,             # sync_types/src/identifier.rs MAX_IDENTIFIER_LEN
    "tables": 10_000,                    # database/src/bootstrap_model/table.rs MAX_USER_TABLES
    "indexes_per_table": 64,             # common/src/schemas/mod.rs MAX_INDEXES_PER_TABLE
    "index_fields": 16,                  # bootstrap_model/index/mod.rs MAX_INDEX_FIELDS_SIZE
    "filter_fields": 16,                 # MAX_TEXT/VECTOR_INDEX_FILTER_FIELDS_SIZE
    "vector_dimensions": (2, 4096),      # vector_index/dimensions.rs
    "object_fields": 1024,               # value/src/object.rs MAX_OBJECT_FIELDS
    "nesting": 16,                       # common/src/document.rs MAX_DOCUMENT_NESTING
}
_MAX_SAFE_INT = 2**53
EVALUATE_PREFIX = "Hit an error while evaluating your schema:\n"
_FIVETRAN = "_fivetran"
_RESERVED_INDEX_NAMES = frozenset({"by_id", "by_creation_time"})
_SYSTEM_TABLES = frozenset({"_storage", "_scheduled_functions"})


@dataclass(frozen=True)
class Finding:
    """One rule broken. ``where`` locates it inside the table (``("indexes", name)``,
    ``("fields", "meta", "source")``, ``()`` for the table itself); ``table`` is ``None``
    for schema-wide findings. ``message`` is Convex's wording for deploy rules."""

    code: str
    table: str | None
    where: tuple[str, ...]
    message: str
    hint: str = ""

    @property
    def rule(self) -> Rule:
        return RULES[self.code]


# ---------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------


def identifier_problem(name: str) -> str | None:
    """Why ``name`` is not a Convex identifier (``check_valid_identifier``), or ``None``."""

    if not name:
        return "Identifier cannot be empty"
    first = name[0]
    if not (first.isascii() and (first.isalpha() or first == "_")):
        return (f"Invalid first character {first!r} in {name}: Identifiers must start with an "
                "alphabetic character or underscore")
    for c in name:
        if not (c.isascii() and (c.isalnum() or c == "_")):
            return (f"Identifier {name} has invalid character {c!r}: Identifiers can only "
                    "contain alphanumeric characters or underscores")
    if len(name) > LIMITS["identifier_length"]:
        return (f"Identifier is too long ({len(name)} > maximum "
                f"{LIMITS['identifier_length']})")
    if set(name) == {"_"}:
        return f"Identifier {name} cannot have exclusively underscores"
    return None


def _field_name_problem(name: str) -> str | None:
    """``IdentifierFieldName``: a field name (no leading ``$``) that is an identifier."""

    if name.startswith("$"):
        return f"Field name {name} starts with '$', which is reserved."
    return identifier_problem(name)


def _parse_path(path: str) -> tuple[tuple[str, ...] | None, str | None]:
    """``FieldPath::from_str``: dots trimmed at both ends, then identifiers joined by
    ``.``. Returns the components, or ``None`` and why not."""

    trimmed = path.strip(".")
    if not trimmed:
        return None, f"Empty path {path}"
    parts = tuple(trimmed.split("."))
    for p in parts:
        why = _field_name_problem(p)
        if why:
            return None, why
    return parts, None


def _show(parts: Sequence[str]) -> str:
    return '"' + ".".join(parts) + '"'


# ---------------------------------------------------------------------------------------
# Validators (the export's JSON form)
# ---------------------------------------------------------------------------------------


def _literal_value(raw: Any) -> tuple[str, Any]:
    """The kind and value of a literal's JSON: ``int64``, ``float``, ``bool``, ``str``,
    or ``bad``."""

    if isinstance(raw, bool):
        return "bool", raw
    if isinstance(raw, str):
        return "str", raw
    if isinstance(raw, (int, float)):
        return "float", raw
    if isinstance(raw, dict) and len(raw) == 1:
        (key, enc), = raw.items()
        try:
            data = base64.b64decode(str(enc), validate=True)
            if key == "$integer" and len(data) == 8:
                return "int64", struct.unpack("<q", data)[0]
            if key == "$float" and len(data) == 8:
                return "float", struct.unpack("<d", data)[0]
        except (ValueError, struct.error):
            return "bad", raw
    return "bad", raw


def _is_string_subset(v: Mapping[str, Any]) -> bool:
    """``Validator::is_subset(&Validator::String)`` for record keys."""

    t = v.get("type")
    if t in ("string", "id"):
        return True
    if t == "literal":
        return isinstance(v.get("value"), str)
    if t == "union":
        return all(_is_string_subset(m) for m in v.get("value") or [])
    return False


def _has_string_literal(v: Mapping[str, Any]) -> bool:
    if v.get("type") == "literal":
        return isinstance(v.get("value"), str)
    if v.get("type") == "union":
        return any(_has_string_literal(m) for m in v.get("value") or [])
    return False


def _show_validator(v: Mapping[str, Any]) -> str:
    t = v.get("type")
    if t == "union":
        return "v.union(" + ", ".join(_show_validator(m) for m in v.get("value") or []) + ")"
    if t == "literal":
        return f"v.literal({v.get('value')!r})"
    if t == "id":
        return f"v.id({v.get('tableName')!r})"
    return f"v.{t}()"


class _Walk:
    """Walks one table's document validator, collecting findings in Convex's order."""

    def __init__(self, table: str, tables: frozenset[str], out: list[Finding]):
        self.table = table
        self.tables = tables
        self.out = out

    def add(self, code: str, where: tuple[str, ...], message: str, hint: str = "") -> None:
        self.out.append(Finding(code, self.table, where, message, hint))

    def document(self, doc: Mapping[str, Any] | None) -> None:
        if doc is None or doc.get("type") == "any":
            return
        members = doc.get("value") if doc.get("type") == "union" else [doc]
        if not isinstance(members, list) or not all(
                isinstance(m, dict) and m.get("type") == "object" for m in members):
            self.add("BYOD-E143", (), "The document validator in a schema must be an object, "
                     "a union of objects, or `v.any()`. Found "
                     f"{_show_validator(doc)}.", "write fields: {...} for the table")
            return
        for m in members:
            fields = m.get("value") or {}
            top = [k for k in fields if not k.startswith("$") and k.startswith("_")]
            user = len(fields) - len(top)
            if user + 2 > LIMITS["object_fields"]:
                self.add("BYOD-E130", ("fields",), f"Object has too many fields ({user + 2} > "
                         f"maximum number {LIMITS['object_fields']}): a document of table "
                         f'"{self.table}" holds {user} fields plus _id and _creationTime',
                         "group fields into nested objects")
            for key, field in fields.items():
                if not key.startswith("$") and key.startswith("_") and not \
                        identifier_problem(key):
                    self.add("BYOD-E109", ("fields", key), f'field "{key}" of table '
                             f'"{self.table}" starts with "_": Convex drops it from the schema '
                             "and refuses documents that carry it",
                             "rename the field without the leading '_'")
                    continue
                self.field(key, field, ("fields",), top_level=True, depth=1)

    def field(self, key: str, field: Mapping[str, Any], where: tuple[str, ...],
              top_level: bool, depth: int) -> None:
        here = (*where, key)
        why = _field_name_problem(key)
        if why:
            self.add("BYOD-E104" if top_level else "BYOD-E105", here, why,
                     "field names are identifiers: [A-Za-z_][A-Za-z0-9_]*, at most 64 "
                     "characters" + ("" if top_level else "; use record(string, T) for "
                                     "arbitrary keys"))
        self.validator(field.get("fieldType") or {}, here, depth + 1)

    def validator(self, v: Mapping[str, Any], where: tuple[str, ...], depth: int) -> None:
        """``depth``: the nesting of a value held here if it is a container."""

        t = v.get("type")
        if t in ("object", "array", "record") and depth > LIMITS["nesting"]:
            self.add("BYOD-E131", where, f"Value is too nested (nested {depth} levels deep > "
                     f"maximum nesting {LIMITS['nesting']})",
                     "flatten the structure or store it as `any`")
            return
        if t == "object":
            fields = v.get("value") or {}
            if len(fields) > LIMITS["object_fields"]:
                self.add("BYOD-E130", where, f"Object has too many fields ({len(fields)} > "
                         f"maximum number {LIMITS['object_fields']})",
                         "split it into nested objects")
            for key, f in fields.items():
                self.field(key, f, where, top_level=False, depth=depth)
        elif t == "array":
            self.validator(v.get("value") or {}, where, depth + 1)
        elif t == "record":
            keys = v.get("keys") or {}
            values = v.get("values") or {}
            if not _is_string_subset(keys):
                self.add("BYOD-E132", where, "Records can only have string keys. Your "
                         "validator contains a record with key typed as "
                         f"`{_show_validator(keys)}`, which is not a subtype of `v.string()`",
                         "write record(string, T)")
            elif _has_string_literal(keys):
                self.add("BYOD-E132", where, "Records cannot have string literal keys",
                         "use an object with those keys, or record(string, T)")
            elif values.get("optional"):
                self.add("BYOD-E132", where, "Records cannot have optional values")
            self.validator(keys, where, depth + 1)
            self.validator(values.get("fieldType") or {}, where, depth + 1)
        elif t == "union":
            for m in v.get("value") or []:
                self.validator(m, where, depth)
        elif t == "literal":
            self.literal(v.get("value"), where)
        elif t == "id":
            name = str(v.get("tableName"))
            why = identifier_problem(name)
            if why:
                self.add("BYOD-E141", where, why, "id(...) takes a table name")
            elif name not in self.tables and name not in _SYSTEM_TABLES:
                close = difflib.get_close_matches(name, sorted(self.tables), n=1)
                self.add("BYOD-E134", where, f"id({name}) references a table that is not in "
                         "the schema: no value can match it",
                         f"did you mean id({close[0]})?" if close else
                         "declare the table or fix the name")

    def literal(self, raw: Any, where: tuple[str, ...]) -> None:
        kind, value = _literal_value(raw)
        if kind == "bad":
            self.add("BYOD-E139", where, f"Value {raw!r} is not a valid literal.")
        elif kind == "float" and not math.isfinite(value):
            self.add("BYOD-E133", where, "Infinite or NaN values are not supported in literal "
                     "validators.")
        elif kind == "float" and isinstance(value, int) and abs(value) > _MAX_SAFE_INT:
            self.add("BYOD-W138", where, f"number literal {value} cannot be represented "
                     "exactly as a float64: the deployed literal is a different number",
                     f"use an int64 literal: {value}n")
        elif kind == "str" and _lone_surrogate(value):
            self.add("BYOD-E139", where, "string literal is not valid Unicode (it holds a lone "
                     "surrogate), so the schema is not valid JSON for Convex",
                     "remove the unpaired \\uD800-\\uDFFF escape")


def _lone_surrogate(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


# ---------------------------------------------------------------------------------------
# Field lookups over the document validator (validator.rs semantics)
# ---------------------------------------------------------------------------------------


def _members(doc: Mapping[str, Any] | None) -> list[Mapping[str, Any]] | None:
    """The document's object validators with top-level system fields dropped (what
    ``filter_system_fields`` leaves); ``None`` for `any` (every path possible)."""

    if doc is None or doc.get("type") == "any":
        return None
    members = doc.get("value") if doc.get("type") == "union" else [doc]
    out: list[Mapping[str, Any]] = []
    for m in members if isinstance(members, list) else []:
        if isinstance(m, dict) and m.get("type") == "object":
            fields = {k: f for k, f in (m.get("value") or {}).items() if not k.startswith("_")}
            out.append({"type": "object", "value": fields})
    return out


def _can_contain(v: Mapping[str, Any], parts: Sequence[str]) -> bool:
    if not parts:
        return True
    t = v.get("type")
    if t == "any":
        return True
    if t == "union":
        return any(_can_contain(m, parts) for m in v.get("value") or [])
    if t == "object":
        f = (v.get("value") or {}).get(parts[0])
        return f is not None and _can_contain(f.get("fieldType") or {}, parts[1:])
    return False


def _vector_ok(v: Mapping[str, Any]) -> bool:
    t = v.get("type")
    if t == "array":
        return (v.get("value") or {}).get("type") in ("number", "any")
    if t == "any":
        return True
    if t == "union":
        return any(_vector_ok(m) for m in v.get("value") or [])
    return False


def _overlaps_float_array(v: Mapping[str, Any], parts: Sequence[str]) -> bool:
    if not parts:
        return _vector_ok(v)
    t = v.get("type")
    if t == "any":
        return True
    if t == "union":
        return any(_overlaps_float_array(m, parts) for m in v.get("value") or [])
    if t == "object":
        f = (v.get("value") or {}).get(parts[0])
        return True if f is None else _overlaps_float_array(f.get("fieldType") or {}, parts[1:])
    return False


def _reachable(v: Mapping[str, Any], parts: Sequence[str]) -> list[Mapping[str, Any]]:
    """Every validator a path can reach (for the search-field type warning)."""

    t = v.get("type")
    if t == "union":
        return [x for m in v.get("value") or [] for x in _reachable(m, parts)]
    if not parts:
        return [v]
    if t == "any":
        return [v]
    if t == "object":
        f = (v.get("value") or {}).get(parts[0])
        return [] if f is None else _reachable(f.get("fieldType") or {}, parts[1:])
    return []


# ---------------------------------------------------------------------------------------
# Tables and indexes
# ---------------------------------------------------------------------------------------


@dataclass
class _Index:
    kind: Literal["indexes", "search_indexes", "vector_indexes"]
    name: str
    staged: bool
    raw: Mapping[str, Any]
    fields: list[tuple[str, ...]]          # parsed: db fields / [search|vector field]
    filters: list[tuple[str, ...]]         # parsed, duplicates removed, in order
    valid: bool = True

    @property
    def where(self) -> tuple[str, ...]:
        return (self.kind, self.name)


_LISTS: tuple[tuple[str, Any, bool], ...] = (
    ("indexes", "indexes", False), ("stagedDbIndexes", "indexes", True),
    ("searchIndexes", "search_indexes", False), ("stagedSearchIndexes", "search_indexes", True),
    ("vectorIndexes", "vector_indexes", False), ("stagedVectorIndexes", "vector_indexes", True),
)


class _Table:
    def __init__(self, raw: Mapping[str, Any], tables: frozenset[str], out: list[Finding]):
        self.raw = raw
        self.name = str(raw.get("tableName"))
        self.out = out
        self.tables = tables
        self.doc = raw.get("documentType")
        self.indexes: list[_Index] = []

    def add(self, code: str, where: tuple[str, ...], message: str, hint: str = "") -> None:
        self.out.append(Finding(code, self.name, where, message, hint))

    def in_table(self, message: str) -> str:
        return f'In table "{self.name}": {message}'

    # -- phase 1: TableDefinition::try_from (json.rs) --------------------------------------
    def parse(self) -> None:
        _Walk(self.name, self.tables, self.out).document(self.doc)
        why = identifier_problem(self.name)
        if why:
            self.add("BYOD-E101", (), f'Invalid table name: "{self.name}". Identifiers must '
                     "start with a letter and can only contain letters, digits, and "
                     "underscores.", "table names are identifiers, at most 64 characters")
        elif self.name.startswith("_"):
            self.add("BYOD-E102", (), f"{self.name} is a reserved table name.",
                     "rename the table without the leading '_'")
        lists = {key: list(self.raw.get(key) or []) for key, _, _ in _LISTS}
        total = sum(len(v) for v in lists.values())
        if total > LIMITS["indexes_per_table"]:
            self.add("BYOD-E120", (), f'Table "{self.name}" cannot have more than '
                     f"{LIMITS['indexes_per_table']} indexes.",
                     f"it has {total} (database, search and vector, staged included); drop "
                     "indexes that no query uses")
        for key, kind, staged in _LISTS:
            for raw in lists[key]:
                self.indexes.append(self._parse_index(kind, staged, raw))
        db = [i for i in self.indexes if i.kind == "indexes"]
        for i in db:
            if i.valid and not i.fields:
                self.add("BYOD-E115", i.where, f'In table "{self.name}" '
                         f'{"staged " if i.staged else ""}index "{i.name}" must have at least '
                         "one field.", "list at least one field, e.g. [userId]")
        self._unique(db, lambda i: tuple(i.fields), "BYOD-E112",
                     lambda a, b: f'In table "{self.name}" index "{a}" and index "{b}" have the '
                     "same fields. Indexes must be unique within a table.")
        self._unique([i for i in self.indexes if i.kind == "search_indexes"],
                     lambda i: (tuple(i.fields), frozenset(i.filters)), "BYOD-E127",
                     lambda a, b: f'In table "{self.name}" search index "{a}" and search index '
                     f'"{b}" have the same `searchField`. Search index fields must be unique '
                     "within a table.")
        self._unique([i for i in self.indexes if i.kind == "vector_indexes"],
                     lambda i: (tuple(i.fields), i.raw.get("dimensions")), "BYOD-E129",
                     lambda a, b: f'In table "{self.name}" vector index "{a}" and vector index '
                     f'"{b}" have the same `vectorField`. Vector index fields must be unique '
                     "within a table.")
        seen: set[str] = set()
        for i in self.indexes:
            if identifier_problem(i.name):
                continue
            if i.name.startswith(_FIVETRAN):
                self.add("BYOD-W145", i.where, f'index name "{i.name}" starts with '
                         f"{_FIVETRAN}: Convex accepts it but reserves the prefix for Fivetran",
                         "choose a name without the leading '_'")
            elif i.name in _RESERVED_INDEX_NAMES or i.name.startswith("_"):
                self.add("BYOD-E107", i.where, f'In table "{self.name}" cannot name an index '
                         f'"{i.name}" because the name is reserved. Indexes may not start with '
                         'an underscore or be named "by_id" or "by_creation_time".',
                         "choose another name")
            if i.name in seen:
                self.add("BYOD-E108", i.where, f'Table "{self.name}" has two or more '
                         f'definitions of index "{i.name}".', "index, search index and vector "
                         "index names share one namespace")
            seen.add(i.name)

    def _unique(self, indexes: list[_Index], key: Any, code: str, message: Any) -> None:
        # json.rs compares the indexes in name order (a BTreeMap)
        seen: dict[Any, str] = {}
        for i in sorted((i for i in indexes if i.valid), key=lambda i: i.name):
            k = key(i)
            if k in seen and seen[k] != i.name:
                self.add(code, i.where, message(i.name, seen[k]), "remove one of the two")
            seen.setdefault(k, i.name)

    def _path(self, i: _Index, path: Any) -> tuple[str, ...] | None:
        text = str(path)
        parts, why = _parse_path(text)
        if parts is None:
            self.add("BYOD-E116", i.where, self.in_table(
                f'In index "{i.name}": Invalid index field: "{text}"'),
                f"{why}; a field path is identifiers joined by '.', e.g. meta.source")
            i.valid = False
        elif text != text.strip("."):
            self.add("BYOD-W119", i.where, f'field path "{text}" of index "{i.name}" has '
                     f"leading or trailing dots; Convex reads it as {_show(parts)}",
                     f"write {'.'.join(parts)}")
        return parts

    def _parse_index(self, kind: Any, staged: bool, raw: Mapping[str, Any]) -> _Index:
        name = str(raw.get("indexDescriptor"))
        i = _Index(kind, name, staged, raw, [], [])
        why = identifier_problem(name)
        if why:
            self.add("BYOD-E106", i.where, self.in_table(
                f'Invalid index name: "{name}". Identifiers must be 64 characters or less, '
                "start with a letter, and only contain letters, digits, underscores."),
                "index names are identifiers")
            i.valid = False
            return i
        if kind == "indexes":
            paths = [self._path(i, p) for p in raw.get("fields") or []]
            if not i.valid:
                return i
            i.fields = [p for p in paths if p is not None]
            if len(i.fields) > LIMITS["index_fields"]:
                self._too_many_fields(i)
            elif ("_id",) in i.fields:
                self.add("BYOD-E110", i.where, self.in_table(
                    f'In index "{name}": `_id` is not a valid index field. To load documents '
                    "by ID, use `db.get(id)`."), "remove `_id`: every table is already "
                    "indexed by _id (by_id)")
                i.valid = False
            else:
                dupes = sorted({p for p in i.fields if i.fields.count(p) > 1})
                if dupes:
                    self.add("BYOD-E111", i.where, self.in_table(
                        f'In index "{name}": Duplicate field {_show(dupes[0])}. Index fields '
                        "must be unique within an index."), "list each field once")
                    i.valid = False
            return i
        field_key = "searchField" if kind == "search_indexes" else "vectorField"
        main = self._path(i, raw.get(field_key))
        filters = raw.get("filterFields") or []
        parsed = [self._path(i, f) for f in filters]
        if not i.valid:
            return i
        i.fields = [main] if main is not None else []
        i.filters = list(dict.fromkeys(p for p in parsed if p is not None))
        if len(i.filters) < len(parsed):
            self.add("BYOD-W128", i.where, f'index "{name}" lists a filter field more than '
                     "once; Convex keeps it once", "list each filter field once")
        if kind == "vector_indexes":
            dims = raw.get("dimensions", raw.get("dimension"))
            lo, hi = LIMITS["vector_dimensions"]
            if not isinstance(dims, int) or isinstance(dims, bool) or not lo <= dims <= hi:
                self.add("BYOD-E126", i.where, self.in_table(
                    f"Dimensions {dims} must be between {lo} and {hi}."),
                    "use the embedding model's dimension count, e.g. 1536")
                i.valid = False
                return i
        if len(i.filters) > LIMITS["filter_fields"]:
            self.add("BYOD-E123", i.where, self.in_table(
                f"Search indexes may have up to {LIMITS['filter_fields']} filter fields."),
                f"index {name!r} has {len(i.filters)}")
            i.valid = False
        return i

    def _too_many_fields(self, i: _Index) -> None:
        self.add("BYOD-E113", i.where, self.in_table(
            f'In index "{i.name}": Indexes may have up to {LIMITS["index_fields"]} fields.'),
            f"at most {LIMITS['index_fields'] - 1} fields: Convex appends _creationTime")
        i.valid = False

    # -- phase 2: _validate_user_defined_index_fields (application/src/lib.rs) -------------
    def user_index_fields(self) -> None:
        for i in self.indexes:
            if i.kind != "indexes" or not i.valid:
                continue
            if ("_creationTime",) in i.fields:
                self.add("BYOD-E117", i.where, "`_creationTime` is automatically added to the "
                         "end of each index. It should not be added explicitly in the index "
                         "definition. See https://docs.convex.dev/using/indexes for more "
                         "details.", "remove it")
                i.valid = False
            elif any(part.startswith("_") for p in i.fields for part in p):
                self.add("BYOD-E118", i.where, "Reserved fields (starting with `_`) are not "
                         "allowed in indexes.", f"index {i.name!r} of table {self.name!r}: "
                         "index a field without a leading '_' in any component")
                i.valid = False
            elif len(i.fields) + 1 > LIMITS["index_fields"]:
                self._too_many_fields(i)

    # -- phase 3: DatabaseSchema::check_index_references (schemas/mod.rs) -------------------
    def references(self, validation: bool) -> None:
        members = _members(self.doc)

        def can_contain(parts: tuple[str, ...]) -> bool:
            if len(parts) == 1 and parts[0].startswith("_"):
                return True
            return members is None or any(_can_contain(m, parts) for m in members)

        checked = [(i, p) for i in self.indexes if i.valid
                   for p in [*i.fields, *(i.filters if i.kind == "search_indexes" else [])]]
        for i, parts in checked:
            if can_contain(parts):
                continue
            if validation:
                self.add("BYOD-E114", i.where, f'In table "{self.name}" the index "{i.name}" is '
                         f"invalid because it references the field {_show(parts)} that does "
                         "not exist.", self._fields_hint())
            else:
                self.add("BYOD-W147", i.where, f'index "{i.name}" uses {_show(parts)}, which '
                         "does not exist (schemaValidation is off, so Convex does not check)",
                         self._fields_hint())
        for i in self.indexes:
            if i.kind != "vector_indexes" or not i.valid or not i.fields:
                continue
            parts = i.fields[0]
            eligible = members is None or any(_overlaps_float_array(m, parts) for m in members)
            if validation and not eligible:
                self.add("BYOD-E125", i.where, f'In table "{self.name}" the vector index '
                         f'"{i.name}" is invalid because it references the field '
                         f"{_show(parts)} that is neither an array of float64 or optional "
                         "array of float64.", f"declare `{'.'.join(parts)}?: float64[]`")

    def _fields_hint(self) -> str:
        members = _members(self.doc) or []
        names = sorted({k for m in members for k in m["value"]})
        return "declare the field or fix the name (fields: " + (", ".join(names) or "none") + ")"

    # -- opinions ---------------------------------------------------------------------------
    def opinions(self) -> None:
        members = _members(self.doc)
        for i in self.indexes:
            if i.kind == "indexes" or not i.valid:
                continue
            system = [p for p in [*i.fields, *i.filters] if p[0].startswith("_")]
            for p in system:
                self.add("BYOD-W149", i.where, f'index "{i.name}" uses the system field '
                         f"{_show(p)}", "search and filter on user fields")
            if i.kind == "vector_indexes":
                for p in i.filters:
                    if not p[0].startswith("_") and members is not None and not any(
                            _can_contain(m, p) for m in members):
                        self.add("BYOD-W148", i.where, f'vector index "{i.name}" filters on '
                                 f"{_show(p)}, which does not exist", self._fields_hint())
            elif i.fields and members is not None and not i.fields[0][0].startswith("_"):
                found = [x for m in members for x in _reachable(m, i.fields[0])]
                if found and not all(x.get("type") in ("string", "any", "null") or (
                        x.get("type") == "literal" and isinstance(x.get("value"), str))
                        for x in found):
                    self.add("BYOD-W124", i.where, f'search index "{i.name}" searches '
                             f"{_show(i.fields[0])}, which is not always a string",
                             "search a string field (optional is fine)")


def check_export(export: Mapping[str, Any],
                 existing_tables: Iterable[str] = ()) -> list[Finding]:
    """Every finding for one deployment's schema export, in Convex's evaluation order.
    ``existing_tables``: user tables already on the deployment (for the table count)."""

    out: list[Finding] = []
    raw_tables = [t for t in export.get("tables") or [] if isinstance(t, dict)]
    names = frozenset(str(t.get("tableName")) for t in raw_tables)
    tables = [_Table(t, names, out) for t in raw_tables]
    for t in tables:
        t.parse()
    validation = bool(export.get("schemaValidation", False))
    by_name = sorted(tables, key=lambda t: t.name)
    for t in by_name:
        t.user_index_fields()
    for t in by_name:
        t.references(validation)
    count = table_count_finding(names | set(existing_tables))
    if count is not None:
        out.append(count)
    for t in tables:
        t.opinions()
    return out


def table_count_finding(names: Iterable[str]) -> Finding | None:
    """BYOD-E170 when one deployment would hold more user tables than Convex allows."""

    user_tables = {n for n in names if not n.startswith("_")}
    if len(user_tables) <= LIMITS["tables"]:
        return None
    return Finding("BYOD-E170", None, ("tables",), "Number of tables cannot exceed "
                   f"{LIMITS['tables']}.", f"{len(user_tables)} tables, counting the ones "
                   "already on the deployment")


def refusals(export: Mapping[str, Any],
             existing_tables: Iterable[str] = ()) -> list[dict[str, str]]:
    """What Convex refuses of this push: ``{code, message}`` per deploy-rule finding, in
    Convex's order (a real deployment reports only the first)."""

    return [{"code": RULES[f.code].convex_code or "InvalidSchema",
             "message": EVALUATE_PREFIX + f.message, "rule": f.code}
            for f in check_export(export, existing_tables) if RULES[f.code].kind == "deploy"]
