"""Three `byod worker` OS processes finish one rollout over local deployments: every
deployment at the target, each worked once (each journal step completed once, no push
beyond what its plan needs), and the work really spread over the workers."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from .procs import ROOT, Bench

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow,
              pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory):
    b = Bench(tmp_path_factory.mktemp("workers"), ROOT / "schema_versions")
    yield b
    b.close()


def wait_all(procs: list[subprocess.Popen[str]], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    try:
        return [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
                for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_three_worker_processes_finish_one_rollout(bench: Bench) -> None:
    users = bench.fresh(12, rtt_ms=20)
    rid = bench.open_rollout(lease_ttl=5.0, concurrency=6)
    listed = bench.byod("rollout", "--list").stdout
    assert f"{rid}  to " in listed and "open" in listed and "12 pending" in listed
    procs = bench.start_workers(3, rid, slots=3)
    outputs = wait_all(procs, 300)
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    check = bench.check(rid, users)
    assert check["status"] == "completed" and check["problems"] == [], check
    assert check["extra_pushes"] == {}, check
    took = [line.split(" took ")[1].strip() for out in outputs for line in out.splitlines()
            if " took " in line and " took over " not in line]
    assert sorted(took) == sorted(users)  # each claimed once, by one worker
    assert sum(1 for out in outputs if " took " in out) >= 2  # the work was shared
    doc = bench.store.load_rollout(rid)
    assert len({r["worker"] for r in doc["deployments"].values()}) >= 2
    assert "completed" in bench.byod("rollout", "--list").stdout
    text = "".join(outputs)
    assert bench.key not in text  # no secret in the workers' output
    assert not [k for k in bench.admin_keys if k in text or k.split("|")[-1] in text]


def test_sigterm_stops_a_worker_cleanly_and_its_rows_go_back(bench: Bench,
                                                             tmp_path: Path) -> None:
    users = bench.fresh(6, rtt_ms=150)
    rid = bench.open_rollout(lease_ttl=5.0, concurrency=6)
    [proc] = bench.start_workers(1, rid, slots=3)
    deadline = time.monotonic() + 120
    while bench.store.rollout_counts(rid).get("running", 0) == 0:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.terminate()
    out = wait_all([proc], 60)[0]
    assert proc.returncode == 0, out
    counts = bench.store.rollout_counts(rid)
    assert counts.get("running", 0) == 0  # finished within the grace, or given back
    again = bench.start_workers(1, rid, slots=3)
    wait_all(again, 300)
    check = bench.check(rid, users)
    assert check["status"] == "completed" and check["problems"] == [], check
