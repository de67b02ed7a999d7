"""A `byod worker` SIGKILLed at a random moment mid-rollout: the other workers take its
deployments over once its claims expire, and every deployment ends at the target with each
journal step completed once (at most the one push the kill interrupted is repeated)."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from fleet.workers.procs import ROOT, Bench

from .world import chaos_seed

pytestmark = [pytest.mark.chaos, pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow,
              pytest.mark.timeout(600)]


def test_a_worker_killed_mid_rollout_is_taken_over(tmp_path) -> None:
    rng = random.Random(chaos_seed())
    bench = Bench(tmp_path, ROOT / "schema_versions")
    procs = []
    try:
        users = bench.fresh(16, rtt_ms=40)
        rid = bench.open_rollout(lease_ttl=2.0, concurrency=9)
        procs = bench.start_workers(3, rid, slots=3)
        victim = procs[rng.randrange(3)]
        wait_s = rng.uniform(0.5, 6.0)  # after start-up: while deployments are in flight
        deadline = time.monotonic() + 120
        while bench.store.rollout_counts(rid).get("running", 0) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(wait_s)
        os.kill(victim.pid, signal.SIGKILL)
        for p in procs:
            p.wait(timeout=300)
        outputs = [p.stdout.read() if p.stdout else "" for p in procs]
        check = bench.check(rid, users)
        assert check["status"] == "completed" and check["problems"] == [], (check, outputs)
        taken_over = {line.split(" took over ")[1].split()[0] for out in outputs
                      for line in out.splitlines() if " took over " in line}
        victim_out = outputs[procs.index(victim)]
        took = {line.split(" took ")[1].split()[0] for line in victim_out.splitlines()
                if " took " in line and " took over " not in line}
        names = {line.split()[1].rstrip(":") for line in victim_out.splitlines()
                 if line.startswith("worker ")}
        rows = (bench.store.load_rollout(rid) or {})["deployments"]
        finished = {u for u, row in rows.items() if row.get("worker") in names}
        # what the victim held when it died was taken over by the others
        assert took - finished <= taken_over, (took, finished, taken_over)
        # a push the kill interrupted may be sent again; nothing else is
        assert set(check["extra_pushes"]) <= taken_over, check
        assert all(n <= 1 for n in check["extra_pushes"].values()), check
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        bench.close()
