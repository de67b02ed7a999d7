"""Workers as objects in one process over in-memory deployments and one real registry
(each worker with its own connection, as separate processes would have): several finish
one rollout with every deployment worked once, the budget halts them all, and a worker
whose claims cannot be renewed stops its deployments, which another worker takes over."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.errors import DeploymentUnauthorized, RegistryError, RolloutError
from engine.fleet.rollout import RolloutOptions, rollout
from engine.fleet.workers import Worker, WorkerOptions
from engine.registry.sqlite import SqliteStore
from fleet.runner.fakes import FakeAdapter

from ..rollout.test_rollout_unit import FakeConnector, Fleet


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest, tmp_path: Any):
    """The in-memory fleet on either registry; ``fleet.store_class`` and ``fleet.where``
    open another connection to it (each worker has its own)."""

    f = Fleet(tmp_path)
    f.store_class, f.where = SqliteStore, f.path  # type: ignore[attr-defined]
    if request.param == "postgresql":
        from engine.registry.postgres import PostgresStore

        f.store.close()
        url = request.getfixturevalue("pg_database")
        f.store = PostgresStore(url)  # type: ignore[assignment]
        f.store_class, f.where = PostgresStore, url  # type: ignore[attr-defined]
    yield f
    f.store.close()


def connect_to(fleet: Fleet, base: type | None = None) -> Any:
    cls = base or fleet.store_class  # type: ignore[attr-defined]
    return cls(fleet.where)  # type: ignore[attr-defined]


def open_rollout(fleet: Fleet, **kw: Any) -> str:
    kw.setdefault("lease_ttl_s", 2.0)
    report = rollout("v3", store=fleet.store, vault=fleet.vault, config=fleet.kit.config,
                     versions=fleet.kit, connector=FakeConnector(fleet.adapters),
                     options=RolloutOptions(**kw), for_workers=True)
    assert report.status == "open"
    return report.rollout_id


class Slow(FakeAdapter):
    """Every call waits ``delay`` seconds (in the adapter's thread), as over a network."""

    delay = 0.0
    broken: set[str] = set()

    def _wait(self) -> None:
        time.sleep(self.delay)
        if self.dep.name in self.broken:
            raise DeploymentUnauthorized(self.dep.name, "the deploy key was revoked")

    def deploy(self, bundle: Any) -> Any:
        self._wait()
        return super().deploy(bundle)

    def read_version(self) -> Any:
        self._wait()
        return super().read_version()


def worker(fleet: Fleet, rid: str | None, *, store: Any = None, slots: int = 2,
           logs: list[str] | None = None) -> Worker:
    def adapters(target: Any) -> Any:
        return Slow(fleet.deps[target.label]), None

    return Worker(store=store or connect_to(fleet), vault=fleet.vault,
                  config=fleet.kit.config, versions=fleet.kit,
                  connector_for=lambda _kind: FakeConnector(adapters),
                  options=WorkerOptions(rollout_id=rid, slots=slots, poll_s=0.02,
                                        exit_when_idle=True),
                  log=(logs.append if logs is not None else lambda _m: None))


async def run_all(*workers: Worker) -> list[Any]:
    return await asyncio.wait_for(asyncio.gather(*(w.run() for w in workers)), timeout=60)


def test_three_workers_finish_one_rollout_each_deployment_once(fleet: Fleet) -> None:
    for i in range(12):
        fleet.add(f"u{i:02d}")
    rid = open_rollout(fleet, canary=1, waves=("50%", "100%"), concurrency=4)
    assert fleet.store.load_rollout(rid)["mode"] == "workers"
    with pytest.raises(RolloutError, match="open for workers"):
        fleet.run(resume=rid)  # never worked by a one-process run at the same time
    reports = asyncio.run(run_all(*(worker(fleet, rid) for _ in range(3))))
    finished = [u for r in reports for u in r.finished]
    assert sorted(finished) == sorted(fleet.deps) and len(finished) == 12
    assert all(fleet.on_v3(u) for u in fleet.deps)
    assert all(d.deploys == fleet.deps["u00"].deploys for d in fleet.deps.values())
    doc = fleet.store.load_rollout(rid)
    assert doc["status"] == "completed"
    assert {r["status"] for r in doc["deployments"].values()} == {"succeeded"}
    assert {r["worker"] for r in doc["deployments"].values()} <= {r.worker for r in reports}
    assert fleet.store.rollout_problems() == []


def test_the_budget_halts_every_worker(fleet: Fleet) -> None:
    for i in range(8):
        fleet.add(f"u{i}")
    rid = open_rollout(fleet, canary=0, waves=("100%",), concurrency=1, max_failures="0")
    Slow.broken = {"u0"}  # the first deployment fails: the budget of 0 is spent
    try:
        reports = asyncio.run(run_all(worker(fleet, rid, slots=1),
                                      worker(fleet, rid, slots=1)))
    finally:
        Slow.broken = set()
    doc = fleet.store.load_rollout(rid)
    assert doc["status"] == "halted", doc["status"]
    assert doc["halted_reason"] == "1 failures exceed the budget of 0"
    assert sum(len(r.finished) for r in reports) == 1
    assert fleet.store.rollout_counts(rid) == {"failed": 1, "pending": 7}
    # opened again (`byod rollout --resume ID --for-workers`): the failed one is retried
    again = rollout(None, store=fleet.store, vault=fleet.vault, config=fleet.kit.config,
                    versions=fleet.kit, resume=rid, for_workers=True)
    assert (again.status, again.resumed, again.counts) == ("open", 1, {"pending": 8})
    with pytest.raises(RolloutError, match="already open"):
        rollout(None, store=fleet.store, vault=fleet.vault, config=fleet.kit.config,
                versions=fleet.kit, resume=rid, for_workers=True)
    asyncio.run(run_all(worker(fleet, rid, slots=4)))
    assert fleet.store.load_rollout(rid)["status"] == "completed"
    assert all(fleet.on_v3(u) for u in fleet.deps)


class Cut:
    """A registry connection whose claim calls fail once ``cut`` (the connection the
    worker's claims go through is gone): no renewal, no release, no outcome gets
    through."""

    cut = False

    def _gone(self) -> None:
        if self.cut:
            raise RegistryError("the registry is unreachable")

    def renew_claims(self, *a: Any, **kw: Any) -> set[str]:
        self._gone()
        return super().renew_claims(*a, **kw)  # type: ignore[misc]

    def release_claims(self, *a: Any, **kw: Any) -> int:
        self._gone()
        return super().release_claims(*a, **kw)  # type: ignore[misc]

    def finish_claim(self, *a: Any, **kw: Any) -> Any:
        self._gone()
        return super().finish_claim(*a, **kw)  # type: ignore[misc]


def test_a_worker_that_cannot_renew_stops_and_another_takes_over(fleet: Fleet) -> None:
    for i in range(3):
        fleet.add(f"u{i}")
    rid = open_rollout(fleet, canary=0, waves=("100%",), concurrency=8, lease_ttl_s=0.6)
    Slow.delay = 0.3  # every call waits: the deployments are still running at the cut
    cut_store = connect_to(fleet, type("Partitioned", (Cut, fleet.store_class), {}))
    logs: list[str] = []
    first = worker(fleet, rid, store=cut_store, slots=3, logs=logs)
    second = worker(fleet, rid, slots=3)

    async def scenario() -> tuple[Any, Any]:
        one = asyncio.create_task(first.run())
        while len(first.report.took) < 3:
            await asyncio.sleep(0.01)
        cut_store.cut = True
        deadline = time.monotonic() + 10
        while len(first.report.lost) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        first.stop()
        two = await asyncio.wait_for(second.run(), 60)
        return await asyncio.wait_for(one, 30), two

    try:
        a, b = asyncio.run(scenario())
    finally:
        Slow.delay = 0.0
    assert set(a.lost) == {"u0", "u1", "u2"} and not a.finished
    assert all("not renewed" in why for why in a.lost.values())
    assert set(b.took_over) == {"u0", "u1", "u2"}
    assert sorted(b.finished) == ["u0", "u1", "u2"]
    assert all(fleet.on_v3(u) for u in fleet.deps)
    assert fleet.store.load_rollout(rid)["status"] == "completed"
    assert any("stopped u0" in line for line in logs)
