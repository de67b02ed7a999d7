"""One live run per rollout: ``resume=ID`` is refused (exit 3, naming the holder) while
another run of that rollout holds its lease, goes ahead at once when that run's process is
dead, and a run that lost the lease stops without writing over the record."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.errors import RolloutError
from engine.events import DeploymentDone, Event, EventLog, RolloutStarted
from engine.fleet.rollout import RolloutRunning, rollout_lease_key

from .test_rollout_unit import Fleet  # noqa: F401 - the shared in-memory fleet
from .test_rollout_unit import fleet as fleet  # noqa: F401 - the fixture


def _halted_rollout(fleet: Fleet) -> str:
    """A finished rollout whose record is made to look interrupted (u1 still to do)."""

    for uid in ("u0", "u1"):
        fleet.add(uid)
    first = fleet.run(canary=0, waves=("100%",), max_failures="0", only=("u0",))
    rid = first.rollout_id
    doc = fleet.store.load_rollout(rid)
    doc["deployments"]["u1"] = {**doc["deployments"]["u0"], "user_id": "u1",
                                "status": "pending", "after": None}
    doc["waves"][0]["deployments"].append("u1")
    doc["status"] = "running"
    fleet.store.save_rollout(rid, doc)
    return rid


def test_resume_is_refused_while_the_rollout_runs(fleet: Fleet) -> None:
    rid = _halted_rollout(fleet)
    before = fleet.store.load_rollout(rid)
    fleet.store.acquire_lease(rollout_lease_key(rid), f"{rid}/0123abcd", 60.0)  # alive: us
    with pytest.raises(RolloutRunning) as caught:
        fleet.run(resume=rid)
    err = caught.value
    assert err.exit_code == 3 and f"rollout {rid} is still running" in str(err)
    assert f"{rid}/0123abcd" in str(err) and "process " in str(err)
    assert f"byod leases break rollout:{rid} --yes" in str(err)
    assert fleet.store.load_rollout(rid) == before  # nothing written
    assert fleet.deps["u1"].deploys == 0


def test_resume_goes_ahead_at_once_when_the_runs_process_is_dead(fleet: Fleet) -> None:
    rid = _halted_rollout(fleet)
    code = ("import sys; from engine.registry.sqlite import SqliteStore; "
            "SqliteStore(sys.argv[1]).acquire_lease(sys.argv[2], sys.argv[3], 600)")
    subprocess.run([sys.executable, "-c", code, str(fleet.path), rollout_lease_key(rid),
                    f"{rid}/deadbeef"], check=True, timeout=60)
    again = fleet.run(resume=rid)
    assert again.status == "completed" and fleet.on_v3("u1")
    assert fleet.store.load_rollout(rid)["status"] == "completed"
    taken = [e for e in fleet.store.audit_log(rollout_lease_key(rid))
             if e.event == "lease_taken_over"]
    assert taken and taken[0].detail["reason"] == "holder process is dead"
    assert fleet.store.current_lease(rollout_lease_key(rid)) is None  # released


def test_a_run_that_lost_the_rollout_lease_stops_without_saving(fleet: Fleet) -> None:
    for i in range(4):
        fleet.add(f"u{i}")
    seen: dict[str, object] = {}

    class TakeOver(EventLog):
        def __call__(self, event: Event) -> None:
            if isinstance(event, RolloutStarted):
                seen["id"] = event.rollout_id
            if isinstance(event, DeploymentDone) and "record" not in seen:
                rid = str(seen["id"])
                key = rollout_lease_key(rid)  # an operator broke it, another run took over
                fleet.store.break_lease(key, reason="test")
                fleet.store.acquire_lease(key, f"{rid}/other", 60.0)
                seen["record"] = fleet.store.load_rollout(rid)
            return super().__call__(event)

    with pytest.raises(RolloutError, match="lost the rollout's lease"):
        fleet.run(canary=0, waves=("100%",), concurrency=1, emit=TakeOver())
    assert fleet.store.load_rollout(str(seen["id"])) == seen["record"]  # not overwritten
    done = sum(fleet.deps[f"u{i}"].deploys > 0 for i in range(4))
    assert done <= 2  # nothing new started once the loss was seen
