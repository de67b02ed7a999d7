"""Worker benchmark: one rollout worked by 1, 2, 4 and 8 `byod worker` processes.

    python benchmarks/workers.py                          # 400 deployments, 50 ms RTT
    python benchmarks/workers.py --count 400 --kill       # + a worker SIGKILLed mid-run
    python benchmarks/workers.py --count 8 --workers 1,2 --rtt-ms 0 --json-out none  # CI

Setup (not timed), per worker count: ``count`` fresh local deployments connected at
version 1 (the ones of earlier rounds are disconnected, so each round rolls out its own),
every request then answered ``--rtt-ms`` late (the local harness's ``delay`` fault, as in
``benchmarks/rollout.py``), and the rollout saved open for workers
(``byod rollout --to head --for-workers``: canary 0, one wave, a concurrency above what the
workers can hold, so the global limit is not what is measured; its bundles captured then).

Timed: N ``byod worker --slots S`` processes, started first and waiting for a rollout (as
a machine's worker does), work the rollout from the moment it is saved open until the
registry says it completed (its planning and capture are before; each worker's own look at
the rollout, its plans, are inside); then they are stopped with SIGTERM. Each worker holds
the same small ``--slots``, so one worker is latency-bound as one machine's worker would
be; deployments per second should grow with the workers (target: 4 workers >= 3x one).

``--kill`` then runs one more round with 4 workers and SIGKILLs one of them once a quarter of
the rows are finished; the others take its deployments over once its claims expire
(``--lease-ttl``). After every round: each deployment is at the target (registry and the
deployment itself), each journal step completed once, each rollout row finished once, and
the pushes each deployment received are counted against what its plan needs.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _record  # noqa: E402

from engine.config import EngineConfig, registry_display  # noqa: E402
from engine.convex.capture import PayloadCache  # noqa: E402
from engine.convex.connector import HttpConnector  # noqa: E402
from engine.lifecycle.connect import connect  # noqa: E402
from engine.local import LocalFleet  # noqa: E402
from engine.registry.open import open_store  # noqa: E402
from engine.schema.loader import load_versions  # noqa: E402
from engine.vault import Vault, generate_key  # noqa: E402


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def byod_argv() -> list[str]:
    exe = Path(sys.executable).parent / "byod"
    return [str(exe)] if exe.exists() else [
        sys.executable, "-c", "from engine.cli.main import main; main()"]


class Bench:
    """A local fleet, a registry and a key; rounds of fresh deployments rolled out by
    worker processes."""

    def __init__(self, work: Path, versions: Path, registry: str | None = None):
        self.work = work
        self.config = EngineConfig(registry_path=registry or work / "registry.sqlite3",
                                   versions_dir=versions)
        self.versions = load_versions(versions, self.config)
        self.v1 = self.versions[0].id if hasattr(self.versions[0], "id") else None
        self.key = generate_key()
        self.vault = Vault.from_hex(self.key)
        self.store: Any = open_store(self.config)
        self.fleet = LocalFleet.start(0, work / "fleet", timeout=120)
        self.names: dict[str, str] = {}
        self.admin_keys: list[str] = []  # secrets: never in a worker's output
        self.users: list[str] = []
        self.round = 0
        self.setup = HttpConnector(self.config, kind="push", payload_cache=PayloadCache(
            work / "setup-payloads", timeout=self.config.deploy_timeout_s))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BYOD_")}
        env.update({"BYOD_REGISTRY": str(self.config.registry_path),
                    "BYOD_VERSIONS_DIR": str(self.config.versions_dir),
                    "BYOD_ENCRYPTION_KEY": self.key, "NO_COLOR": "1",
                    "PYTHONPATH": str(ROOT)})
        return env

    def byod(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*byod_argv(), *args], capture_output=True, text=True,
                             env=self.env(), cwd=self.work, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise RuntimeError(f"byod {' '.join(args)}: exit {out.returncode}: "
                               f"{out.stderr[-2000:]}")
        return out

    def fresh(self, count: int, rtt_ms: int, threads: int = 8) -> list[str]:
        """``count`` new deployments connected at version 1 (the earlier ones
        disconnected), then answering every request ``rtt_ms`` late."""

        for uid in self.users:
            self.store.set_connection_status(uid, "disconnected")
        self.round += 1
        deps = self.fleet.add(count)
        users = [f"r{self.round}u{i:04d}" for i in range(count)]
        first = self.versions[0]

        def one(args: tuple[str, Any]) -> None:
            uid, dep = args
            connect(uid, dep.url, dep.admin_key, store=self.store, vault=self.vault,
                    config=self.config, versions=[first], allow_insecure_local=True,
                    connector=self.setup)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, zip(users, deps)))
        for uid, dep in zip(users, deps):
            self.names[uid] = dep.name
            self.admin_keys.append(dep.admin_key)
            if rtt_ms > 0:
                self.fleet.set_fault(dep.name, "delay", delay_ms=rtt_ms)
        self.users = users
        return users

    def open_rollout(self, *, lease_ttl: float, concurrency: int) -> str:
        out = self.byod("rollout", "--to", "head", "--for-workers", "--canary", "0",
                        "--waves", "100%", "--max-failures", "100%", "--concurrency",
                        str(concurrency), "--lease-ttl", str(lease_ttl))
        return out.stdout.strip().splitlines()[-1]

    def start_workers(self, n: int, rid: str | None, slots: int) -> list[subprocess.Popen[str]]:
        """``n`` worker processes: on rollout ``rid`` (each exits when it ends), or, with
        None, waiting for any rollout open for workers (until SIGTERM)."""

        which = ["--rollout", rid] if rid else []
        return [subprocess.Popen([*byod_argv(), "worker", *which, "--slots", str(slots),
                                  "--grace", "2"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 text=True, env=self.env(), cwd=self.work)
                for _ in range(n)]

    def finished(self, rid: str) -> int:
        counts = self.store.rollout_counts(rid)
        return sum(n for s, n in counts.items() if s not in ("pending", "running"))

    def check(self, rid: str, users: list[str]) -> dict[str, Any]:
        """Every deployment at the target, each journal step completed once, each row
        finished once; pushes per deployment beyond the plan's deploys."""

        doc = self.store.load_rollout(rid) or {}
        target = doc.get("target")
        problems: list[str] = []
        extra_pushes: dict[str, int] = {}
        for uid in users:
            user = self.store.get_user(uid)
            row = (doc.get("deployments") or {}).get(uid) or {}
            if user.schema_version != target or row.get("status") not in ("succeeded",
                                                                           "already"):
                problems.append(f"{uid}: registry at {user.schema_version}, row "
                                f"{row.get('status')}")
            steps: dict[tuple[str, str], int] = {}
            deploy_steps = 0  # what the plan pushes when nothing is pushed twice
            for e in self.store.journal(uid):
                if e.status == "completed":
                    steps[(e.plan_id, e.step_id)] = steps.get((e.plan_id, e.step_id), 0) + 1
                    deploy_steps += e.kind in ("deploy_widened", "deploy_target")
            plans = {p for p, _ in steps}
            if len(plans) > 1:
                problems.append(f"{uid}: {len(plans)} plans completed steps")
            if any(n > 1 for n in steps.values()):
                problems.append(f"{uid}: a step completed twice")
            state = self.fleet.state(self.names[uid])
            pushes = int(state.get("pushes") or state.get("push_count") or 0)
            expected = 1 + deploy_steps  # the connect's, then one per deploy step
            if pushes != expected:
                extra_pushes[uid] = pushes - expected
        return {"target": target, "status": doc.get("status"), "problems": problems,
                "extra_pushes": extra_pushes}

    def close(self) -> None:
        self.fleet.stop()
        self.store.close()


def _cpu_s(pid: int | None) -> float:
    """CPU seconds a process has used (user + system), from /proc; 0 when unknown."""

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _children_cpu_s() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run_round(bench: Bench, n: int, a: argparse.Namespace, *, kill: bool = False
              ) -> dict[str, Any]:
    """One rollout worked by ``n`` workers already running (started first and waiting, as
    a machine's worker does: their start-up is not the rollout's), timed from the moment
    it is open until the registry says it completed."""

    users = bench.fresh(a.count, a.rtt_ms)
    children0, harness0 = _children_cpu_s(), _cpu_s(bench.fleet.pid)
    procs = bench.start_workers(n, None, a.slots)
    time.sleep(a.warmup)  # imports and the first look at the registry
    t0 = time.monotonic()
    rid = bench.open_rollout(lease_ttl=a.lease_ttl, concurrency=max(1000, n * a.slots))
    opened = time.monotonic()
    killed = None
    deadline = t0 + a.timeout
    try:
        while bench.store.rollout_status(rid) == "open":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} workers did not finish rollout {rid} in {a.timeout}s")
            if kill and killed is None and bench.finished(rid) >= a.count // 4:
                killed = procs[0].pid
                os.kill(killed, signal.SIGKILL)
                _log(f"  SIGKILLed worker process {killed} after "
                     f"{time.monotonic() - opened:.1f}s ({bench.finished(rid)} rows finished)")
            time.sleep(0.05)
        wall = time.monotonic() - opened
        harness_cpu = _cpu_s(bench.fleet.pid) - harness0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()  # SIGTERM: a clean stop, exit 0
        outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    codes = [proc.returncode for proc in procs]
    workers_cpu = _children_cpu_s() - children0  # every worker's, start-up included
    check = bench.check(rid, users)
    took_over = sum(o.count(" took over ") for o in outputs)
    return {"workers": n, "slots": a.slots, "rollout_id": rid, "wall_s": round(wall, 2),
            "open_s": round(opened - t0, 2),
            "deployments_per_s": round(a.count / wall, 2), "exit_codes": codes,
            "killed_pid": killed, "taken_over": took_over,
            "cpu_ms_per_deployment": {
                "workers": round(workers_cpu * 1000 / a.count, 1),
                "harness": round(harness_cpu * 1000 / a.count, 1)},
            "loadavg_after": [round(x, 2) for x in os.getloadavg()], **check}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--rtt-ms", type=int, default=50)
    p.add_argument("--workers", default="1,2,4,8")
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds the workers get to start before the rollout opens")
    p.add_argument("--lease-ttl", type=float, default=5.0)
    p.add_argument("--kill", action="store_true",
                   help="one more round with 4 workers, one SIGKILLed mid-run")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--versions", type=Path, default=ROOT / "schema_versions")
    p.add_argument("--registry", default=None, metavar="LOCATION",
                   help="the registry the workers share (default: a new SQLite file); a "
                   "postgresql://… URL is the multi-machine case (its password is never "
                   "printed or recorded)")
    _record.add_json_out(p)
    a = p.parse_args()
    if a.registry:  # the record keeps the command line: never the URL's password
        sys.argv = [registry_display(x) if x == a.registry else x for x in sys.argv]
    start = _record.started()
    work = Path(tempfile.mkdtemp(prefix="byod-workers-"))
    bench = Bench(work, a.versions, a.registry)
    rounds = []
    try:
        for n in [int(x) for x in a.workers.split(",") if x.strip()]:
            _log(f"round: {a.count} deployments, {n} worker(s) x {a.slots} slots, "
                 f"rtt {a.rtt_ms} ms")
            rounds.append(run_round(bench, n, a))
            _log(f"  {rounds[-1]['deployments_per_s']} deployments/s "
                 f"({rounds[-1]['wall_s']}s)")
        killed = None
        if a.kill:
            _log(f"round: {a.count} deployments, 4 workers, one SIGKILLed mid-run")
            killed = run_round(bench, 4, a, kill=True)
    finally:
        bench.close()
    by_n = {r["workers"]: r["deployments_per_s"] for r in rounds}
    ratio = round(by_n[4] / by_n[1], 2) if 1 in by_n and 4 in by_n else None
    results = {"count": a.count, "rtt_ms": a.rtt_ms, "slots": a.slots,
               "registry": "postgresql" if a.registry and "://" in a.registry else "sqlite",
               "rounds": rounds,
               "ratio_4_to_1": ratio, "kill": killed}
    _print(results)
    _record.write("workers", a.json_out, start, results)
    ok = all(not r["problems"] for r in rounds) and (killed is None or not killed["problems"])
    return 0 if ok else 1


def _print(r: dict[str, Any]) -> None:
    line = "-" * 88
    print(f"\none rollout to head over {r['count']} local deployments, every request "
          f"{r['rtt_ms']} ms late, --slots {r['slots']} per worker")
    print(line)
    print(f"{'workers':>8}{'wall (s)':>10}{'deployments/s':>15}{'at target':>11}"
          f"{'extra pushes':>14}{'CPU ms/deployment':>20}")
    print(line)
    for row in r["rounds"]:
        at = r["count"] - len(row["problems"])
        cpu = row.get("cpu_ms_per_deployment") or {}
        cpu_text = f"{cpu.get('workers', 0):.0f} + {cpu.get('harness', 0):.0f} harness"
        print(f"{row['workers']:>8}{row['wall_s']:>10.1f}{row['deployments_per_s']:>15.2f}"
              f"{at:>11}{sum(row['extra_pushes'].values()):>14}{cpu_text:>20}")
    print(line)
    if r["ratio_4_to_1"] is not None:
        verdict = "met" if r["ratio_4_to_1"] >= 3 else "NOT met"
        print(f"4 workers / 1 worker: {r['ratio_4_to_1']}x deployments/s (target >= 3x: "
              f"{verdict})")
    k = r.get("kill")
    if k:
        print(f"SIGKILL of one of 4 workers mid-run: {k['wall_s']}s, {k['taken_over']} "
              f"deployment(s) taken over, status {k['status']}, "
              f"{r['count'] - len(k['problems'])}/{r['count']} at target, "
              f"{len(k['problems'])} problem(s), extra pushes {k['extra_pushes'] or 'none'}")
    for row in [*r["rounds"], *([k] if k else [])]:
        for problem in row["problems"][:5]:
            print(f"  problem ({row['workers']} workers): {problem}")


if __name__ == "__main__":
    sys.exit(main())
