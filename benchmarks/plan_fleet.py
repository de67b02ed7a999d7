"""Planning benchmark: 100,000 deployments over 50 source versions of a 200-version graph.

    python benchmarks/plan_fleet.py [--deployments N] [--versions N] [--sources N] [--runs N]

Times ``plan_fleet`` (groups deployments by source version and plans each group once;
caches cleared before every run, so each run is cold) against a naive planner that, for
every deployment, searches the path and expands it from scratch. The naive planner is timed
on a sample and extrapolated (running it 100,000 times would take hours); the table says so.
The target: the fleet plan in at most 1 s on one core.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
import networkx as nx  # noqa: E402

from engine.plan.graph import VersionGraph  # noqa: E402
from engine.plan.planner import _Cache, _expand, clear_caches, plan_fleet  # noqa: E402
from engine.schema.models import (  # noqa: E402
    DbIndex,
    FieldDef,
    Float64V,
    LiteralV,
    MigrationOp,
    Schema,
    SchemaVersion,
    StringV,
    Table,
    UnionV,
)

TARGET_SECONDS = 1.0


def _table(name: str, extra: dict[str, FieldDef], indexes: tuple[DbIndex, ...]) -> Table:
    fields = {
        "userId": FieldDef(type=StringV()),
        "title": FieldDef(type=StringV(), optional=True),
        "status": FieldDef(type=UnionV(members=tuple(LiteralV(value=v) for v in ("a", "b", "c")))),
        "createdAt": FieldDef(type=Float64V()),
        **extra,
    }
    return Table(name=name, fields=fields,
                 indexes=(DbIndex(name="by_user", fields=("userId",)),) + indexes)


class _Builder:
    """A synthetic but realistic history: each version adds a field (optional, or required
    with a backfill) or an index to one of 12 tables; every 10 versions a side branch adds
    a field in parallel and is merged back."""

    def __init__(self, tables: int = 12):
        self.names = [f"table{i:02d}" for i in range(tables)]
        self.extra: dict[str, dict[str, FieldDef]] = {n: {} for n in self.names}
        self.indexes: dict[str, tuple[DbIndex, ...]] = {n: () for n in self.names}
        self.versions: list[SchemaVersion] = []
        self.rng = random.Random(7)

    def schema(self, extra=None) -> Schema:
        extra = extra or self.extra
        return Schema(tables={n: _table(n, extra[n], self.indexes[n]) for n in self.names})

    def add(self, parents: tuple[str, ...], hints: tuple[MigrationOp, ...], extra=None,
            note: str = "") -> str:
        number = len(self.versions) + 1
        vid = f"{number:04d}_{note or 'step'}"
        self.versions.append(SchemaVersion(id=vid, number=number, parents=parents,
                                           schema=self.schema(extra), migrations=hints,
                                           description=note))
        return vid

    def change(self, k: int) -> tuple[MigrationOp, ...]:
        table = self.rng.choice(self.names)
        kind = k % 3
        if kind == 0:
            self.extra[table] = {**self.extra[table], f"f{k}": FieldDef(type=StringV(), optional=True)}
            return ()
        if kind == 1:
            self.extra[table] = {**self.extra[table], f"f{k}": FieldDef(type=Float64V())}
            return (MigrationOp(op="backfill", table=table, field=f"f{k}", value=0),)
        if self.extra[table] and len(self.indexes[table]) < 10:
            field = sorted(self.extra[table])[-1]
            self.indexes[table] = self.indexes[table] + (
                DbIndex(name=f"by_{field}_{k}", fields=(field,)),)
        return ()

    def build(self, total: int) -> VersionGraph:
        head = self.add((), (), note="base")
        k = 0
        while len(self.versions) < total:
            k += 1
            if k % 10 == 0 and len(self.versions) + 3 <= total:
                table = self.rng.choice(self.names)
                side = {**self.extra, table: {**self.extra[table],
                                              f"b{k}": FieldDef(type=StringV(), optional=True)}}
                branch = self.add((head,), (), extra=side, note="branch")
                main_hints = self.change(k)
                main = self.add((head,), main_hints, note="main")
                self.extra[table] = {**self.extra[table], f"b{k}": FieldDef(type=StringV(), optional=True)}
                # the merge repeats the main side's hints for the edge from the branch
                head = self.add((main, branch), main_hints, note="merge")
            else:
                head = self.add((head,), self.change(k))
        return VersionGraph(self.versions)


def build_fleet(graph: VersionGraph, deployments: int, sources: int, target: str,
                seed: int = 11) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    candidates = sorted(graph.ancestors(target))
    chosen = rng.sample(candidates, min(sources, len(candidates)))
    return [(f"user_{i:06d}", chosen[i % len(chosen)]) for i in range(deployments)]


def naive_plan_all(graph: VersionGraph, fleet: list[tuple[str, str]], target: str) -> None:
    """Per deployment: resolve, search the path, expand it with nothing shared."""

    for _dep, version in fleet:
        source = graph.resolve(version).id
        path = nx.shortest_path(graph.graph, source, target)
        _expand(graph, path, "up", _Cache())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deployments", type=int, default=100_000)
    ap.add_argument("--versions", type=int, default=200)
    ap.add_argument("--sources", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--naive-sample", type=int, default=100)
    _record.add_json_out(ap)
    args = ap.parse_args(argv)
    start = _record.started()

    graph = _Builder().build(args.versions)
    target = graph.heads()[0]
    fleet = build_fleet(graph, args.deployments, args.sources, target)
    print(f"graph: {len(graph)} versions, {len(graph.merges())} merges, head {target}")
    print(f"fleet: {len(fleet):,} deployments on {len({v for _, v in fleet})} source versions")

    times = []
    result = None
    for _ in range(args.runs):
        clear_caches()
        t0 = time.perf_counter()
        result = plan_fleet(graph, fleet, target)
        times.append(time.perf_counter() - t0)
    assert result is not None
    if result.errors:
        first = next(iter(result.errors.values()))["message"].splitlines()[:4]
        raise SystemExit("planning failed: " + " / ".join(first))
    grouped = statistics.median(times)
    deploys = max(p.deploys for p in result.plans.values())

    sample = fleet[: args.naive_sample]
    naive_times = []
    for _ in range(max(1, min(3, args.runs))):
        t0 = time.perf_counter()
        naive_plan_all(graph, sample, target)
        naive_times.append(time.perf_counter() - t0)
    per_deployment = statistics.median(naive_times) / len(sample)
    naive_total = per_deployment * len(fleet)

    rows = [
        ("planner", "deployments", "median seconds", "note"),
        ("plan_fleet (grouped)", f"{len(fleet):,}", f"{grouped:.3f}",
         f"median of {args.runs} cold runs; {len(result.plans)} plans, <= {deploys} deploys each"),
        ("naive per deployment", f"{len(fleet):,}", f"{naive_total:.1f}",
         f"extrapolated from {len(sample)} deployments ({per_deployment * 1000:.2f} ms each)"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"ratio naive / grouped: {naive_total / grouped:,.0f}x")
    ok = grouped <= TARGET_SECONDS
    print(f"target <= {TARGET_SECONDS:.1f} s: {'met' if ok else 'NOT met'}")
    _record.write("plan_fleet", args.json_out, start, {
        "deployments": len(fleet), "versions": len(graph), "merges": len(graph.merges()),
        "sources": len({v for _, v in fleet}), "runs": args.runs,
        "grouped_median_s": round(grouped, 4), "grouped_runs_s": [round(t, 4) for t in times],
        "plans": len(result.plans), "max_deploys": deploys,
        "naive_sample": len(sample), "naive_ms_per_deployment": round(per_deployment * 1000, 4),
        "naive_extrapolated_s": round(naive_total, 2),
        "ratio": round(naive_total / grouped, 1), "target_s": TARGET_SECONDS, "met": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
