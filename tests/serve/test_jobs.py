"""Background jobs in the registry: one claim at a time, renewed by a heartbeat; an expired
claim or one whose process is provably dead is taken over and the job runs again; a job
never stores a credential; the worker threads run queued jobs on their own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine.registry.sqlite import SqliteStore
from engine.serve.jobs import JobWorker, holder_dead, holder_id

from .api_kit import make_api


def _store(tmp_path: Path, clock: Any = time.time) -> SqliteStore:
    return SqliteStore(tmp_path / "registry.sqlite3", clock=clock)


def _dead_holder() -> str:
    """The claim name of a process that has exited (same host, its pid gone)."""

    code = "from engine.serve.jobs import holder_id; print(holder_id())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def test_a_live_claim_is_not_taken_but_an_expired_one_is(tmp_path: Path) -> None:
    now = [1000.0]
    store = _store(tmp_path, clock=lambda: now[0])
    store.create_job("j1", "connect", "alice")
    first = store.claim_job("worker-a", 30.0)
    assert first is not None and first.state == "running" and first.claimed_by == "worker-a"
    assert store.claim_job("worker-b", 30.0) is None
    now[0] += 20
    assert store.renew_job("j1", "worker-a", 30.0)
    now[0] += 20  # 40 s after the claim, 20 s after the renewal: still held
    assert store.claim_job("worker-b", 30.0) is None
    now[0] += 15
    taken = store.claim_job("worker-b", 30.0)
    assert taken is not None and taken.claimed_by == "worker-b"
    assert taken.progress[-1]["stage"] == "resumed"
    assert not store.renew_job("j1", "worker-a", 30.0)  # the old holder lost it
    assert not store.finish_job("j1", "worker-a", state="succeeded")
    assert store.finish_job("j1", "worker-b", state="succeeded", result={"ok": True})
    done = store.get_job("j1")
    assert done is not None and done.finished and done.result == {"ok": True}
    assert store.claim_job("worker-c", 30.0) is None


def test_a_claim_of_a_dead_process_is_taken_over_at_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_job("j1", "disconnect", "alice", {"mode": "keep"})
    gone = _dead_holder()
    assert holder_dead(gone) and not holder_dead(holder_id())
    assert not holder_dead("garbage")
    assert store.claim_job(gone, 3600.0) is not None
    mine = holder_id()
    assert store.claim_job(mine, 30.0, dead=lambda h: False) is None  # would wait an hour
    taken = store.claim_job(mine, 30.0, dead=holder_dead)
    assert taken is not None and taken.claimed_by == mine and taken.params == {"mode": "keep"}


def test_job_events_are_redacted_and_bounded(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_job("j1", "connect", "alice")
    store.claim_job("w", 30.0)
    key = "prod:happy-otter-123|" + "ab12" * 16
    store.job_event("j1", "w", "testing", f"used {key}")
    for n in range(600):
        store.job_event("j1", "w", "page", str(n))
    job = store.get_job("j1")
    assert job is not None and len(job.progress) == 500 and job.stage == "page"
    assert job.progress[-1]["message"] == "599"
    store.finish_job("j1", "w", state="failed", error=f"boom {key}")
    text = repr(store.get_job("j1")) + repr(store.list_jobs())
    assert "ab12ab12" not in text


def test_the_worker_threads_run_a_queued_job(tmp_path: Path) -> None:
    api = make_api(tmp_path)
    dep = api.deployment("d")
    api.service.worker.poll_s = 0.05
    api.service.worker.start()
    try:
        r = api.call("POST", "/v1/users/alice/connect",
                     json={"url": dep.url, "deploy_key": dep.key})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = api.job(r.json()["job_id"])
            if job["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.05)
        assert job["state"] == "succeeded", job
    finally:
        api.service.worker.stop()
        api.fleet.close()
    assert not api.service.worker.running


def test_a_runner_failure_fails_the_job_and_the_worker_goes_on(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ran: list[str] = []

    def runner(job: Any, emit: Any) -> dict[str, Any]:
        ran.append(job.job_id)
        emit("working", None)
        if job.job_id == "bad":
            raise RuntimeError("exploded with prod:x|" + "cd34" * 16)
        return {"n": 1}

    store.create_job("bad", "health", "*")
    store.create_job("good", "health", "*")
    worker = JobWorker(store, runner, threads=1, ttl_s=5)
    assert worker.run_one() and worker.run_one() and not worker.run_one()
    bad, good = store.get_job("bad"), store.get_job("good")
    assert bad is not None and bad.state == "failed" and "cd34cd34" not in (bad.error or "")
    assert good is not None and good.state == "succeeded" and good.result == {"n": 1}
    assert ran == ["bad", "good"]


def test_one_open_job_per_user_is_enforced_by_the_store(tmp_path: Path) -> None:
    import pytest

    from engine.ports.serve import JobConflict

    store = _store(tmp_path)
    store.create_job("j1", "connect", "alice", exclusive=True)
    with pytest.raises(JobConflict, match="connect job \\(j1\\) is already queued") as caught:
        store.create_job("j2", "retry", "alice", exclusive=True)
    assert caught.value.job.job_id == "j1" and store.get_job("j2") is None
    store.create_job("j3", "connect", "bob", exclusive=True)  # another user: fine
    store.claim_job("w", 30.0)
    store.finish_job("j1", "w", state="succeeded")
    store.create_job("j4", "retry", "alice", exclusive=True)  # j1 is finished
