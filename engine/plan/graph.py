"""The version graph: a pure wrapper over a networkx DiGraph of ``SchemaVersion`` objects.

Edges point from a parent to its child ("up" = towards newer versions). The graph never
touches the disk: the loader produces versions, this only connects them, so it can be built
from literals in tests. Queries are cached per instance (the graph is immutable once built)
because the planner asks the same questions for many deployments.
"""

from __future__ import annotations

from functools import cached_property
from typing import Iterable

import networkx as nx

from engine.errors import CycleDetected, MultipleHeads, NoPath, UnknownVersion
from engine.schema.models import SchemaVersion

__all__ = ["VersionGraph"]


class VersionGraph:
    """Versions connected by their ``parents``; parents that do not exist are ignored here
    (``rules.check_versions`` reports them)."""

    def __init__(self, versions: Iterable[SchemaVersion]):
        self._versions: dict[str, SchemaVersion] = {}
        for v in versions:
            self._versions.setdefault(v.id, v)
        g: nx.DiGraph[str] = nx.DiGraph()
        for vid in self._versions:
            g.add_node(vid)
        for v in self._versions.values():
            for p in v.parents:
                if p in self._versions:
                    g.add_edge(p, v.id)
        self.graph = g
        self._by_number: dict[int, list[str]] = {}
        for v in self._versions.values():
            self._by_number.setdefault(v.number, []).append(v.id)
        self._ancestors: dict[str, frozenset[str]] = {}
        self._descendants: dict[str, frozenset[str]] = {}
        self._paths: dict[tuple[str, str], list[str] | None] = {}

    # -- lookup --------------------------------------------------------------------------
    @property
    def versions(self) -> dict[str, SchemaVersion]:
        """id → version (in insertion order)."""

        return self._versions

    def __len__(self) -> int:
        return len(self._versions)

    def __contains__(self, vid: object) -> bool:
        return vid in self._versions

    def _order_key(self, vid: str) -> tuple[int, str]:
        return (self._versions[vid].number, vid)

    def _sorted(self, ids: Iterable[str]) -> list[str]:
        return sorted(ids, key=self._order_key)

    def get(self, vid: str) -> SchemaVersion:
        """The version with this exact id (``UnknownVersion`` otherwise)."""

        try:
            return self._versions[vid]
        except KeyError:
            raise UnknownVersion(str(vid), self._sorted(self._versions)) from None

    def resolve(self, ref: str | int) -> SchemaVersion:
        """A version named by id, number (``3`` or ``"3"``) or ``"head"``."""

        if isinstance(ref, bool):
            raise UnknownVersion(str(ref), self._sorted(self._versions))
        if isinstance(ref, str):
            ref = ref.strip()
            if ref == "head":
                heads = self.heads()
                if len(heads) == 1:
                    return self._versions[heads[0]]
                if not heads:
                    raise UnknownVersion("head", self._sorted(self._versions))
                raise MultipleHeads(heads)
            if ref in self._versions:
                return self._versions[ref]
            if ref.isdigit():
                ref = int(ref)
        if isinstance(ref, int):
            ids = self._by_number.get(ref, [])
            if len(ids) == 1:
                return self._versions[ids[0]]
            if len(ids) > 1:
                raise UnknownVersion(f"{ref} (ambiguous: {', '.join(sorted(ids))})",
                                     self._sorted(self._versions))
        raise UnknownVersion(str(ref), self._sorted(self._versions))

    def _id(self, ref: str | int) -> str:
        if isinstance(ref, str) and ref in self._versions:
            return ref
        return self.resolve(ref).id

    # -- shape ---------------------------------------------------------------------------
    @cached_property
    def _heads(self) -> list[str]:
        return self._sorted(n for n in self.graph if self.graph.out_degree(n) == 0)

    @cached_property
    def _bases(self) -> list[str]:
        return self._sorted(n for n in self.graph if self.graph.in_degree(n) == 0)

    def heads(self) -> list[str]:
        """Versions no other version builds on, oldest first."""

        return list(self._heads)

    def bases(self) -> list[str]:
        """Versions without (existing) parents."""

        return list(self._bases)

    def parents(self, vid: str | int) -> list[str]:
        return self._sorted(self.graph.predecessors(self._id(vid)))

    def children(self, vid: str | int) -> list[str]:
        return self._sorted(self.graph.successors(self._id(vid)))

    def merges(self) -> list[str]:
        """Versions with two or more parents."""

        return self._sorted(n for n in self.graph if self.graph.in_degree(n) >= 2)

    def ancestors(self, vid: str | int) -> frozenset[str]:
        """Every version ``vid`` descends from (not ``vid`` itself)."""

        key = self._id(vid)
        found = self._ancestors.get(key)
        if found is None:
            found = self._ancestors[key] = frozenset(nx.ancestors(self.graph, key))
        return found

    def descendants(self, vid: str | int) -> frozenset[str]:
        """Every version that descends from ``vid`` (not ``vid`` itself)."""

        key = self._id(vid)
        found = self._descendants.get(key)
        if found is None:
            found = self._descendants[key] = frozenset(nx.descendants(self.graph, key))
        return found

    def is_ancestor(self, a: str | int, b: str | int) -> bool:
        """True when ``a`` is a strict ancestor of ``b``."""

        return self._id(a) in self.ancestors(b)

    @cached_property
    def _cycle(self) -> list[str] | None:
        try:
            edges = nx.find_cycle(self.graph, orientation="original")
        except nx.NetworkXNoCycle:
            return None
        cycle = [edge[0] for edge in edges]
        return cycle + [cycle[0]]

    def find_cycle(self) -> list[str] | None:
        """One cycle as ``[a, b, ..., a]``, or ``None`` when the graph is acyclic."""

        return None if self._cycle is None else list(self._cycle)

    @cached_property
    def _topo(self) -> list[str]:
        if self._cycle is not None:
            raise CycleDetected(self._cycle)
        return list(nx.lexicographical_topological_sort(self.graph, key=self._order_key))

    def topological_order(self) -> list[str]:
        """Parents before children; ties broken by number then id (deterministic)."""

        return list(self._topo)

    # -- paths ---------------------------------------------------------------------------
    def path(self, source: str | int, target: str | int) -> list[str]:
        """The shortest chain ``[source, ..., target]`` going from parents to children.

        ``[source]`` when they are the same version; ``NoPath`` when ``target`` does not
        descend from ``source``. Ties between equally short paths go to the one whose
        versions sort first (deterministic plans).
        """

        s, t = self._id(source), self._id(target)
        key = (s, t)
        if key not in self._paths:
            self._paths[key] = self._shortest(s, t)
        found = self._paths[key]
        if found is None:
            reason = ("it is an ancestor: use down_path" if self.is_ancestor(t, s)
                      else "they are on different branches")
            raise NoPath(s, t, reason)
        return list(found)

    def down_path(self, source: str | int, target: str | int) -> list[str]:
        """The chain ``[source, ..., target]`` going back to an ancestor ``target``."""

        s, t = self._id(source), self._id(target)
        key = (t, s)
        if key not in self._paths:
            self._paths[key] = self._shortest(t, s)
        found = self._paths[key]
        if found is None:
            raise NoPath(s, t, f"{t!r} is not an ancestor of {s!r}")
        return list(reversed(found))

    def _shortest(self, s: str, t: str) -> list[str] | None:
        if s == t:
            return [s]
        if s not in self.ancestors(t):
            return None
        # Breadth-first search from s among t's ancestors (whatever s reaches there lies
        # between the two), visiting children in (number, id) order so the first path
        # found is also the canonical one. One cached ancestor set per target serves every
        # source of a fleet.
        between = self.ancestors(t) | {t}
        prev: dict[str, str] = {}
        frontier = [s]
        seen = {s}
        while frontier:
            nxt: list[str] = []
            for node in frontier:
                for child in self._sorted(self.graph.successors(node)):
                    if child in seen or child not in between:
                        continue
                    seen.add(child)
                    prev[child] = node
                    if child == t:
                        out = [t]
                        while out[-1] != s:
                            out.append(prev[out[-1]])
                        return list(reversed(out))
                    nxt.append(child)
            frontier = nxt
        return None
