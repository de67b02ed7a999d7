"""Service replicas over one PostgreSQL registry: two ``byod serve`` processes (as two
machines behind a load balancer would run it) share the jobs and the monitor.

- A connect job queued through replica A, which is SIGKILLed mid-job, is finished by
  replica B (its claim lapses, B's job worker claims it and the resumable flow completes).
- The monitor runs in exactly one replica (the ``monitor`` lease); killing that replica
  hands it to the other.
- Neither replica's log, nor any answer, shows the database password or a deploy key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from local_ops import needs_toolchain

from engine.commands.service import create_token
from engine.commands.workspace import Workspace
from engine.config import load_config
from engine.convex.targets import ENV_MAIN_KEY, ENV_MAIN_URL
from engine.demo.run import deploy_main
from engine.plan.graph import VersionGraph
from engine.ports.deployment import DeploymentTarget
from engine.registry.open import open_store
from engine.schema.loader import load_versions
from engine.serve.monitor import MONITOR_LEASE
from engine.vault import ENV_KEY, generate_key

from .serve_process import start_serve, stop_serve

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "replica-serve-secret-" + "r" * 24
TIMEOUT_S = 180.0


@dataclass
class Replica:
    name: str
    env: dict[str, str]
    cwd: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self) -> "Replica":
        self.log = self.cwd / f"serve-{self.name}.log"
        self.proc, self.port = start_serve(self.env, self.cwd, self.log)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_serve(self.proc, sig)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@dataclass
class Cluster:
    tmp: Path
    fleet: Any
    users: dict[str, Any]
    env: dict[str, str]
    token: str
    registry: str
    secrets: list[str]
    replicas: dict[str, Replica] = field(default_factory=dict)
    bodies: list[str] = field(default_factory=list)

    def call(self, replica: str, method: str, path: str, **kw: Any) -> httpx.Response:
        r = httpx.request(method, self.replicas[replica].url(path), timeout=60,
                          headers={"Authorization": f"Bearer {self.token}"}, **kw)
        self.bodies.append(r.text)
        return r

    def wait_job(self, replica: str, job_id: str, until: tuple[str, ...], *,
                 stage: bool = False) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.call(replica, "GET", f"/v1/jobs/{job_id}").json()
            if job["state"] in until and (not stage or job["stage"]):
                return job
            time.sleep(0.25)
        raise AssertionError(f"job {job_id} did not reach {until}: {job}")

    def job_claim(self, job_id: str) -> str:
        store = open_store(self.registry)
        try:
            job = store.get_job(job_id)
            assert job is not None and job.claimed_by, job
            return job.claimed_by
        finally:
            store.close()

    def monitor_holder(self) -> str | None:
        store = open_store(self.registry)
        try:
            now = time.time()
            for lease in store.list_leases():
                if lease.deployment == MONITOR_LEASE and lease.expires_at > now:
                    return lease.holder
            return None
        finally:
            store.close()


@pytest.fixture(scope="module")
def cluster(byod_local_fleet: Any, pg_server: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("serve-replicas")
    registry = pg_server.url(pg_server.create_database())
    main, u1 = byod_local_fleet.add(2)
    config = tmp / "byod.toml"
    config.write_text(
        "[byod]\n"
        f'versions_dir = "{ROOT / "schema_versions"}"\n'
        f'functions_dir = "{ROOT / "functions"}"\n'
        "http_timeout_s = 10.0\n"
        "[byod.serve]\n"
        "allow_insecure_local = true\n"
        "monitor_interval_s = 1.0\n"
        "job_claim_ttl_s = 6.0\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYOD_")}
    env.update({"BYOD_CONFIG": str(config), "BYOD_REGISTRY": registry,
                ENV_KEY: generate_key(), "BYOD_SERVE_SECRET": SECRET,
                ENV_MAIN_URL: main.url, ENV_MAIN_KEY: main.admin_key})
    cfg = load_config(config, env)
    graph = VersionGraph(load_versions(cfg.versions_dir, cfg))
    deploy_main(DeploymentTarget("main", main.url, main.admin_key, True),
                graph.resolve("head"), cfg)
    with Workspace.open(cfg) as ws:
        _, token = create_token(ws, "replicas", "settings,data,admin")
    keys = [main.admin_key, u1.admin_key]
    secrets = [*keys, *(k.split("|", 1)[1] for k in keys), env[ENV_KEY], SECRET, token,
               pg_server.password]
    c = Cluster(tmp, byod_local_fleet, {"u1": u1}, env, token, registry, secrets)
    try:
        yield c
    finally:
        for replica in c.replicas.values():
            replica.stop(signal.SIGKILL)
        byod_local_fleet.set_fault(u1.name, "none")


def test_a_job_and_the_monitor_move_to_the_surviving_replica(cluster: Cluster) -> None:
    u1 = cluster.users["u1"]
    a = cluster.replicas["a"] = Replica("a", cluster.env, cluster.tmp).start()
    b = cluster.replicas["b"] = Replica("b", cluster.env, cluster.tmp).start()
    cluster.fleet.set_fault(u1.name, "delay", delay_ms=3000)
    r = cluster.call("a", "POST", "/v1/users/u1/connect",
                     json={"url": u1.url, "deploy_key": u1.admin_key})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    # Either replica's job worker may take the job: wait until one runs it.
    running = cluster.wait_job("b", job_id, ("running",), stage=True)
    assert running["state"] == "running"
    claimed_by = cluster.job_claim(job_id)
    assert a.proc is not None and b.proc is not None
    runner = "a" if f"|{a.proc.pid}|" in claimed_by else "b"
    other = "b" if runner == "a" else "a"
    cluster.replicas[runner].stop(signal.SIGKILL)
    cluster.fleet.set_fault(u1.name, "none")
    job = cluster.wait_job(other, job_id, ("succeeded", "failed"))
    assert job["state"] == "succeeded", job
    assert cluster.call(other, "GET", "/v1/users/u1").json()["connection_status"] == \
        "connected"

    # the monitor: exactly one holder among the live replicas; kill it, the other takes over
    cluster.replicas[runner].start()  # back, as a standby
    deadline = time.monotonic() + 30
    holder = cluster.monitor_holder()
    while holder is None and time.monotonic() < deadline:
        time.sleep(0.2)
        holder = cluster.monitor_holder()
    assert holder is not None
    leader = next(n for n, rep in cluster.replicas.items()
                  if rep.proc is not None and rep.proc.poll() is None
                  and f":{rep.proc.pid}:" in holder)
    cluster.replicas[leader].stop(signal.SIGKILL)
    deadline = time.monotonic() + 30
    taken = None
    while time.monotonic() < deadline:
        taken = cluster.monitor_holder()
        if taken is not None and taken != holder:
            break
        time.sleep(0.2)
    assert taken is not None and taken != holder

    texts = cluster.bodies + [rep.log.read_text(errors="replace")
                              for rep in cluster.replicas.values() if rep.log]
    for secret in cluster.secrets:
        assert not any(secret in text for text in texts)
