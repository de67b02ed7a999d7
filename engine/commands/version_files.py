"""Verbs for authoring version files: start a new version from the head (``new``), list the
history (``history``) and describe one version (``show``). Each takes a ``Workspace`` and
returns data; printing is the CLI's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.commands.workspace import Workspace
from engine.errors import VersionError, VersionFileError

if TYPE_CHECKING:
    from engine.plan.graph import VersionGraph
    from engine.schema.models import SchemaVersion

__all__ = ["history", "new_version", "show_version"]

_TOP_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*:")


def write_faithful_version(path: Path, text: str, schema: Any,
                           failure: str) -> "SchemaVersion":
    """Write a generated version file and load it back: it must give ``schema`` exactly, or
    the file is removed again (a broken or unfaithful version file is never left behind).
    ``failure`` is the error's message when it loads but differs. Returns what was loaded."""

    from engine.schema.loader import load_version_file

    path.write_text(text, encoding="utf-8")
    try:
        written = load_version_file(path)
    except VersionFileError:
        path.unlink()
        raise
    if written.schema != schema:
        path.unlink()
        raise VersionError(failure)
    return written


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    if not slug:
        raise VersionError(f"version name {name!r} has no letters or digits; "
                           "name it like `add_reminders`")
    return slug


def _tables_block(text: str) -> list[str]:
    """The ``tables:`` block of a version file's text, comments and layout kept, without
    the comment lines that introduce the next top-level key."""

    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("tables:")), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(lines)) if _TOP_KEY.match(lines[i])),
               len(lines))
    block = lines[start:end]
    while block and (not block[-1].strip() or block[-1].startswith("#")):
        block.pop()
    return block


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def new_version(ws: Workspace, name: str, *, description: str = "",
                parent: str | None = None) -> Path:
    """Write ``NNNN_<name>.yaml``: the next number, ``parent`` (default: the head) as its
    only parent, the parent's whole schema (its ``tables`` block copied as written) and no
    hints, consent or lint settings — nothing that belonged to the parent's edge. The new
    file is loaded back and must declare exactly the parent's schema."""

    graph = ws.graph
    base = graph.resolve(parent if parent is not None else "head")
    if base.source is None:
        raise VersionError(f"version {base.id} has no file to start from")
    number = max((v.number for v in graph.versions.values()), default=0) + 1
    vid = f"{number:04d}_{_slug(name)}"
    directory = Path(ws.config.versions_dir)
    path = directory / f"{vid}.yaml"
    if path.exists():
        raise VersionError(f"{path} already exists")
    block = _tables_block(Path(base.source.path).read_text(encoding="utf-8"))
    if not block:
        raise VersionError(f"{base.source.path}: no `tables:` block to start from")
    text = "\n".join([
        f"description: {_quote(description or 'TODO: what this version changes and why.')}",
        f"parents: [{base.id}]",
        f"schemaValidation: {'true' if base.schema.schema_validation else 'false'}",
        "",
        *block,
        "",
        "# hints for the data this version's changes need (docs/maintainer-guide.md, 2)",
        "migrations: []",
        "consent: {}",
        "",
    ])
    write_faithful_version(path, text, base.schema,
                           f"could not copy the schema of {base.id} faithfully into {path}; "
                           "copy the file by hand")
    return path


def _summary(graph: "VersionGraph", version: "SchemaVersion") -> dict[str, Any]:
    """Counts of the changes from each parent, by classification (hints applied)."""

    from engine.plan.diff import diff as compare
    from engine.plan.planner import edge_hints
    from engine.schema.models import Location

    out: dict[str, Any] = {}
    for parent in version.parents:
        d = compare(graph.get(parent).schema, version.schema,
                    edge_hints(graph, parent, version.id), version.consent,
                    location=Location.USER)
        counts: dict[str, int] = {}
        for change in d.changes:
            counts[change.classification] = counts.get(change.classification, 0) + 1
        out[parent] = {"changes": len(d.changes), "blocking": len(d.blocking), **counts}
    return out


def history(ws: Workspace) -> list[dict[str, Any]]:
    """Every version, oldest first: id, number, parents, children, head, description, file
    and what changed from each parent."""

    graph = ws.graph
    heads = set(graph.heads())
    rows = []
    for version in sorted(graph.versions.values(), key=lambda v: (v.number, v.id)):
        rows.append({
            "id": version.id, "number": version.number, "parents": list(version.parents),
            "children": graph.children(version.id), "head": version.id in heads,
            "description": " ".join(version.description.split()),
            "file": version.source.path if version.source else None,
            "from_parents": _summary(graph, version),
        })
    return rows


def show_version(ws: Workspace, ref: str) -> dict[str, Any]:
    """One version (an id, a number or ``head``): its place in the graph, tables, hints,
    consent, the fingerprint of its bundle and the app functions that bundle carries."""

    from engine.bundle.compiler import compile_version
    from engine.bundle.functions import functions_for, pinned_dir

    graph = ws.graph
    version = graph.resolve(ref)
    bundle = compile_version(version, ws.config)
    functions_dir = ws.config.functions_dir
    functions: dict[str, Any] | None = None
    if functions_dir is not None:
        shipped = functions_for(functions_dir, version.id)
        pinned = pinned_dir(Path(functions_dir), version.id)
        functions = {"source": str(pinned if pinned.is_dir() else functions_dir),
                     "pinned": pinned.is_dir(),
                     "modules": shipped.paths if shipped else []}
    return {
        "id": version.id, "number": version.number, "parents": list(version.parents),
        "children": graph.children(version.id), "head": version.id in graph.heads(),
        "description": " ".join(version.description.split()),
        "file": version.source.path if version.source else None,
        "tables": {
            name: {"location": table.location.value, "fields": len(table.fields),
                   "indexes": len(table.indexes), "search_indexes": len(table.search_indexes),
                   "vector_indexes": len(table.vector_indexes)}
            for name, table in version.schema.tables.items()},
        "migrations": [{k: v for k, v in hint.model_dump(exclude_none=True).items()
                        if k in ("op", "table", "field", "from_field", "description")}
                       for hint in version.migrations],
        "consent": version.consent.model_dump(),
        "fingerprint": bundle.fingerprint,
        "functions": functions,
        "from_parents": _summary(graph, version),
    }
