"""Plans: the path from a deployment's version to a target, expanded into frozen steps.

Pure. For each group of fused edges: ``deploy_widened`` (a bundle of kind ``widen``: the
widening of every schema along the group, with the group's data-step mutations) →
``run_data_step`` (one per step) → ``deploy_target`` → ``verify`` → ``record``. A group
without data steps is a single ``deploy_target``. Consecutive edges fuse into one group
unless a later edge's step reads a field an earlier edge's step writes: then the plan is
split there, so the intermediate version is deployed (and every document checked against
it by Convex) before the dependent step runs; the split is named in ``Plan.notes``.

A data step that deletes data (rows or field values) is marked ``destructive``. Going up,
the version file's consent allowed it; a down path that deletes data is refused
(``DestructivePath``) unless the caller passes ``allow_destructive=True``: rolling back
the version that added a table deletes that table's rows, and nobody consented to that.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Literal

from engine.errors import (
    DestructivePath,
    DriftDetected,
    NoPath,
    UnknownVersion,
    UnsafeChange,
)
from engine.plan.datasteps import DataStep
from engine.plan.diff import Diff, diff
from engine.plan.graph import VersionGraph
from engine.plan.render import (
    fleet_to_dict,
    plan_to_dict,
    render_fleet_text,
    render_plan_text,
)
from engine.plan.widen import widen
from engine.schema.models import Location, MigrationOp, Schema
from engine.schema.typeops import table_key

__all__ = [
    "FleetPlan",
    "Plan",
    "PlanStep",
    "StepKind",
    "clear_caches",
    "edge_diff",
    "edge_hints",
    "plan",
    "plan_deployment",
    "plan_fleet",
]

StepKind = Literal["deploy_widened", "run_data_step", "deploy_target", "verify", "record"]
Direction = Literal["up", "down", "none"]


@dataclass(frozen=True)
class PlanStep:
    """One step. ``version`` is the version a deploy/verify/record step puts in place
    (for ``deploy_widened`` the name of its bundle); ``schema`` the widened schema;
    ``data_steps`` the mutations a widened bundle carries; ``data_step`` the one a
    ``run_data_step`` runs; ``destructive`` whether that step deletes data."""

    id: str
    kind: StepKind
    version: str | None = None
    schema: Schema | None = field(default=None, repr=False, compare=False)
    data_step: DataStep | None = None
    data_steps: tuple[DataStep, ...] = ()
    covers: tuple[str, ...] = ()
    destructive: bool = False


@dataclass(frozen=True)
class Plan:
    """A frozen, executable plan for one deployment (or for every deployment on
    ``source``, when ``deployment`` is None)."""

    source: str
    target: str
    path: tuple[str, ...]
    direction: Direction
    steps: tuple[PlanStep, ...]
    groups: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = ()
    deployment: str | None = None

    @property
    def id(self) -> str:
        """Content-derived: the same plan always has the same id (journal key)."""

        text = "\n".join([self.source, self.target, self.direction]
                         + [f"{s.kind} {s.id} {s.version}" for s in self.steps])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def deploys(self) -> int:
        return sum(1 for s in self.steps if s.kind in ("deploy_widened", "deploy_target"))

    @property
    def data_steps(self) -> tuple[DataStep, ...]:
        return tuple(s.data_step for s in self.steps if s.data_step is not None)

    @property
    def destructive_steps(self) -> tuple[PlanStep, ...]:
        """The steps that delete rows or field values."""

        return tuple(s for s in self.steps if s.destructive)

    def refuse_destruction(self) -> None:
        """``DestructivePath`` when this is a down path that deletes data."""

        gone = [_deletes(s.data_step) for s in self.destructive_steps
                if s.data_step is not None]
        if self.direction != "down" or not gone:
            return
        lines = [f"down path {self.source} -> {self.target} deletes data:"]
        lines += [f"  - {g}" for g in gone]
        lines.append("the version files give no consent for deletions on the way down; "
                     "back the data up, then pass --allow-destructive (byod plan) or "
                     "allow_destructive=True to plan it anyway")
        raise DestructivePath("\n".join(lines), deletes=gone,
                              changes=self.destructive_steps)

    def for_deployment(self, deployment: str) -> "Plan":
        return replace(self, deployment=deployment)

    def to_dict(self) -> dict[str, Any]:
        return plan_to_dict(self)

    def render_text(self) -> str:
        return render_plan_text(self)


def _deletes(step: DataStep) -> str:
    """What a destructive data step deletes, in words."""

    if step.op == "drop_field":
        return f"the values of {step.table}.{step.params['field']} in every document"
    if step.op == "delete_rows" and not step.params.get("where"):
        return f"every row of {step.table}"
    return step.summary()


@dataclass(frozen=True)
class FleetPlan:
    """Plans for many deployments, grouped by source version (each planned once)."""

    target: str
    plans: dict[str, Plan]
    members: dict[str, tuple[str, ...]]
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    drifted: tuple[dict[str, str], ...] = ()

    def plan_for(self, deployment: str, version: str) -> Plan:
        return self.plans[version].for_deployment(deployment)

    @property
    def deployments(self) -> int:
        return sum(len(m) for m in self.members.values())

    def to_dict(self) -> dict[str, Any]:
        return fleet_to_dict(self)

    def render_text(self) -> str:
        return render_fleet_text(self)


# ---------------------------------------------------------------------------------------
# Caches (per graph; the graph is immutable once built)
# ---------------------------------------------------------------------------------------


class _Cache:
    def __init__(self) -> None:
        self.edges: dict[tuple[str, str, str], Diff] = {}
        self.user: dict[str, Schema] = {}
        self.folds: dict[tuple[str, int], tuple[int, Schema]] = {}
        self.leaves: dict[str, int] = {}
        self.plans: dict[tuple[str, str], Plan] = {}
        self.hint_keys: dict[str, frozenset[str]] = {}


_CACHES: "weakref.WeakKeyDictionary[VersionGraph, _Cache]" = weakref.WeakKeyDictionary()


def _cache(graph: VersionGraph) -> _Cache:
    c = _CACHES.get(graph)
    if c is None:
        c = _CACHES[graph] = _Cache()
    return c


def clear_caches() -> None:
    """Forget cached diffs and plans (benchmarks measure cold planning)."""

    _CACHES.clear()


def _user_schema(graph: VersionGraph, vid: str, cache: _Cache) -> Schema:
    s = cache.user.get(vid)
    if s is None:
        s = cache.user[vid] = graph.get(vid).schema.located(Location.USER)
    return s


def _hint_key(h: MigrationOp) -> str:
    return json.dumps(h.model_dump(exclude={"description"}), sort_keys=True, default=str)


def _applied_hints(graph: VersionGraph, vid: str, cache: _Cache) -> frozenset[str]:
    """Hints declared by ``vid`` or any of its ancestors: a deployment there ran them."""

    found = cache.hint_keys.get(vid)
    if found is None:
        keys = {_hint_key(h) for h in graph.get(vid).migrations}
        for p in graph.parents(vid):
            keys |= _applied_hints(graph, p, cache)
        found = cache.hint_keys[vid] = frozenset(keys)
    return found


def edge_hints(graph: VersionGraph, source: str, target: str) -> tuple[MigrationOp, ...]:
    """``target``'s hints minus those ``source`` (or an ancestor) already declared: a merge
    version repeats its parents' hints for the other parent's edge, and a deployment that
    came through one parent has already run that parent's hints."""

    done = _applied_hints(graph, source, _cache(graph))
    return tuple(h for h in graph.get(target).migrations if _hint_key(h) not in done)


def edge_diff(graph: VersionGraph, parent: str, child: str, direction: str = "up") -> Diff:
    """The classified diff of one edge as a user deployment sees it. ``up`` uses the
    child's hints and consent; ``down`` is the inverse of the up diff (``UnsafeChange``
    lists the changes that do not reverse)."""

    cache = _cache(graph)
    key = (parent, child, direction)
    found = cache.edges.get(key)
    if found is None:
        if direction == "up":
            c = graph.get(child)
            found = diff(graph.get(parent).schema, c.schema, edge_hints(graph, parent, child),
                         c.consent, location=Location.USER)
        else:
            found = edge_diff(graph, parent, child, "up").inverse(
                f"down {child} -> {parent}")
        cache.edges[key] = found
    return found


# ---------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------


def _touches(step: DataStep) -> tuple[set[str], set[str]]:
    """(reads, writes) of a step as ``table.field`` / ``table.*`` names."""

    t, p = step.table, step.params
    star = {f"{t}.*"}
    if step.op == "custom":
        return star, star
    if step.op == "convert" and p.get("code"):  # its code is handed the whole document
        return star, {f"{t}.{p['field']}"}
    if step.op == "delete_rows":
        return {f"{t}.{k}" for k in (p.get("where") or {})}, star
    if step.op in ("rename", "copy"):
        moved = {f"{t}.{p['from']}", f"{t}.{p['to']}"}
        return moved, moved if step.op == "rename" else {f"{t}.{p['to']}"}
    return {f"{t}.{p['field']}"}, {f"{t}.{p['field']}"}


def _conflict(reads: set[str], writes: set[str]) -> str | None:
    for r in sorted(reads):
        table = r.split(".", 1)[0]
        if r in writes or f"{table}.*" in writes or (r.endswith(".*") and any(
                w.startswith(table + ".") for w in writes)):
            return r
    return None


def _groups(path: list[str], diffs: list[Diff]) -> tuple[list[list[int]], list[str]]:
    """Edge indexes fused into groups, and the reason for every split."""

    groups: list[list[int]] = [[]]
    writes: set[str] = set()
    notes: list[str] = []
    for i, d in enumerate(diffs):
        reads: set[str] = set()
        new_writes: set[str] = set()
        for s in d.steps:
            r, w = _touches(s)
            reads |= r
            new_writes |= w
        hit = _conflict(reads, writes) if groups[-1] else None
        if hit is not None:
            notes.append(f"split before {path[i]} -> {path[i + 1]}: its data steps read "
                         f"{hit}, which an earlier step of the same deploy writes; "
                         f"{path[i]} is deployed and checked first")
            groups.append([])
            writes = set()
        groups[-1].append(i)
        writes |= new_writes
    return [g for g in groups if g], notes


def _fold(graph: VersionGraph, ids: list[str], cache: _Cache) -> Schema:
    """widen over the user schemas of ``ids`` (right fold, memoized by suffix)."""

    current = _user_schema(graph, ids[-1], cache)
    key_id = cache.leaves.setdefault(ids[-1], -1 - len(cache.leaves))  # folds are >= 0
    for i in range(len(ids) - 2, -1, -1):
        vid = ids[i]
        k = (vid, key_id)
        hit = cache.folds.get(k)
        if hit is None:
            here, nxt = _user_schema(graph, vid, cache), _user_schema(graph, ids[i + 1], cache)
            # a table equal to the next version's is already covered by the fold so far
            same = frozenset(n for n, t in here.tables.items() if n in nxt.tables
                             and table_key(t) == table_key(nxt.tables[n]))
            current = widen(here, current, covered=same)
            new_id = len(cache.folds)
            cache.folds[k] = (new_id, current)
            hit = (new_id, current)
        key_id, current = hit
    return current


def _expand(graph: VersionGraph, path: list[str], direction: Direction,
            cache: _Cache) -> Plan:
    source, target = path[0], path[-1]
    if len(path) == 1:
        return Plan(source=source, target=target, path=tuple(path), direction="none", steps=())
    diffs: list[Diff] = []
    destroys: set[str] = set()
    blocked: list[str] = []
    irreversible: list[Any] = []
    for a, b in zip(path, path[1:]):
        try:
            d = edge_diff(graph, b, a, "down") if direction == "down" else edge_diff(graph, a, b)
        except UnsafeChange as exc:
            irreversible.append(str(exc))
            continue
        if d.blocking:
            try:
                d.raise_if_blocked(f"{a} -> {b}")
            except UnsafeChange as exc:
                blocked.append(str(exc))
        destroys |= {s.id for c in d.changes if c.classification == "destructive"
                     for s in c.steps}
        diffs.append(d)
    if irreversible:
        raise UnsafeChange(f"no down path from {source} to {target}:\n" + "\n".join(irreversible))
    if blocked:
        raise UnsafeChange(f"cannot plan {source} -> {target}:\n" + "\n".join(blocked))

    groups, notes = _groups(path, diffs)
    steps: list[PlanStep] = []
    seen: set[str] = set()
    for g in groups:
        start, end = path[g[0]], path[g[-1] + 1]
        chain = tuple(path[g[0]: g[-1] + 2])
        data = [s for i in g for s in diffs[i].steps]
        if data:
            name = f"{start}__{end}__widen"
            steps.append(PlanStep(id=f"deploy_widened:{start}..{end}", kind="deploy_widened",
                                  version=name, schema=_fold(graph, list(chain), cache),
                                  data_steps=tuple(data), covers=chain))
            for s in data:
                sid = s.id if s.id not in seen else f"{s.id}@{end}"
                n = 2
                while sid in seen:  # the journal is keyed by step id: keep each unique
                    sid, n = f"{s.id}@{end}#{n}", n + 1
                seen.add(sid)
                steps.append(PlanStep(id=sid, kind="run_data_step", version=end, data_step=s,
                                      covers=chain, destructive=s.id in destroys))
        steps.append(PlanStep(id=f"deploy_target:{end}", kind="deploy_target", version=end,
                              covers=chain))
        steps.append(PlanStep(id=f"verify:{end}", kind="verify", version=end))
        steps.append(PlanStep(id=f"record:{end}", kind="record", version=end))
    return Plan(source=source, target=target, path=tuple(path), direction=direction,
                steps=tuple(steps),
                groups=tuple(tuple(path[g[0]: g[-1] + 2]) for g in groups), notes=tuple(notes))


def plan(graph: VersionGraph, source: str | int, target: str | int, *,
         deployment: str | None = None, fingerprint: str | None = None,
         expected_fingerprint: Callable[[str], str] | None = None,
         allow_destructive: bool = False) -> Plan:
    """The plan that brings a deployment on ``source`` to ``target`` (ids, numbers or
    ``head``). Raises ``UnknownVersion``, ``MultipleHeads``, ``NoPath``, ``UnsafeChange``
    (missing hints / consent, or a down path through irreversible changes),
    ``DestructivePath`` (a down path that deletes data, unless ``allow_destructive``), and
    ``DriftDetected`` when the deployment's recorded ``fingerprint`` differs from what
    ``expected_fingerprint(source)`` says the version compiles to."""

    s, t = graph.resolve(source).id, graph.resolve(target).id
    if fingerprint is not None and expected_fingerprint is not None:
        expected = expected_fingerprint(s)
        if expected != fingerprint:
            raise DriftDetected(deployment or "?", f"{s} ({expected[:12]})", fingerprint[:12])
    cache = _cache(graph)
    found = cache.plans.get((s, t))
    if found is None:
        if s == t or graph.is_ancestor(s, t):
            found = _expand(graph, graph.path(s, t), "up" if s != t else "none", cache)
        elif graph.is_ancestor(t, s):
            found = _expand(graph, graph.down_path(s, t), "down", cache)
        else:
            raise NoPath(s, t, "they are on different branches; plan to a version that "
                         "descends from both (a merge version)")
        cache.plans[(s, t)] = found
    if not allow_destructive:
        found.refuse_destruction()
    return found.for_deployment(deployment) if deployment else found


def plan_deployment(graph: VersionGraph, source: str, target: str, *,
                    allow_destructive: bool = False) -> Plan:
    """``plan`` with the ``(graph, source, target)`` signature the runner's kit expects;
    destructive down paths stay refused unless bound with ``allow_destructive=True``
    (e.g. ``functools.partial``)."""

    return plan(graph, source, target, allow_destructive=allow_destructive)


def plan_fleet(graph: VersionGraph, deployments: Iterable[tuple[Any, ...]],
               target: str | int, *,
               expected_fingerprint: Callable[[str], str] | None = None,
               allow_destructive: bool = False) -> FleetPlan:
    """Plan every ``(deployment, version[, fingerprint])`` once per source version.

    Errors are per group (an unknown version, a blocked path or a down path that deletes
    data without ``allow_destructive`` does not stop the rest);
    deployments whose fingerprint differs from their version's are listed as drifted and
    not planned."""

    t = graph.resolve(target).id
    resolved: dict[Any, str | None] = {}
    members: dict[str, list[str]] = {}
    errors: dict[str, dict[str, Any]] = {}
    unknown: dict[str, list[str]] = {}
    drifted: list[dict[str, str]] = []
    expected: dict[str, str] = {}
    for row in deployments:
        ref = row[1]
        vid = resolved.get(ref, "")
        if vid == "":
            try:
                vid = graph.resolve(ref).id
            except UnknownVersion:
                vid = None
            resolved[ref] = vid
            if vid is not None:
                members.setdefault(vid, [])
        if vid is None:
            unknown.setdefault(str(ref), []).append(str(row[0]))
            continue
        if expected_fingerprint is not None and len(row) > 2 and row[2] is not None:
            want = expected.get(vid) or expected.setdefault(vid, expected_fingerprint(vid))
            if row[2] != want:
                drifted.append({"deployment": str(row[0]), "version": vid,
                                "expected": want, "actual": str(row[2])})
                continue
        members[vid].append(row[0])
    plans: dict[str, Plan] = {}
    members = {k: v for k, v in members.items() if v}
    for vid in list(members):
        try:
            plans[vid] = plan(graph, vid, t, allow_destructive=allow_destructive)
        except (NoPath, UnsafeChange) as exc:
            errors[vid] = {"error": type(exc).__name__, "message": str(exc),
                           "deployments": len(members[vid])}
    for ref, deps in unknown.items():
        errors[ref] = {"error": "UnknownVersion", "message": f"unknown version {ref!r}",
                       "deployments": len(deps)}
        members[ref] = deps
    return FleetPlan(target=t, plans=plans,
                     members={k: tuple(v) for k, v in members.items()},
                     errors=errors, drifted=tuple(drifted))
