"""The claim rules of ``RolloutClaims`` on a real registry: waves, global concurrency over
several holders, the failure budget and the canary rule decided globally, expired claims
taken over, and a holder that lost a row can neither renew nor finish it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.errors import RegistryError
from engine.registry.sqlite import SqliteStore

RID = "r-claims"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock):
    """The same rules on both registries (PostgreSQL: a fresh database per test)."""

    if request.param == "sqlite":
        s: Any = SqliteStore(tmp_path / "registry.sqlite3", clock=clock)
    else:
        from engine.registry.postgres import PostgresStore

        s = PostgresStore(request.getfixturevalue("pg_database"), clock=clock)
    yield s
    s.close()


def save(store: Any, waves: list[tuple[str, list[str]]], *, concurrency: int = 8,
         max_failures: int = 1, status: str = "open", mode: str | None = "workers") -> None:
    doc: dict[str, Any] = {
        "rollout_id": RID, "target": "v3", "status": status, "max_failures": max_failures,
        "options": {"concurrency": concurrency, "lease_ttl_s": 10},
        "waves": [{"name": n, "deployments": us} for n, us in waves],
        "deployments": {u: {"user_id": u, "status": "pending", "wave": n}
                        for n, us in waves for u in us}}
    if mode:
        doc["mode"] = mode
    store.save_rollout(RID, doc)


def claim(store: Any, holder: str, n: int = 10, ttl: float = 10.0) -> list[str]:
    return [c.user_id for c in store.claim_rows(RID, holder, limit=n, ttl_s=ttl)]


def finish(store: Any, holder: str, uid: str, status: str = "succeeded"):
    return store.finish_claim(RID, holder, uid, status, {"wave": "x", "after": "v3"})


def test_rows_carry_their_wave_and_claims_follow_the_waves(store: Any) -> None:
    save(store, [("canary", ["c"]), ("50%", ["a", "b"]), ("100%", ["d", "e"])])
    waves = {r["user_id"]: r["wave"] for r in store._read(
        "SELECT user_id, wave FROM rollout_deployments WHERE rollout_id = ?", (RID,))}
    assert waves == {"c": 0, "a": 1, "b": 1, "d": 2, "e": 2}
    assert claim(store, "w1") == ["c"]
    assert claim(store, "w2") == []  # the canary is in flight: wave 1 waits for it
    assert store.rollout_counts(RID) == {"pending": 4, "running": 1}
    assert finish(store, "w1", "c").written
    assert claim(store, "w2", 1) == ["a"] and claim(store, "w1") == ["b"]
    assert claim(store, "w1") == []  # wave 1 unfinished
    finish(store, "w2", "a")
    finish(store, "w1", "b", "failed")  # within the budget of 1
    assert claim(store, "w1", 1) + claim(store, "w2", 1) == ["d", "e"]
    finish(store, "w1", "d")
    assert store.rollout_status(RID) == "open"
    result = finish(store, "w2", "e")
    assert result.written and result.status == "completed"
    assert store.rollout_counts(RID) == {"failed": 1, "succeeded": 4}
    assert store.rollout_problems() == []
    assert claim(store, "w3") == []


def test_global_concurrency_counts_every_holders_live_claims(store: Any, clock: Clock) -> None:
    save(store, [("100%", [f"u{i}" for i in range(10)])], concurrency=3)
    assert len(claim(store, "w1", 2)) == 2
    assert len(claim(store, "w2", 5)) == 1  # 2 + 1 = the rollout's concurrency
    assert claim(store, "w3") == []
    finish(store, "w1", "u0")
    assert claim(store, "w3") == ["u3"]
    clock.now += 11  # every claim expired: they count no more, and are claimable again
    taken = store.claim_rows(RID, "w4", limit=10, ttl_s=10)
    assert len(taken) == 3 and {c.taken_from for c in taken} == {"w1", "w2", "w3"}


def test_the_budget_halts_the_rollout_for_every_worker(store: Any) -> None:
    save(store, [("100%", ["a", "b", "c", "d", "e"])], max_failures=1)
    assert claim(store, "w1", 2) == ["a", "b"] and claim(store, "w2", 2) == ["c", "d"]
    assert finish(store, "w1", "a", "failed").status == "open"
    halted = finish(store, "w2", "c", "failed")
    assert halted.status == "halted" and halted.halted_reason == \
        "2 failures exceed the budget of 1"
    assert claim(store, "w1") == [] and claim(store, "w3") == []  # nothing new starts
    assert finish(store, "w1", "b").written  # in-flight ones still record
    doc = store.load_rollout(RID)
    assert doc["status"] == "halted" and doc["halted_reason"].startswith("2 failures")
    assert doc["deployments"]["e"]["status"] == "pending"


def test_a_canary_failure_halts(store: Any) -> None:
    save(store, [("canary", ["c"]), ("100%", ["a"])], max_failures=5)
    claim(store, "w1")
    result = finish(store, "w1", "c", "failed")
    assert (result.status, result.halted_reason) == ("halted", "canary c failed")
    assert claim(store, "w2") == []


def test_an_expired_claim_is_taken_over_and_the_old_holder_is_fenced(store: Any,
                                                                     clock: Clock) -> None:
    save(store, [("100%", ["a", "b"])])
    assert claim(store, "w1") == ["a", "b"]
    assert store.renew_claims(RID, "w1", ["a", "b"], ttl_s=10) == {"a", "b"}
    assert claim(store, "w2") == []  # live claims are not claimable
    clock.now += 10.5
    taken = store.claim_rows(RID, "w2", limit=1, ttl_s=10)
    assert [(c.user_id, c.taken_from) for c in taken] == [("a", "w1")]
    assert store.renew_claims(RID, "w1", ["a", "b"], ttl_s=10) == {"b"}  # a is w2's
    assert not finish(store, "w1", "a").written  # a taken-over row refuses the old holder
    assert store.rollout_row(RID, "a").status == "running"
    assert finish(store, "w2", "a").written
    assert store.rollout_counts(RID) == {"running": 1, "succeeded": 1}


def test_release_and_reopen(store: Any) -> None:
    save(store, [("100%", ["a", "b", "c"])], max_failures=0)
    assert store.open_worker_rollouts() == [RID]
    claim(store, "w1")
    assert store.release_claims(RID, "w1", ["b"]) == 1
    assert store.rollout_counts(RID) == {"pending": 1, "running": 2}
    assert finish(store, "w1", "a", "failed").status == "halted"
    assert store.open_worker_rollouts() == []
    assert store.release_claims(RID, "w1") == 1  # c back to pending
    assert store.reopen_for_workers(RID) == 1  # a: failed -> pending
    assert store.rollout_counts(RID) == {"pending": 3}
    doc = store.load_rollout(RID)
    assert (doc["status"], doc["halted_reason"], doc["resumed"]) == ("open", None, 1)
    with pytest.raises(RegistryError, match="already open"):
        store.reopen_for_workers(RID)
    assert sorted(claim(store, "w2")) == ["a", "b", "c"]


def test_a_rollout_not_open_for_workers_gives_nothing(store: Any) -> None:
    save(store, [("100%", ["a"])], mode=None, status="running")
    assert claim(store, "w1") == [] and store.open_worker_rollouts() == []
    with pytest.raises(RegistryError, match="not a rollout for workers"):
        store.reopen_for_workers(RID)


def test_concurrent_claimers_take_each_row_once_within_the_concurrency(
        store: Any, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Six threads, each with its own connection, claim and finish rows at once: every row
    is finished once, by one holder, and never more than the concurrency are in flight."""

    import threading

    users = [f"u{i:02d}" for i in range(40)]
    save(store, [("canary", users[:2]), ("100%", users[2:])], concurrency=4,
         max_failures=100)
    if store.dialect == "sqlite":
        def opener() -> Any:
            return SqliteStore(store.path)
    else:
        from engine.registry.postgres import PostgresStore

        url = store._url  # the test's own database

        def opener() -> Any:
            return PostgresStore(url)
    done: dict[str, list[str]] = {}
    peaks: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        s = opener()
        try:
            idle = 0
            while idle < 50:
                claims = s.claim_rows(RID, name, limit=2, ttl_s=60)
                if not claims:
                    idle += 1
                    threading.Event().wait(0.005)
                    continue
                idle = 0
                running = s.rollout_counts(RID).get("running", 0)
                with lock:
                    peaks.append(running)
                for c in claims:
                    assert s.finish_claim(RID, name, c.user_id, "succeeded", {}).written
                    with lock:
                        done.setdefault(c.user_id, []).append(name)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(done) == users and all(len(v) == 1 for v in done.values())
    assert max(peaks) <= 4
    assert store.rollout_status(RID) == "completed"
    assert store.rollout_counts(RID) == {"succeeded": 40}
