"""Engine ceiling: the engine against instant in-process deployments, no network, no Node.js.

    python benchmarks/engine_ceiling.py                      # N = 1,000 and 10,000
    python benchmarks/engine_ceiling.py --count 1000 --profile
    python benchmarks/engine_ceiling.py --quick               # small N (CI)

Setup (not measured): N in-memory deployments (``engine.testing.InMemoryFleet``: a real
SQLite registry and vault) connected at version 1 and seeded with the demo's realistic
content. Then ``rollout`` to the head runs exactly as in production — the real HTTP
clients, retry policy, push adapters and runner — over an httpx transport that answers
from the in-memory deployments (``engine.testing.mock_transport``): every call is a real
HTTP request and response, only the socket is missing. The push requests are made from
the bundles themselves (no CLI capture).

Measured: engine CPU per deployment (process CPU time minus the CPU the in-memory
deployments spent answering, / N), round trips per deployment (counted at the transport,
by endpoint and by function), deployments per second for one process (wall clock, and
the ceiling N / engine CPU), and the rollout bookkeeping's cost per deployment at 1k, 10k
and 100k (``benchmarks/bookkeeping.py``). ``--profile`` adds the hottest functions and
files of the engine.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import importlib.abc
import pstats
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _record  # noqa: E402

from engine.config import EngineConfig  # noqa: E402
from engine.convex.connector import HttpConnector  # noqa: E402
from engine.demo.seed import seed_user  # noqa: E402
from engine.fleet.artifacts import PlanKit  # noqa: E402
from engine.fleet.rollout import RolloutOptions, rollout  # noqa: E402
from engine.schema.loader import load_versions  # noqa: E402
from engine.testing.fleet import InMemoryFleet  # noqa: E402
from engine.testing.mock_transport import ConvexMockTransport, InstantPayloads  # noqa: E402

OFF_CRITICAL_PATH = "/api/deploy2/report_push_completed"  # fire and forget, like the CLI
TARGETS = {"round_trips": 12, "cpu_ms": 25.0, "deployments_per_s": 40.0,
           "bookkeeping_ratio": 2.0}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _ImportWatch(importlib.abc.MetaPathFinder):
    """Counts how often the import system searches for a module: once it is imported it
    is found in ``sys.modules`` without a search, so every further search is an import
    that failed before (httpcore asks for ``sniffio`` on every lock set-up)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.searches: Counter[str] = Counter()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in self.names:
            self.searches[name] += 1
        return None


def _date_to_ms(value: Any) -> Any:
    """0005's ``usageRecords.date`` conversion (TypeScript in the version file) in Python."""

    if isinstance(value, (int, float)):
        return value
    moment = dt.datetime.strptime(str(value), "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    return moment.timestamp() * 1000


def python_code_conversions() -> None:
    """The in-memory deployments run data steps with the Python reference of the
    generated mutations, which cannot run a version's TypeScript ``code``; the shipped
    versions have one such conversion, given here in Python so the rollout migrates the
    same documents a real deployment would."""

    import engine.testing.functions as functions

    real = functions.apply_step

    def apply(doc: dict[str, Any], step: Any) -> dict[str, Any] | None:
        p = step.params
        if step.op == "convert" and p.get("code") and (step.table, p.get("field")) == (
                "usageRecords", "date"):
            out = dict(doc)
            if "date" in out:
                out["date"] = _date_to_ms(out["date"])
            return out
        return real(doc, step)

    functions.apply_step = apply  # type: ignore[assignment]


def build_fleet(work: Path, n: int, config: EngineConfig, versions: Path) -> InMemoryFleet:
    """N users at version 1, seeded; one compile of the v1 bundle for all of them."""

    fleet = InMemoryFleet(work, versions=versions, config=config)
    bundle = fleet.bundle(1)
    t0 = time.monotonic()
    for i in range(n):
        uid = f"user{i:06d}"
        dep = fleet.add(uid, version=bundle.version_id, fingerprint=bundle.fingerprint)
        dep.deployed = bundle
        seed_user(dep, uid)
        if (i + 1) % 1000 == 0:
            _log(f"  setup: {i + 1}/{n} deployments seeded ({time.monotonic() - t0:.0f} s)")
    return fleet


def measure(n: int, *, concurrency: int, versions: Path, profile: bool,
            top: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="byod-ceiling-") as tmp:
        work = Path(tmp)
        config = EngineConfig(registry_path=work / "registry.sqlite3", versions_dir=versions)
        _log(f"setup: {n} in-memory deployments at version 1")
        fleet = build_fleet(work, n, config, versions)
        try:
            kit = PlanKit(load_versions(versions, config), config)
            target = kit.resolve("head")
            payloads = InstantPayloads(config.convex_version)
            transport = ConvexMockTransport(fleet.deployments, bundles=payloads.bundle)
            connector = HttpConnector(config, kind="push", payload_cache=payloads,
                                      transport=transport)
            options = RolloutOptions(canary=1, waves=("100%",), concurrency=concurrency,
                                     max_failures="100%", deployer="push")
            watch = _ImportWatch(("sniffio",))
            sys.meta_path.insert(0, watch)
            profiler = cProfile.Profile() if profile else None
            _log(f"rollout to {target} over {n} deployments, concurrency {concurrency}")
            wall0, cpu0 = time.perf_counter(), time.process_time()
            try:
                if profiler is not None:
                    profiler.enable()
                report = rollout(target, store=fleet.store, vault=fleet.vault, config=config,
                                 versions=kit, connector=connector, options=options)
            finally:
                if profiler is not None:
                    profiler.disable()
                wall = time.perf_counter() - wall0
                cpu = time.process_time() - cpu0
                sys.meta_path.remove(watch)
                connector.close()
            at_head = sum(1 for uid, dep in fleet.users.items() if dep.version == target)
            failed = [r for r in report.rows if r.get("status") == "failed"]
        finally:
            fleet.close()
    engine_cpu = max(0.0, cpu - transport.handler_cpu_s)
    result: dict[str, Any] = {
        "deployments": n, "concurrency": concurrency, "target": target,
        "status": report.status, "counts": report.counts, "at_head": at_head,
        "failures": [{k: r.get(k) for k in ("user_id", "error_type", "error")}
                     for r in failed[:5]],
        "wall_s": round(wall, 3), "process_cpu_s": round(cpu, 3),
        "deployments_cpu_s": round(transport.handler_cpu_s, 3),
        "engine_cpu_ms_per_deployment": round(engine_cpu * 1000 / n, 2),
        "process_cpu_ms_per_deployment": round(cpu * 1000 / n, 2),
        "round_trips_per_deployment": round(transport.requests / n, 2),
        "round_trips_off_critical_path": round(
            transport.by_endpoint[OFF_CRITICAL_PATH] / n, 2),
        "round_trips_by_endpoint": {k: round(v / n, 2) for k, v in
                                    sorted(transport.by_endpoint.items())},
        "function_calls_by_path": {k: round(v / n, 2) for k, v in
                                   transport.by_function.most_common()},
        "deployments_per_s_wall": round(n / wall, 1) if wall else None,
        "deployments_per_s_engine": round(n / engine_cpu, 1) if engine_cpu else None,
        "documents": sum(int(r.get("processed") or 0) for r in report.rows),
        "sniffio_searches": watch.searches["sniffio"],
    }
    if profiler is not None:
        result["profile"] = _hotspots(profiler, top)
    return result


def _hotspots(profiler: cProfile.Profile, top: int) -> dict[str, Any]:
    """The functions with the most own time, and own time summed per file."""

    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in raw.values()) or 1.0
    functions, files = [], Counter[str]()
    for (filename, line, name), (_cc, calls, tt, ct, _callers) in raw.items():
        short = _short(filename)
        files[short] += tt
        functions.append((tt, ct, calls, f"{short}:{line}({name})"))
    functions.sort(reverse=True)
    return {
        "total_s": round(total, 3),
        "functions": [{"own_s": round(tt, 3), "cumulative_s": round(ct, 3), "calls": calls,
                       "where": where} for tt, ct, calls, where in functions[:top]],
        "files": [{"own_s": round(tt, 3), "share": round(tt / total, 3), "file": f}
                  for f, tt in files.most_common(top)],
    }


def _short(filename: str) -> str:
    text = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in text:
            return text.split(marker, 1)[1]
    root = str(ROOT).replace("\\", "/") + "/"
    return text.removeprefix(root)


def bookkeeping(sizes: list[int], samples: int) -> dict[str, Any] | None:
    """The rollout bookkeeping per deployment at each size (``benchmarks/bookkeeping.py``)."""

    try:
        from bookkeeping import bookkeeping_cost  # type: ignore[import-not-found]
    except ImportError as exc:
        _log(f"bookkeeping: benchmarks/bookkeeping.py is not available ({exc})")
        return None
    rows: dict[str, float | None] = {}
    details: dict[str, Any] = {}
    for n in sizes:
        _log(f"bookkeeping at {n:,} deployments")
        cost = bookkeeping_cost(n, samples)
        rows[str(n)] = _per_deployment_ms(cost)
        details[str(n)] = cost
    values = [v for v in rows.values() if v]
    ratio = round(values[-1] / values[0], 2) if len(values) > 1 and values[0] else None
    return {"samples": samples, "ms_per_deployment": rows, "ratio_largest_smallest": ratio,
            "measured": details}


def _per_deployment_ms(value: Any) -> float | None:
    """``bookkeeping_cost``'s answer as CPU milliseconds per deployment (a number is
    seconds; a mapping names its unit)."""

    if isinstance(value, (int, float)):
        return round(float(value) * 1000, 4)
    if isinstance(value, dict):
        for key, scale in (("cpu_ms", 1.0), ("ms_per_deployment", 1.0),
                           ("per_deployment_ms", 1.0), ("ms", 1.0), ("s_per_deployment", 1000.0),
                           ("per_deployment_s", 1000.0), ("seconds", 1000.0)):
            if isinstance(value.get(key), (int, float)):
                return round(float(value[key]) * scale, 4)
    return None


def report(results: dict[str, Any]) -> None:
    runs = results["runs"]
    line = "-" * 92
    print(f"\nengine against instant in-process deployments: rollout v1 -> "
          f"{runs[0]['target'] if runs else '?'} with data, push deployer")
    print(line)
    print(f"{'deployments':>12}{'engine CPU ms/dep':>19}{'round trips/dep':>17}"
          f"{'deps/s (wall)':>15}{'deps/s (engine CPU)':>21}{'status':>11}")
    print(line)
    for r in runs:
        print(f"{r['deployments']:>12,}{r['engine_cpu_ms_per_deployment']:>19.2f}"
              f"{r['round_trips_per_deployment']:>17.2f}{r['deployments_per_s_wall'] or 0:>15.1f}"
              f"{r['deployments_per_s_engine'] or 0:>21.1f}{r['status']:>11}")
    print(line)
    print(f"{'target':>12}{'<= ' + str(TARGETS['cpu_ms']):>19}{'<= ' + str(TARGETS['round_trips']):>17}"
          f"{'':>15}{'>= ' + str(TARGETS['deployments_per_s']):>21}")
    for r in runs:
        ok = (r["engine_cpu_ms_per_deployment"] <= TARGETS["cpu_ms"],
              r["round_trips_per_deployment"] <= TARGETS["round_trips"],
              (r["deployments_per_s_engine"] or 0) >= TARGETS["deployments_per_s"])
        verdict = ", ".join(f"{name} {'met' if good else 'NOT met'}" for name, good in
                            zip(("CPU", "round trips", "deployments/s"), ok))
        print(f"N = {r['deployments']:,}: {verdict}; outcomes {r['counts']}, "
              f"{r['at_head']}/{r['deployments']} at the head, {r['documents']:,} documents; "
              f"process CPU {r['process_cpu_ms_per_deployment']:.2f} ms/dep of which the "
              f"in-memory deployments {r['deployments_cpu_s'] * 1000 / r['deployments']:.2f}; "
              f"failed `import sniffio`: {max(0, r['sniffio_searches'] - 1)}")
        for f in r["failures"]:
            print(f"  failed {f['user_id']}: {f['error_type']}: {str(f['error'])[:160]}")
    if runs:
        r = runs[-1]
        print(f"\nround trips per deployment by endpoint (N = {r['deployments']:,}; "
              f"{r['round_trips_off_critical_path']:.2f} of them off the critical path: "
              f"{OFF_CRITICAL_PATH.rsplit('/', 1)[1]}):")
        for endpoint, count in r["round_trips_by_endpoint"].items():
            print(f"  {endpoint:<38}{count:>8.2f}")
        print("function calls per deployment:")
        for path, count in r["function_calls_by_path"].items():
            print(f"  {path:<38}{count:>8.2f}")
    book = results.get("bookkeeping")
    if book:
        cells = ", ".join(f"{int(n):,}: {ms} ms" for n, ms in book["ms_per_deployment"].items())
        ratio = book["ratio_largest_smallest"]
        verdict = "met" if ratio is not None and ratio <= TARGETS["bookkeeping_ratio"] \
            else "NOT met"
        print(f"\nbookkeeping per deployment ({cells}); largest / smallest {ratio}x "
              f"(target within {TARGETS['bookkeeping_ratio']:g}x: {verdict})")
    for r in runs:
        prof = r.get("profile")
        if not prof:
            continue
        print(f"\nprofile (N = {r['deployments']:,}, {prof['total_s']} s own time in total)")
        print("  hottest files (own time):")
        for f in prof["files"]:
            print(f"    {f['own_s']:>8.3f} s {f['share']:>6.1%}  {f['file']}")
        print("  hottest functions (own time):")
        for f in prof["functions"]:
            print(f"    {f['own_s']:>8.3f} s  cum {f['cumulative_s']:>7.3f} s  "
                  f"{f['calls']:>9,}x  {f['where']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, nargs="*", default=None,
                    help="fleet sizes to measure (default 1000 10000; none: bookkeeping only)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--versions", type=Path, default=ROOT / "schema_versions")
    ap.add_argument("--bookkeeping", type=int, nargs="*", default=None,
                    help="fleet sizes of the bookkeeping measurement (default 1000 10000 "
                         "100000; none: skip it)")
    ap.add_argument("--bookkeeping-samples", type=int, default=200)
    ap.add_argument("--profile", action="store_true", help="profile the first size")
    ap.add_argument("--top", type=int, default=25, help="rows of the profile")
    ap.add_argument("--quick", action="store_true",
                    help="small default sizes for CI: 20 deployments, bookkeeping at 100 and "
                         "1,000 with 20 samples")
    _record.add_json_out(ap)
    args = ap.parse_args(argv)
    if args.count is None:
        args.count = [20] if args.quick else [1000, 10_000]
    if args.bookkeeping is None:
        args.bookkeeping = [100, 1000] if args.quick else [1000, 10_000, 100_000]
    if args.quick:
        args.bookkeeping_samples = min(args.bookkeeping_samples, 20)
    python_code_conversions()
    start = _record.started()
    runs = [measure(n, concurrency=args.concurrency, versions=args.versions,
                    profile=args.profile and i == 0, top=args.top)
            for i, n in enumerate(args.count)]
    results: dict[str, Any] = {"targets": TARGETS, "quick": args.quick, "runs": runs,
                               "bookkeeping": bookkeeping(args.bookkeeping,
                                                          args.bookkeeping_samples)
                               if args.bookkeeping else None}
    report(results)
    _record.write("engine_ceiling", args.json_out, start, results)
    ok = all(r["status"] == "completed" and r["at_head"] == r["deployments"] for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
