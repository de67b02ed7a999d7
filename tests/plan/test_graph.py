"""VersionGraph built from literals: shape, ancestry, resolution, paths, speed."""

from __future__ import annotations

import pytest

from engine.errors import CycleDetected, MultipleHeads, NoPath, UnknownVersion
from engine.plan.graph import VersionGraph
from engine.schema.models import Schema, SchemaVersion


def v(vid: str, *parents: str) -> SchemaVersion:
    return SchemaVersion(id=vid, number=int(vid.split("_")[0]), parents=parents,
                         schema=Schema())


#        2_b ─┐
# 1_a ──┤     ├── 4_m ── 5_e
#        3_c ─┘
DIAMOND = [v("1_a"), v("2_b", "1_a"), v("3_c", "1_a"), v("4_m", "2_b", "3_c"), v("5_e", "4_m")]


@pytest.fixture
def g() -> VersionGraph:
    return VersionGraph(DIAMOND)


def test_shape(g: VersionGraph) -> None:
    assert list(g.versions) == ["1_a", "2_b", "3_c", "4_m", "5_e"]
    assert g.get("4_m").parents == ("2_b", "3_c")
    assert g.heads() == ["5_e"] and g.bases() == ["1_a"]
    assert g.parents("4_m") == ["2_b", "3_c"] and g.children("1_a") == ["2_b", "3_c"]
    assert g.merges() == ["4_m"]
    assert g.ancestors("4_m") == {"1_a", "2_b", "3_c"}
    assert g.descendants("3_c") == {"4_m", "5_e"}
    assert g.is_ancestor("1_a", "5_e") and not g.is_ancestor("5_e", "1_a")
    assert not g.is_ancestor("2_b", "3_c") and not g.is_ancestor("2_b", "2_b")
    assert g.find_cycle() is None
    assert g.topological_order() == ["1_a", "2_b", "3_c", "4_m", "5_e"]
    assert len(g) == 5 and "3_c" in g


def test_resolve(g: VersionGraph) -> None:
    assert g.resolve("3_c").id == "3_c"
    assert g.resolve(3).id == "3_c"
    assert g.resolve("3").id == "3_c"
    assert g.resolve("head").id == "5_e"
    with pytest.raises(UnknownVersion) as info:
        g.resolve("9_z")
    assert info.value.known == ["1_a", "2_b", "3_c", "4_m", "5_e"]
    with pytest.raises(UnknownVersion):
        g.resolve(9)
    with pytest.raises(UnknownVersion):
        g.get("nope")


def test_multiple_heads() -> None:
    g = VersionGraph(DIAMOND[:3])
    assert g.heads() == ["2_b", "3_c"]
    with pytest.raises(MultipleHeads) as info:
        g.resolve("head")
    assert info.value.heads == ["2_b", "3_c"]


def test_duplicate_numbers_are_ambiguous() -> None:
    g = VersionGraph([v("1_a"), v("2_b", "1_a"), v("2_c", "1_a")])
    with pytest.raises(UnknownVersion, match="ambiguous"):
        g.resolve(2)
    assert g.resolve("2_c").id == "2_c"


def test_paths(g: VersionGraph) -> None:
    assert g.path("1_a", "5_e") == ["1_a", "2_b", "4_m", "5_e"]  # ties: lowest version first
    assert g.path(3, "head") == ["3_c", "4_m", "5_e"]
    assert g.path("4_m", "4_m") == ["4_m"]
    assert g.down_path("5_e", "1_a") == ["5_e", "4_m", "2_b", "1_a"]
    assert g.down_path("5_e", "3_c") == ["5_e", "4_m", "3_c"]
    with pytest.raises(NoPath, match="down_path"):
        g.path("5_e", "1_a")
    with pytest.raises(NoPath, match="different branches"):
        g.path("2_b", "3_c")
    with pytest.raises(NoPath, match="not an ancestor"):
        g.down_path("2_b", "3_c")


def test_path_results_are_not_shared(g: VersionGraph) -> None:
    first = g.path("1_a", "5_e")
    first.append("junk")
    assert g.path("1_a", "5_e") == ["1_a", "2_b", "4_m", "5_e"]


def test_shortest_path_skips_long_branch() -> None:
    versions = [v("1_a"), v("2_b", "1_a"), v("3_c", "2_b"), v("4_d", "3_c"),
                v("5_m", "4_d", "1_a")]
    assert VersionGraph(versions).path(1, 5) == ["1_a", "5_m"]


def test_cycles() -> None:
    g = VersionGraph([v("1_a", "3_c"), v("2_b", "1_a"), v("3_c", "2_b"), v("4_d")])
    cycle = g.find_cycle()
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"1_a", "2_b", "3_c"}
    with pytest.raises(CycleDetected):
        g.topological_order()


def test_missing_parents_are_ignored_by_the_graph() -> None:
    g = VersionGraph([v("1_a"), v("2_b", "0_ghost")])
    assert g.bases() == ["1_a", "2_b"] and g.parents("2_b") == []


def test_repeated_path_queries_are_cached() -> None:
    """Planning a fleet asks for the same paths again and again: the answers are cached
    (the timing itself lives in benchmarks/plan_fleet.py, not in a unit test)."""

    chain = [v("1_v")] + [v(f"{i}_v", f"{i - 1}_v") for i in range(2, 201)]
    g = VersionGraph(chain)
    first = g.path(1, 200)
    calls = []
    g._shortest = lambda s, t: calls.append((s, t))  # type: ignore[method-assign]
    again = g.path(1, 200)
    assert again == first and calls == []  # answered from the cache, no new search
    again.append("mutated")
    assert g.path(1, 200) == first  # callers get copies; the cache cannot be corrupted
    assert g.path(1, "head")[-1] == "200_v" and len(first) == 200
    assert all(g.is_ancestor(f"{s}_v", "200_v") for s in range(1, 200))
