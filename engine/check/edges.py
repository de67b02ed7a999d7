"""Every edge of the version graph must plan: ``byod check`` refuses a version whose edge
from a parent has a change the planner would refuse (a data step without its hint, a
deletion without consent, an impossible change), so a missing hint is caught when the file
is written, not when a rollout is planned.

Pure. The edge diff is the planner's own (``planner.edge_diff``: the child's hints and
consent, user-located tables), so the check and the plan cannot disagree. Code:
BYOD-E164 (docs/lint-codes.md); the message names the diff code of each change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from engine.check.history import VersionContext
from engine.config import EngineConfig
from engine.errors import Problem
from engine.schema.models import SchemaVersion

if TYPE_CHECKING:
    from engine.plan.diff import Change

__all__ = ["EDGE_CODE", "check_edges"]

EDGE_CODE = "BYOD-E164"

# Problems that make the graph or a version's hints unusable for diffing: the edge rule
# stays silent then (those problems are reported already).
_GRAPH_CODES = frozenset({"BYOD-E150", "BYOD-E151", "BYOD-E152", "BYOD-E153", "BYOD-E155"})
_HINT_CODES = frozenset({"BYOD-E160", "BYOD-E161", "BYOD-E162", "BYOD-E163"})


def _present(v: SchemaVersion, location: str) -> bool:
    return bool(v.source and location in v.source.lines)


def _hint_index(v: SchemaVersion, change: "Change") -> int | None:
    """The index of the child's hint a data-only change comes from (delete_rows,
    drop_field of a field that stays), so the problem points at that hint."""

    op = {"BYOD-D401": "delete_rows", "BYOD-D203": "drop_field"}.get(change.code)
    for i, h in enumerate(v.migrations):
        if h.op == op and h.table == change.table and (
                op == "delete_rows" or h.field == change.field):
            return i
    return None


def _location(v: SchemaVersion, change: "Change", parent_index: int) -> str:
    """Where in the child's file the problem is reported: the table or field when the
    child has it, else the hint, the consent or migrations key, else the parent entry."""

    table, fld = change.table, change.field
    classification = change.classification
    candidates: list[str] = []
    hint = _hint_index(v, change)
    if hint is not None:
        candidates.append(f"migrations.{hint}")
    if table == "*":
        candidates.append("schemaValidation")
    else:
        if fld:
            candidates.append(f"tables.{table}.fields.{fld}")
        candidates.append(f"tables.{table}")
    if classification == "destructive":
        kind = {"BYOD-D102": "drop_tables", "BYOD-D401": "delete_rows"}.get(
            change.code, "drop_fields")
        candidates += [f"consent.{kind}", "consent", "migrations"]
    else:
        candidates += ["migrations", "consent"]
    for loc in candidates:
        if _present(v, loc):
            return loc
    return f"parents.{parent_index}"


def _fix(change: "Change") -> str:
    from engine.plan.compare import (
        CODES,  # the planner's table, loaded only when edges are planned
    )

    hint = change.hint
    if hint:
        return hint
    code = change.code
    return CODES[code][2] if code in CODES else ""


def check_edges(versions: Sequence[SchemaVersion], config: EngineConfig,
                out: list[Problem]) -> None:
    """Plan every edge parent -> child and report each blocking change (BYOD-E164)."""

    if not versions or any(p.code in _GRAPH_CODES for p in out):
        return
    from engine.plan.graph import (
        VersionGraph,  # the planner imports the models, not the rules
    )
    from engine.plan.planner import edge_diff

    graph = VersionGraph(versions)
    if graph.find_cycle():
        return
    with_hint_errors = {p.file for p in out if p.code in _HINT_CODES}
    for v in versions:
        ctx = VersionContext(v, config, out)
        if ctx.file in with_hint_errors:
            continue  # its hints are malformed; E16x already says which
        for i, parent in enumerate(v.parents):
            d = edge_diff(graph, parent, v.id)
            for c in d.blocking:
                ctx.add(EDGE_CODE, _location(v, c, i),
                        f"edge {parent} -> {v.id} cannot be planned: [{c.code}] "
                        f"{c.subject}: {c.message} ({c.status()})", _fix(c))
