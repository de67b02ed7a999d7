"""Version files (``schema_versions/NNNN_slug.yaml``) → ``SchemaVersion`` models.

The loader reads YAML through PyYAML's node API (``compose``; libyaml composes when PyYAML
has it, see ``engine.schema.yamlnodes``) rather than ``safe_load``: nodes keep their line
numbers, so every problem (and every later rule) can point at the exact line, and
duplicate mapping keys — which ``safe_load`` silently overwrites — can be detected. Every
problem in every file is collected and raised once as a ``VersionFileError``; nothing here
raises a traceback for bad input.

The file format is documented in ``docs/version-format.md``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode

from engine.config import EngineConfig
from engine.errors import Problem, VersionFileError
from engine.schema.models import (
    WARNING_CODES,
    Consent,
    DbIndex,
    FieldDef,
    LintSettings,
    Location,
    MigrationOp,
    ObjectV,
    Schema,
    SchemaVersion,
    SearchIndex,
    SourceInfo,
    Table,
    VectorIndex,
)
from engine.schema.types import TypeSyntaxError, parse_field_type
from engine.schema.yamlnodes import NodeReader, closest, compose, join, kind

__all__ = ["FILE_NAME_RE", "load_version_file", "load_versions"]

FILE_NAME_RE = re.compile(r"^(?P<number>\d+)_(?P<slug>[A-Za-z0-9][A-Za-z0-9_-]*)\.yaml$")

_TOP_KEYS = ("id", "number", "description", "parents", "schemaValidation", "tables",
             "migrations", "consent", "lint")
_TABLE_KEYS = ("location", "fields", "indexes", "search_indexes", "vector_indexes")
_DB_INDEX_KEYS = ("fields", "staged")
_SEARCH_KEYS = ("field", "filters", "staged")
_VECTOR_KEYS = ("field", "dimensions", "filters", "staged")
_MIGRATION_KEYS = ("op", "table", "field", "from", "to", "value", "mapping", "default",
                   "where", "code", "description")
_CONSENT_KEYS = ("drop_tables", "drop_fields", "delete_rows")
_LINT_KEYS = ("acknowledge", "ignore")
_LINT_CODE_RE = re.compile(r"^BYOD-(?P<kind>[EWD])\d{3}$")
_MAX_MAPPING_DEPTH = 64  # far beyond Convex's 16; the rules report the real limit
_OPS = ("backfill", "rename", "copy", "map_values", "convert", "drop_field", "delete_rows",
        "custom")


class _FileReader(NodeReader):
    """Reads one version file, collecting problems instead of raising."""

    def __init__(self, path: Path, numbers: dict[int, list[str]],
                 types: dict[str, FieldDef] | None = None):
        super().__init__(path)
        self.numbers = numbers
        # Parsed type expressions, shared by the files of one load: every version repeats
        # most of its parent's fields (the models are frozen, so sharing them is safe).
        self.types: dict[str, FieldDef] = {} if types is None else types

    # -- the file --------------------------------------------------------------------------
    def read(self) -> SchemaVersion | None:
        m = FILE_NAME_RE.match(self.path.name)
        if not m:
            self.problem(None, "", f"bad version file name {self.path.name!r}",
                         "name it NNNN_slug.yaml: a number, an underscore, then letters, "
                         "digits, '_' or '-' (e.g. 0004_add_priority.yaml)", code="BYOD-E002")
            return None
        vid, number = self.path.stem, int(m.group("number"))
        root = self._compose_file()
        if root is None:
            return None
        self.scan(root, "", set())
        top = self.mapping(root, "", "a version file", _TOP_KEYS)
        if top is None:
            return None
        got = {k: (kn, vn) for k, kn, vn in top}
        description = self._description(got)
        self._check_declared_identity(got, vid, number)
        parents: tuple[str, ...] = ()
        if "parents" not in got:
            self.problem(root, "parents", "missing `parents`",
                         "write `parents: []` for a first version, or the id/number of the "
                         "version this one follows", code="BYOD-E009")
        else:
            parents = self.parents(got["parents"][1]) or ()
        validation = True
        if "schemaValidation" in got:
            flag = self.boolean(got["schemaValidation"][1], "schemaValidation")
            validation = True if flag is None else flag  # None: already reported
        tables: dict[str, Table] = {}
        if "tables" not in got:
            self.problem(root, "tables", "missing `tables`",
                         "declare the whole schema under `tables:`", code="BYOD-E009")
        else:
            tables = self.tables(got["tables"][1])
        migrations = self.migrations(got["migrations"][1]) if "migrations" in got else ()
        consent = self.consent(got["consent"][1]) if "consent" in got else Consent()
        lint = self.lint(got["lint"][1]) if "lint" in got else LintSettings()
        if self.problems:
            return None
        try:
            return SchemaVersion(
                id=vid, number=number, parents=parents, description=description,
                schema=Schema(tables=tables, schema_validation=validation),
                migrations=migrations, consent=consent, lint=lint,
                source=SourceInfo(path=self.file, lines=self.lines),
            )
        except ValidationError as exc:  # defensive: the checks above should cover this
            for err in exc.errors():
                self.problem(None, ".".join(str(p) for p in err["loc"]), err["msg"])
            return None

    def _compose_file(self) -> Node | None:
        """The file's YAML node tree; None (with the problem recorded) when it cannot be
        read, is not YAML, or is empty."""

        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem(None, "", f"cannot read the file: {exc.__class__.__name__}",
                         "version files are UTF-8 text", code="BYOD-E003")
            return None
        try:
            root = compose(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            what = " ".join(x for x in (exc.context, exc.problem) if x)
            hint = "check indentation, colons and quoting near this line"
            if "flow mapping" in what and "'?'" in what:
                hint = "inside {...} quote optional field names: {'color?': string}"
            self.problems.append(Problem(self.file, line, "", f"malformed YAML: {what}",
                                         hint, "BYOD-E003"))
            return None
        except yaml.YAMLError as exc:
            self.problems.append(Problem(self.file, None, "", f"malformed YAML: {exc}",
                                         code="BYOD-E003"))
            return None
        if root is None:
            self.problem(None, "", "the file is empty",
                         "declare at least `parents: []` and `tables:`", code="BYOD-E009")
        return root

    def _description(self, got: dict[str, tuple[Node, Node]]) -> str:
        if "description" not in got:
            return ""
        node = got["description"][1]
        if isinstance(node, ScalarNode) and not self._is_null(node):
            return str(node.value)
        if not self._is_null(node):
            self.problem(node, "description", "description must be text", code="BYOD-E004")
        return ""

    def _check_declared_identity(self, got: dict[str, tuple[Node, Node]], vid: str,
                                 number: int) -> None:
        """An ``id`` or ``number`` written in the file must agree with the file name."""

        for key, expected in (("id", vid), ("number", number)):
            if key in got:
                node = got[key][1]
                declared = node.value if isinstance(node, ScalarNode) else None
                if declared is None or str(declared).lstrip("0") != str(expected).lstrip("0"):
                    self.problem(node, key, f"{key} {kind(node)} does not match the file "
                                 f"name, which gives {key} {expected!r}",
                                 "rename the file or fix the value (or drop the key: the file "
                                 "name is the source of truth)", code="BYOD-E010")

    def parents(self, node: Node) -> tuple[str, ...] | None:
        items = self.sequence(node, "parents", "parents")
        if items is None:
            return None
        out: list[str] = []
        for i, item in enumerate(items):
            if not isinstance(item, ScalarNode) or item.value == "":
                self.problem(item, f"parents.{i}", "a parent is a version id or number, found "
                             f"{kind(item)}", code="BYOD-E004")
                continue
            ref = item.value
            if ref.isdigit():
                ids = self.numbers.get(int(ref), [])
                ref = ids[0] if len(ids) == 1 else ref  # unresolved: the rules report it
            out.append(ref)
        return tuple(out)

    # -- tables --------------------------------------------------------------------------
    def tables(self, node: Node) -> dict[str, Table]:
        out: dict[str, Table] = {}
        for name, key_node, value in self.mapping(node, "tables", "tables", None) or []:
            loc = f"tables.{name}"
            items = self.mapping(value, loc, f"table {name!r}", _TABLE_KEYS)
            if items is None:
                continue
            got = {k: vn for k, _, vn in items}
            location = Location.USER
            if "location" not in got:
                self.problem(key_node, f"{loc}.location", f"table {name!r} has no location",
                             "add `location: user` (each user's deployment) or "
                             "`location: main` (the app's deployment)", code="BYOD-E009")
            else:
                raw = got["location"]
                text = raw.value if isinstance(raw, ScalarNode) else None
                if text not in ("user", "main"):
                    self.problem(raw, f"{loc}.location", f"location must be user or main, "
                                 f"found {kind(raw)}")
                else:
                    location = Location(text)
            fields = self.object_fields(got["fields"], f"{loc}.fields") if "fields" in got else {}
            if "fields" not in got:
                self.problem(key_node, f"{loc}.fields", f"table {name!r} has no `fields`",
                             "declare its fields (an empty table is `fields: {}`)",
                             code="BYOD-E009")
            indexes = self.db_indexes(got.get("indexes"), f"{loc}.indexes")
            search = self.search_indexes(got.get("search_indexes"), f"{loc}.search_indexes")
            vector = self.vector_indexes(got.get("vector_indexes"), f"{loc}.vector_indexes")
            out[name] = Table(name=name, location=location, fields=fields or {},
                              indexes=indexes, search_indexes=search, vector_indexes=vector)
        return out

    def object_fields(self, node: Node, location: str, depth: int = 1,
                      ) -> dict[str, FieldDef]:
        out: dict[str, FieldDef] = {}
        if depth > _MAX_MAPPING_DEPTH:  # also stops recursive YAML aliases (&a {x: *a})
            self.problem(node, location, f"nested fields go deeper than {_MAX_MAPPING_DEPTH} "
                         "levels (a recursive YAML alias?)", "flatten the structure",
                         code="BYOD-E004")
            return out
        for key, key_node, value in self.mapping(node, location, "fields", None) or []:
            optional = key.endswith("?")
            name = key[:-1] if optional else key
            loc = join(location, name)
            if name in out:
                self.problem(key_node, loc, f"field {name!r} is declared twice",
                             f"keep one of {name!r} and {name + '?'!r}", code="BYOD-E011")
                continue
            field = self.field(value, loc, depth)
            if field is not None:
                out[name] = field if field.optional or not optional else \
                    FieldDef(type=field.type, optional=True)
        return out

    def field(self, node: Node, location: str, depth: int = 1) -> FieldDef | None:
        if isinstance(node, MappingNode):
            return FieldDef(type=ObjectV(fields=self.object_fields(node, location, depth + 1)))
        if not isinstance(node, ScalarNode):
            self.problem(node, location, f"a field type must be a type expression or a mapping "
                         f"of nested fields, found {kind(node)}",
                         "for an array write `T[]` or `array(T)`", code="BYOD-E004")
            return None
        expr = node.value
        if expr.strip() == "":
            self.problem(node, location, "missing type", "e.g. `string`, `number`, `id(users)`",
                         code="BYOD-E007")
            return None
        parsed = self.types.get(expr)
        if parsed is not None:
            return parsed
        try:
            parsed = self.types[expr] = parse_field_type(expr)
            return parsed
        except TypeSyntaxError as exc:
            hint = exc.hint
            if node.style in ('"', "'") and exc.message.startswith("unknown type") \
                    and '"' not in expr and "'" not in expr:
                hint = (f"YAML removed the quotes; for a string literal quote the whole "
                        f"expression: '\"{expr}\"'")
            self.problem(node, location, f"invalid type {expr!r}: {exc.message} at column "
                         f"{exc.column}", hint, code="BYOD-E007")
            return None

    def db_indexes(self, node: Node | None, location: str) -> tuple[DbIndex, ...]:
        out: list[DbIndex] = []
        for name, _, value in self._entries(node, location, "indexes"):
            loc = f"{location}.{name}"
            staged: bool | None = False  # None: not a boolean, already reported
            if isinstance(value, MappingNode):
                items = self.mapping(value, loc, f"index {name!r}", _DB_INDEX_KEYS)
                got = {k: vn for k, _, vn in items or []}
                if "fields" not in got:
                    if items is not None:
                        self.problem(value, loc, f"index {name!r} needs `fields`",
                                     code="BYOD-E009")
                    continue
                fields = self.names(got["fields"], f"{loc}.fields", "index fields")
                staged = self.boolean(got["staged"], f"{loc}.staged") if "staged" in got else False
            else:
                fields = self.names(value, loc, "an index")
            if fields is not None:
                out.append(DbIndex(name=name, fields=fields, staged=bool(staged)))
        return tuple(out)

    def search_indexes(self, node: Node | None, location: str) -> tuple[SearchIndex, ...]:
        out: list[SearchIndex] = []
        for name, _, value in self._entries(node, location, "search_indexes"):
            got = self._index_mapping(value, f"{location}.{name}", f"search index {name!r}",
                                      _SEARCH_KEYS, ("field",))
            if got is None:
                continue
            loc = f"{location}.{name}"
            field = self._name(got["field"], f"{loc}.field")
            filters = self.names(got["filters"], f"{loc}.filters", "filters") \
                if "filters" in got else ()
            staged = self.boolean(got["staged"], f"{loc}.staged") if "staged" in got else False
            if field is not None and filters is not None:
                out.append(SearchIndex(name=name, search_field=field, filter_fields=filters,
                                       staged=bool(staged)))
        return tuple(out)

    def vector_indexes(self, node: Node | None, location: str) -> tuple[VectorIndex, ...]:
        out: list[VectorIndex] = []
        for name, _, value in self._entries(node, location, "vector_indexes"):
            loc = f"{location}.{name}"
            got = self._index_mapping(value, loc, f"vector index {name!r}", _VECTOR_KEYS,
                                      ("field", "dimensions"))
            if got is None:
                continue
            field = self._name(got["field"], f"{loc}.field")
            dims = self.value(got["dimensions"]) if isinstance(got["dimensions"], ScalarNode) \
                else None
            if not isinstance(dims, int) or isinstance(dims, bool):
                self.problem(got["dimensions"], f"{loc}.dimensions", "dimensions must be a "
                             f"whole number, found {kind(got['dimensions'])}",
                             "e.g. `dimensions: 1536`")
                dims = None
            filters = self.names(got["filters"], f"{loc}.filters", "filters") \
                if "filters" in got else ()
            staged = self.boolean(got["staged"], f"{loc}.staged") if "staged" in got else False
            if field is not None and filters is not None and dims is not None:
                out.append(VectorIndex(name=name, vector_field=field, dimensions=dims,
                                       filter_fields=filters, staged=bool(staged)))
        return tuple(out)

    def _entries(self, node: Node | None, location: str, what: str,
                 ) -> list[tuple[str, Node, Node]]:
        if node is None:
            return []
        return self.mapping(node, location, what, None) or []

    def _index_mapping(self, node: Node, loc: str, what: str, allowed: tuple[str, ...],
                       required: tuple[str, ...]) -> dict[str, Node] | None:
        items = self.mapping(node, loc, what, allowed)
        if items is None:
            return None
        got = {k: vn for k, _, vn in items}
        missing = [k for k in required if k not in got]
        if missing:
            self.problem(node, loc, f"{what} needs " + " and ".join(f"`{k}`" for k in missing),
                         "e.g. {field: embedding, dimensions: 1536, filters: [userId]}"
                         if "dimensions" in allowed else "e.g. {field: content, filters: [userId]}",
                         code="BYOD-E009")
            return None
        return got

    # -- migrations and consent -----------------------------------------------------------
    def migrations(self, node: Node) -> tuple[MigrationOp, ...]:
        out: list[MigrationOp] = []
        for i, item in enumerate(self.sequence(node, "migrations", "migrations") or []):
            loc = f"migrations.{i}"
            items = self.mapping(item, loc, "a migration hint", _MIGRATION_KEYS)
            if items is None:
                continue
            data: dict[str, Any] = {}
            for key, _, vn in items:
                data[key] = vn.value if key in ("op", "table", "field", "from", "to", "code",
                                                "description") and isinstance(vn, ScalarNode) \
                    else self.value(vn)
            op = data.get("op")
            if op not in _OPS:
                self.problem(item, f"{loc}.op", f"unknown or missing migration op {op!r}",
                             closest(str(op), _OPS) or "ops: " + ", ".join(_OPS),
                             code="BYOD-E009" if op is None else "BYOD-E008")
                continue
            if "table" not in data:
                self.problem(item, f"{loc}.table", f"{op} hint needs `table`", code="BYOD-E009")
                continue
            if "to" in data and "field" in data:
                self.problem(item, loc, "give either `to` or `field`, not both",
                             "rename/copy use `from` and `to`")
                continue
            if "from" in data:
                data["from_field"] = data.pop("from")
            if "to" in data:
                data["field"] = data.pop("to")
            for key in ("mapping", "where"):
                if key in data and data[key] is not None and not isinstance(data[key], dict):
                    self.problem(item, f"{loc}.{key}", f"`{key}` must be a mapping",
                                 code="BYOD-E004")
                    data.pop(key)
            for key in ("table", "field", "from_field", "code", "description"):
                if key in data and not isinstance(data[key], str):
                    self.problem(item, f"{loc}.{key}", f"`{key}` must be text", code="BYOD-E004")
                    data.pop(key)
            if isinstance(data.get("mapping"), dict):
                data["mapping"] = {str(k): v for k, v in data["mapping"].items()}
            try:
                out.append(MigrationOp(**data))
            except ValidationError as exc:
                self.problem(item, loc, "invalid migration hint: " + "; ".join(
                    e["msg"] for e in exc.errors()))
        return tuple(out)

    def consent(self, node: Node) -> Consent:
        values: dict[str, tuple[str, ...]] = {}
        for key, _, vn in self.mapping(node, "consent", "consent", _CONSENT_KEYS) or []:
            names = self.names(vn, f"consent.{key}", f"consent.{key}")
            if names is not None:
                values[key] = names
        return Consent(**values)

    # -- lint settings ------------------------------------------------------------------
    def lint(self, node: Node) -> LintSettings:
        """``lint: {acknowledge: {BYOD-Wnnn: reason}, ignore: [BYOD-Wnnn]}``: warnings this
        version accepts (counted) or opts out of (not reported). Only warning codes may be
        named; an error code (or a diff code, or no lint code at all) is a problem at its
        own line (BYOD-E012)."""

        acknowledge: dict[str, str] = {}
        ignore: list[str] = []
        for key, _, value in self.mapping(node, "lint", "lint", _LINT_KEYS) or []:
            if key == "ignore":
                for j, item in enumerate(self.sequence(value, "lint.ignore", "lint.ignore")
                                         or []):
                    code = str(item.value) if isinstance(item, ScalarNode) else ""
                    if self._warning_code(item, f"lint.ignore.{j}", code, "ignored"):
                        ignore.append(code)
                continue
            entries = self.mapping(value, "lint.acknowledge", "lint.acknowledge", None)
            for code, code_node, reason in entries or []:
                loc = f"lint.acknowledge.{code}"
                if not self._warning_code(code_node, loc, code, "acknowledged"):
                    continue
                text = str(reason.value).strip() if isinstance(reason, ScalarNode) \
                    and not self._is_null(reason) else ""
                if not text:
                    self.problem(reason, loc, f"acknowledging {code} needs a reason",
                                 f'e.g. {code}: "released with this warning; fixed in '
                                 '0009_add_indexes"', code="BYOD-E009")
                    continue
                acknowledge[code] = text
        return LintSettings(acknowledge=acknowledge, ignore=tuple(dict.fromkeys(ignore)))

    def _warning_code(self, node: Node, loc: str, code: str, verb: str) -> bool:
        """True when ``code`` is a warning code; otherwise a BYOD-E012 problem."""

        m = _LINT_CODE_RE.match(code)
        if m is None or (m.group("kind") == "W" and code not in WARNING_CODES):
            self.problem(node, loc, f"{code!r} is not a warning code",
                         closest(code, sorted(WARNING_CODES)) or "warning codes: "
                         + ", ".join(sorted(WARNING_CODES)), code="BYOD-E012")
            return False
        if m.group("kind") != "W":
            error = m.group("kind") == "E"
            self.problem(node, loc, f"{code} is "
                         f"{'an error' if error else 'a diff code'}: only warnings "
                         f"(BYOD-W...) can be {verb}",
                         "fix what it reports instead: errors always fail the check"
                         if error else "diff codes classify changes (byod diff); "
                         "they are never reported by byod check", code="BYOD-E012")
            return False
        return True


def _numbers(paths: Iterable[Path]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for p in paths:
        m = FILE_NAME_RE.match(p.name)
        if m:
            out.setdefault(int(m.group("number")), []).append(p.stem)
    return out


def _version_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix in (".yaml", ".yml") and not p.name.startswith("."))


def load_version_file(path: Path) -> SchemaVersion:
    """Load one version file; numeric parents resolve against the files beside it."""

    path = Path(path)
    siblings = _version_files(path.parent) if path.parent.is_dir() else [path]
    reader = _FileReader(path, _numbers(siblings))
    version = reader.read()
    if reader.problems or version is None:
        raise VersionFileError(reader.problems)
    return version


def load_versions(directory: Path, config: EngineConfig | None = None) -> list[SchemaVersion]:
    """Load every ``*.yaml`` version file of ``directory``, sorted by number then id.

    Problems of all files are raised together. ``config`` is accepted for symmetry with the
    rules; loading itself does not depend on it.
    """

    directory = Path(directory)
    if not directory.is_dir():
        raise VersionFileError([Problem(
            str(directory), None, "", "the version directory does not exist",
            "create it or pass --versions DIR", "BYOD-E001")])
    files = _version_files(directory)
    numbers = _numbers(files)
    problems: list[Problem] = []
    versions: list[SchemaVersion] = []
    types: dict[str, FieldDef] = {}
    for path in files:
        if path.suffix == ".yml":
            problems.append(Problem(str(path), None, "", "version files end in .yaml",
                                    f"rename it to {path.stem}.yaml", "BYOD-E002"))
            continue
        reader = _FileReader(path, numbers, types)
        version = reader.read()
        problems.extend(reader.problems)
        if version is not None:
            versions.append(version)
    if problems:
        raise VersionFileError(problems)
    return sorted(versions, key=lambda v: (v.number, v.id))
