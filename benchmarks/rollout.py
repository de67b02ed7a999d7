"""Rollout benchmark: this engine against the reference design, side by side, one run.

    python benchmarks/rollout.py --count 200 --reference-sample 2 --concurrency 32
    python benchmarks/rollout.py --count 40 --rtt-ms 50     # every request waits 50 ms
    python benchmarks/rollout.py --count 4 --reference-sample 1   # a few minutes (CI)

Setup (not timed): ``count + sample`` local deployments in one harness process, each
connected at version 1 and seeded with realistic content (``engine.demo.seed``). Then:

(a) **Reference design**, on ``sample`` of them, sequentially: per deployment a fresh
    project directory with its own ``npm install --prefer-offline`` of the pinned convex
    package, then one redeploy per migration edge (the widened bundle of that edge when it
    has data steps, then the edge's version), with data migrated by a naive loop (one
    document per mutation call). Its per-deployment cost is measured and extrapolated.
(b) **This engine**: ``rollout`` to the target over the other ``count`` deployments with
    the given concurrency (fused plans: at most two deploys per deployment; data steps in
    adaptive pages over async HTTP). With ``--deployer push`` (the default) each distinct
    bundle is built once by the real CLI (timed: the cache starts empty) and its push
    request is sent to every deployment over HTTP; ``--deployer cli`` runs the CLI per
    deploy, bounded by CPU.

With ``--rtt-ms N`` every local deployment answers each request N ms late (the local
harness's ``delay`` fault, switched on after setup), as if every call crossed a network
with that round-trip time; both designs run under it.

The ratio compares **wall time per deployment**: the reference's, measured one deployment
at a time, against the engine's wall time for the whole rollout at ``--concurrency C``
divided by its deployments — so it folds in the engine's parallelism. The engine's own CPU
per deployment (this process, and the CLI captures it ran) is printed beside it.

Then the data-step throughput on one deployment (no delay): the engine's generated mutation,
paged the way the runner pages it, against a hand-written mutation doing the same change in
batches, called in a loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _record  # noqa: E402

from engine.bundle.compiler import compile_bundle  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from engine.convex.capture import PayloadCache  # noqa: E402
from engine.convex.connector import HttpConnector  # noqa: E402
from engine.convex.deploy_cli import CliDeployAdapter  # noqa: E402
from engine.convex.http import AsyncConvexHttpClient, ConvexHttpClient  # noqa: E402
from engine.convex.toolchain import Toolchain  # noqa: E402
from engine.demo.seed import seed_user  # noqa: E402
from engine.fleet.artifacts import PlanKit, step_version  # noqa: E402
from engine.fleet.rollout import RolloutOptions, rollout  # noqa: E402
from engine.lifecycle.connect import connect  # noqa: E402
from engine.local import LocalFleet  # noqa: E402
from engine.plan.planner import plan  # noqa: E402
from engine.ports.deployment import DeploymentTarget  # noqa: E402
from engine.registry.sqlite import SqliteStore  # noqa: E402
from engine.schema.loader import load_versions  # noqa: E402
from engine.vault import Vault, generate_key  # noqa: E402


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def harness_rss_mib(fleet: LocalFleet) -> float | None:
    """Resident memory of the one process hosting every local deployment."""

    try:
        for line in Path(f"/proc/{fleet.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def setup_fleet(work: Path, n: int, config: EngineConfig, v1: Any, store: SqliteStore,
                vault: Vault, workers: int) -> tuple[LocalFleet, list[str]]:
    """Connect every deployment at version 1 (pushing its one captured request: setup is
    not what is measured) and seed it."""

    fleet = LocalFleet.start(n, work / "fleet", timeout=120)
    users = [f"user{i:04d}" for i in range(n)]
    setup = HttpConnector(config, kind="push",
                          payload_cache=PayloadCache(work / "setup-payloads",
                                                 timeout=config.deploy_timeout_s))

    def one(args: tuple[str, Any]) -> None:
        uid, dep = args
        connect(uid, dep.url, dep.admin_key, store=store, vault=vault, config=config,
                versions=[v1], allow_insecure_local=True, connector=setup)
        with ConvexHttpClient(vault.target_for(store.get_user(uid))) as client:
            seed_user(client, uid)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for k, _ in enumerate(pool.map(one, zip(users, fleet.deployments)), start=1):
            if k % 10 == 0 or k == n:
                _log(f"  setup: {k}/{n} connected and seeded ({time.monotonic() - t0:.0f}s)")
    return fleet, users


def reference_one(uid: str, store: SqliteStore, vault: Vault, config: EngineConfig,
                  kit: PlanKit, target: str, work: Path) -> dict[str, Any]:
    """The reference design for one deployment (sequential, fresh install, per edge)."""

    t0 = time.monotonic()
    project = work / f"ref-{uid}"
    project.mkdir(parents=True)
    bundle = kit.version_bundle(target)
    (project / "package.json").write_text(bundle.files["package.json"])
    npm = subprocess.run(["npm", "install", "--prefer-offline", "--no-audit", "--no-fund",
                          "--loglevel=error"], cwd=project, capture_output=True, text=True,
                         timeout=900)
    installed = npm.returncode == 0 and (project / "node_modules" / "convex").is_dir()
    install_s = time.monotonic() - t0
    if not installed:
        shutil.rmtree(project / "node_modules", ignore_errors=True)
        (project / "node_modules").symlink_to(Toolchain.find().node_modules)
    toolchain = replace(Toolchain.find(), root=project) if installed else Toolchain.find()
    target_dep = vault.target_for(store.get_user(uid))
    adapter = CliDeployAdapter(target_dep, toolchain=toolchain, timeout=config.deploy_timeout_s)
    deploys = documents = 0
    source = store.get_user(uid).schema_version
    path = kit.graph.path(source, target)
    try:
        for a, b in zip(path, path[1:]):
            edge = plan(kit.graph, a, b)
            for step in edge.steps:
                if step.kind in ("deploy_widened", "deploy_target"):
                    adapter.deploy(kit.step_bundle(edge, step))
                    deploys += 1
                elif step.kind == "run_data_step":
                    cursor = None
                    while True:  # the naive loop: one document per call
                        page = adapter.mutation(step.data_step.function_path,
                                                {"cursor": cursor, "batchSize": 1})
                        documents += int(page["processed"])
                        if page["isDone"]:
                            break
                        cursor = page["continueCursor"]
                elif step.kind == "record":
                    reached = kit.version_bundle(step_version(edge, step))
                    adapter.mutation("byod:recordVersion", {
                        "version": reached.version_id, "fingerprint": reached.fingerprint,
                        "kind": "version"})
                    store.set_deployment(uid, status="deployed", version=reached.version_id,
                                         fingerprint=reached.fingerprint)
    finally:
        adapter.close()
    return {"user": uid, "seconds": time.monotonic() - t0, "install_s": install_s,
            "npm_offline_ok": installed, "deploys": deploys, "edges": len(path) - 1,
            "documents": documents,
            "npm_error": "" if installed else (npm.stderr or npm.stdout)[-300:]}


HANDWRITTEN = """\
import { internalMutationGeneric } from "convex/server";
import { v } from "convex/values";

// What a developer writes by hand: page through the table, patch what needs it.
export const backfill = internalMutationGeneric({
  args: { cursor: v.union(v.string(), v.null()), batchSize: v.number(),
          table: v.string(), field: v.string(), value: v.any() },
  handler: async (ctx, args) => {
    const page = await ctx.db.query(args.table as any)
      .paginate({ cursor: args.cursor, numItems: args.batchSize });
    let changed = 0;
    for (const doc of page.page) {
      if ((doc as any)[args.field] === undefined) {
        await ctx.db.patch(doc._id, { [args.field]: args.value } as any);
        changed++;
      }
    }
    return { continueCursor: page.continueCursor, isDone: page.isDone,
             processed: page.page.length, changed };
  },
});
"""


async def _loop(client: AsyncConvexHttpClient, fn: str, batch: int,
                extra: dict[str, Any]) -> tuple[float, int]:
    t0, cursor, total = time.monotonic(), None, 0
    while True:
        page = await client.mutation(fn, {"cursor": cursor, "batchSize": batch, **extra})
        total += int(page["processed"])
        if page["isDone"]:
            return time.monotonic() - t0, total
        cursor = page["continueCursor"]


def throughput(work: Path, config: EngineConfig, docs: int, rounds: int = 3) -> dict[str, Any]:
    """Engine data step vs a hand-written batched loop, same deployment, same documents."""

    from engine.plan.datasteps import make_step
    from engine.schema.models import FieldDef, Schema, StringV, Table

    fleet = LocalFleet.start(1, work / "tp-fleet", timeout=120)
    try:
        dep = fleet.deployments[0]
        target = DeploymentTarget(label="throughput", url=dep.url, admin_key=dep.admin_key,
                                  allow_insecure_local=True)
        fields = {"userId": FieldDef(type=StringV()), "title": FieldDef(type=StringV()),
                  "body": FieldDef(type=StringV(), optional=True)}
        schema = Schema(tables={"notes": Table(name="notes", fields=fields)})
        step = make_step("notes", "backfill", {"field": "body", "value": ""})
        bundle = compile_bundle(schema, version_id="throughput", kind="widen",
                                data_steps=[step], config=config)
        files = dict(bundle.files)
        files["convex/handwritten.ts"] = HANDWRITTEN
        bundle = replace(bundle, files=files)
        from engine.plan.datasteps import suggest_batch_size
        batch = suggest_batch_size(schema.tables["notes"])
        with CliDeployAdapter(target, timeout=config.deploy_timeout_s) as adapter:
            adapter.deploy(bundle)
            results: dict[str, Any] = {"documents": docs, "batch_size": batch,
                                       "rounds": rounds}
            variants = (("engine", step.function_path, {}),
                        ("handwritten", "handwritten:backfill",
                         {"table": "notes", "field": "body", "value": ""}))
            best: dict[str, tuple[float, int]] = {}
            for _ in range(rounds):  # alternate, keep the best: no warm-up or order bias
                for name, fn, extra in variants:
                    _reset(adapter, docs)
                    seconds, n = asyncio.run(_timed(target, fn, batch, extra, config))
                    if name not in best or seconds < best[name][0]:
                        best[name] = (seconds, n)
            for name, (seconds, n) in best.items():
                results[name] = {"seconds": round(seconds, 3), "documents": n,
                                 "docs_per_s": round(n / seconds, 1) if seconds else None}
        results["ratio"] = round(results["engine"]["seconds"]
                                 / results["handwritten"]["seconds"], 2)
        return results
    finally:
        fleet.stop()


def _reset(adapter: CliDeployAdapter, docs: int) -> None:
    """Empty the table, then insert ``docs`` notes without a body."""

    while not adapter.mutation("byod:deletePage", {"table": "notes", "numItems": 500})["isDone"]:
        pass
    for start in range(0, docs, 200):
        adapter.mutation("byod:importPage", {"table": "notes", "documents": [
            {"userId": "u", "title": f"note {k}"} for k in range(start, min(docs, start + 200))]})


async def _timed(target: DeploymentTarget, fn: str, batch: int, extra: dict[str, Any],
                 config: EngineConfig) -> tuple[float, int]:
    async with AsyncConvexHttpClient(target, timeout=config.http_timeout_s) as client:
        return await _loop(client, fn, batch, extra)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=200, help="deployments for the engine run")
    p.add_argument("--reference-sample", type=int, default=2,
                   help="deployments the reference design runs on (cost extrapolated)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--deployer", choices=("push", "cli"), default="push")
    p.add_argument("--to", default="head")
    p.add_argument("--versions", type=Path, default=ROOT / "schema_versions")
    p.add_argument("--setup-workers", type=int, default=4)
    p.add_argument("--throughput-docs", type=int, default=3000)
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--rtt-ms", type=int, default=0,
                   help="every local deployment answers each request this many ms late")
    _record.add_json_out(p)
    p.add_argument("--only-throughput", action="store_true")
    a = p.parse_args()
    start = _record.started()
    if a.only_throughput:
        work = Path(tempfile.mkdtemp(prefix="byod-bench-"))
        tp = throughput(work, EngineConfig(registry_path=work / "r.sqlite3"), a.throughput_docs)
        print(json.dumps(tp, indent=2))
        _record.write("rollout", a.json_out, start, {"throughput": tp})
        return 0

    work = Path(tempfile.mkdtemp(prefix="byod-bench-"))
    config = EngineConfig(registry_path=work / "registry.sqlite3", versions_dir=a.versions)
    versions = load_versions(a.versions, config)
    kit = PlanKit(versions, config)
    target = kit.resolve(a.to)
    v1 = kit.graph.resolve(1)
    store = SqliteStore(config.registry_path)
    vault = Vault.from_hex(generate_key())
    total = a.count + a.reference_sample
    _log(f"setup: {total} local deployments at {v1.id}, target {target} (work dir {work})")
    t0 = time.monotonic()
    fleet, users = setup_fleet(work, total, config, v1, store, vault, a.setup_workers)
    results: dict[str, Any] = {"count": a.count, "sample": a.reference_sample,
                               "target": target, "concurrency": a.concurrency,
                               "deployer": a.deployer, "rtt_ms": a.rtt_ms,
                               "setup_s": round(time.monotonic() - t0, 1),
                               "harness_rss_mib": {"after_setup": harness_rss_mib(fleet)}}
    try:
        if a.rtt_ms > 0:
            _log(f"every deployment now answers each request {a.rtt_ms} ms late")
            for dep in fleet.deployments:
                fleet.set_fault(dep.name, "delay", delay_ms=a.rtt_ms)
        sample, engine_users = users[:a.reference_sample], users[a.reference_sample:]
        _log(f"(a) reference design on {len(sample)} deployment(s), sequentially")
        ref = []
        for uid in sample:
            row = reference_one(uid, store, vault, config, kit, target, work)
            _log(f"  {uid}: {row['seconds']:.1f}s ({row['deploys']} deploys, npm install "
                 f"{row['install_s']:.1f}s{'' if row['npm_offline_ok'] else ' FAILED offline'})")
            ref.append(row)
        for uid in sample:  # keep them out of the engine's rollout
            store.set_connection_status(uid, "disconnected")
        _log(f"(b) engine rollout over {len(engine_users)} deployment(s), deployer "
             f"{a.deployer}, concurrency {a.concurrency}")
        connector = HttpConnector(config, kind=a.deployer)
        payloads = connector.payloads()  # beside the registry: empty, so capture is timed
        t0, cpu0 = time.monotonic(), time.process_time()
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = rollout(target, store=store, vault=vault, config=config, versions=kit,
                         connector=connector,
                         options=RolloutOptions(canary=1, waves=("100%",),
                                                concurrency=a.concurrency,
                                                max_failures="100%", deployer=a.deployer))
        engine_s = time.monotonic() - t0
        engine_cpu = time.process_time() - cpu0
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        children_cpu = (children1.ru_utime + children1.ru_stime
                        - children0.ru_utime - children0.ru_stime)
        results["harness_rss_mib"]["after_rollout"] = harness_rss_mib(fleet)
        ref_per = sum(r["seconds"] for r in ref) / max(1, len(ref))
        eng_per = engine_s / max(1, len(engine_users))
        failed = [r for r in report.rows if r["status"] == "failed"]
        results["reference"] = {
            "per_deployment_s": round(ref_per, 2),
            "deploys_per_deployment": sum(r["deploys"] for r in ref) / max(1, len(ref)),
            "extrapolated_wall_s": round(ref_per * len(engine_users), 1), "rows": ref}
        results["engine"] = {
            "wall_s": round(engine_s, 1), "per_deployment_s": round(eng_per, 3),
            "cpu_ms_per_deployment": round(engine_cpu * 1000 / max(1, len(engine_users)), 1),
            "cli_cpu_s": round(children_cpu, 1),
            "deploys": sum(int(r.get("deploys") or 0) for r in report.rows),
            "captures": payloads.captured if a.deployer == "push" else 0,
            "documents": sum(int(r.get("processed") or 0) for r in report.rows),
            "counts": report.counts, "status": report.status,
            "failures": [{k: r.get(k) for k in ("user_id", "error_type", "error")}
                         for r in failed[:5]]}
        results["ratio"] = round(ref_per / eng_per, 1) if eng_per else None
        results["ratio_compares"] = (
            f"wall time per deployment: the reference one deployment at a time vs the "
            f"engine's rollout wall time at concurrency {a.concurrency} / deployments")
    finally:
        fleet.stop()
    if not a.skip_throughput:
        _log("data-step throughput on one deployment")
        results["throughput"] = throughput(work, config, a.throughput_docs)
    _print(results)
    _record.write("rollout", a.json_out, start, results)
    store.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0 if results["engine"]["status"] == "completed" and not failed else 1


def _print(r: dict[str, Any]) -> None:
    ref, eng = r["reference"], r["engine"]
    n = r["count"]
    line = "-" * 84
    rtt = f", every request {r['rtt_ms']} ms late" if r.get("rtt_ms") else ""
    print(f"\nrollout to {r['target']} across {n} local deployments "
          f"(engine deployer: {r['deployer']}, concurrency {r['concurrency']}; "
          f"reference measured on {r['sample']}, extrapolated{rtt})")
    print(line)
    print(f"{'design':<30}{'deployments':>12}{'wall time (s)':>15}{'deploys':>10}"
          f"{'s / deployment':>17}")
    print(line)
    print(f"{'reference (measured)':<30}{r['sample']:>12}"
          f"{ref['per_deployment_s'] * r['sample']:>15.1f}"
          f"{ref['deploys_per_deployment'] * r['sample']:>10.0f}"
          f"{ref['per_deployment_s']:>17.2f}")
    print(f"{'reference (extrapolated)':<30}{n:>12}{ref['extrapolated_wall_s']:>15.1f}"
          f"{ref['deploys_per_deployment'] * n:>10.0f}{ref['per_deployment_s']:>17.2f}")
    print(f"{'engine':<30}{n:>12}{eng['wall_s']:>15.1f}{eng['deploys']:>10}"
          f"{eng['per_deployment_s']:>17.3f}")
    print(line)
    verdict = "met" if (r["ratio"] or 0) >= 100 else "NOT met"
    print(f"ratio (reference / engine, per deployment): {r['ratio']}x  (target >= 100x: "
          f"{verdict})")
    print(f"  compares {r['ratio_compares']}")
    print(f"  engine CPU per deployment: {eng['cpu_ms_per_deployment']} ms in this process"
          f" (+ {eng['cli_cpu_s']} s in total for the CLI's bundle captures)")
    print(f"engine: outcomes {eng['counts']}, {eng['captures']} bundle capture(s) with the "
          f"CLI, {eng['documents']} documents migrated; harness memory "
          f"{r['harness_rss_mib']} MiB")
    for f in eng["failures"]:
        print(f"  failed {f['user_id']}: {f['error_type']}: {str(f['error'])[:160]}")
    tp = r.get("throughput")
    if tp:
        print(f"\ndata step on one deployment, {tp['documents']} documents, batch "
              f"{tp['batch_size']} (best of {tp['rounds']}):")
        for name in ("engine", "handwritten"):
            print(f"  {name:<12}{tp[name]['seconds']:>8.2f}s {tp[name]['docs_per_s']:>10} docs/s")
        print(f"  engine / hand-written time: {tp['ratio']}x  (target <= 2x: "
              f"{'met' if tp['ratio'] <= 2 else 'NOT met'})")


if __name__ == "__main__":
    sys.exit(main())
