"""SqliteStore across processes: lease contention, takeover, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import time

import pytest

from engine.errors import LeaseHeld
from engine.ports.registry import JournalEntry
from engine.registry.sqlite import SCHEMA_VERSION, SqliteStore

CTX = mp.get_context("fork")
DEPLOYMENTS = [f"dep-{i}" for i in range(15)]


def _contend(path: str, holder: str, barrier, results) -> None:
    store = SqliteStore(path)
    barrier.wait(timeout=30)
    won = []
    for dep in DEPLOYMENTS:
        try:
            store.acquire_lease(dep, holder, 60)
            won.append(dep)
        except LeaseHeld:
            pass
    # both stay alive until both are done: a lease of a dead process is taken over at once
    barrier.wait(timeout=30)
    results.put((holder, won))
    store.close()


def _run(target, args_list) -> None:
    procs = [CTX.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, f"child exited with {p.exitcode}"


@pytest.mark.timeout(180)
def test_two_processes_contend_only_one_wins_each_lease(tmp_path) -> None:
    path = str(tmp_path / "r.sqlite3")
    SqliteStore(path).close()
    barrier, results = CTX.Barrier(2), CTX.Queue()
    _run(_contend, [(path, "runner-a", barrier, results), (path, "runner-b", barrier, results)])
    won = dict(results.get(timeout=10) for _ in range(2))
    a, b = set(won["runner-a"]), set(won["runner-b"])
    assert not (a & b), "a lease was granted twice"
    assert a | b == set(DEPLOYMENTS)
    store = SqliteStore(path)
    for dep in DEPLOYMENTS:
        holder = store.current_lease(dep).holder
        assert dep in won[holder]


def _take_over(path: str, results) -> None:
    store = SqliteStore(path)
    try:
        lease = store.acquire_lease("dep", "rescuer", 60)
        results.put(("won", lease.holder))
    except LeaseHeld as exc:
        results.put(("held", exc.holder))


@pytest.mark.timeout(120)
def test_expired_lease_is_taken_over_by_another_process(tmp_path) -> None:
    path = str(tmp_path / "r.sqlite3")
    store = SqliteStore(path)
    store.acquire_lease("dep", "crashed-runner", 60)
    results = CTX.Queue()
    _run(_take_over, [(path, results)])
    assert results.get(timeout=10) == ("held", "crashed-runner")  # still valid: refused

    store.acquire_lease("dep2", "x", 0.2)
    store.release_lease("dep", "crashed-runner")
    store.acquire_lease("dep", "crashed-runner", 0.2)
    time.sleep(0.4)  # the runner "crashed": its lease lapses
    _run(_take_over, [(path, results)])
    assert results.get(timeout=10) == ("won", "rescuer")
    with pytest.raises(LeaseHeld):
        store.renew_lease("dep", "crashed-runner", 60)
    assert any(e.event == "lease_taken_over" and e.detail["from"] == "crashed-runner"
               for e in store.audit_log("dep"))


N_OPS = 150


def _writer(path: str, name: str, barrier, inherited: SqliteStore | None) -> None:
    store = inherited if inherited is not None else SqliteStore(path)
    barrier.wait(timeout=30)
    for i in range(N_OPS):
        uid = f"{name}-{i}"
        store.upsert_credentials(uid, url_ct=f"url-{uid}", key_ct=f"key-{uid}")
        store.set_connection_status(uid, "connected")
        store.journal_update("shared", "plan", "step", bump_attempts=True)
        store.audit("shared", "tick", {"by": name, "i": i})
        store.save_rollout(f"r-{name}", {"i": i})


@pytest.mark.timeout(300)
def test_concurrent_writers_from_two_processes(tmp_path) -> None:
    path = str(tmp_path / "r.sqlite3")
    store = SqliteStore(path)
    store.upsert_credentials("shared", url_ct="u", key_ct="k")
    store.journal_plan([JournalEntry("shared", "plan", "step", 0, "backfill")])
    barrier = CTX.Barrier(2)
    # one child opens its own store; the other reuses the store object it inherited by fork
    _run(_writer, [(path, "a", barrier, None), (path, "b", barrier, store)])

    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    users = store.list_users()
    assert len(users) == 2 * N_OPS + 1
    assert all(u.connection_status == "connected" for u in users if u.user_id != "shared")
    assert all(u.url_ct == f"url-{u.user_id}" for u in users if u.user_id != "shared")
    # increments made under the write lock are never lost
    assert store.journal("shared")[0].attempts == 2 * N_OPS
    ticks = [e for e in store.audit_log("shared", limit=10_000) if e.event == "tick"]
    assert len(ticks) == 2 * N_OPS
    for name in ("a", "b"):
        assert [e.detail["i"] for e in ticks if e.detail["by"] == name] == list(range(N_OPS))
        assert store.load_rollout(f"r-{name}") == {"i": N_OPS - 1}


def _create(path: str, barrier) -> None:
    barrier.wait(timeout=30)
    store = SqliteStore(path)
    store.audit("x", "hello", {})
    store.close()


@pytest.mark.timeout(120)
def test_two_processes_creating_the_file_at_once(tmp_path) -> None:
    path = str(tmp_path / "new" / "r.sqlite3")
    barrier = CTX.Barrier(3)
    _run(_create, [(path, barrier)] * 3)
    store = SqliteStore(path)
    assert len(store.audit_log("x")) == 3
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == SCHEMA_VERSION
