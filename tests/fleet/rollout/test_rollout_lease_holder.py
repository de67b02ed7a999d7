"""A resumed rollout that overlaps a still-running run of the same rollout never shares
its leases: it takes them over, and the older run's next renewal fails, so it stops."""

from __future__ import annotations

from engine.errors import LeaseHeld
from engine.events import EventLog

from .test_rollout_unit import Fleet  # noqa: F401 - the shared in-memory fleet
from .test_rollout_unit import fleet as fleet  # noqa: F401 - the fixture


def test_resume_takes_leases_from_a_live_earlier_run(fleet: Fleet) -> None:
    fleet.add("u0")
    fleet.add("u1")
    first = fleet.run(canary=0, waves=("100%",), max_failures="0")
    assert first.status == "completed"
    rid = first.rollout_id
    # A run of the same rollout that is still alive (e.g. resumed from another shell
    # while the first still worked) holds u0's lease under the rollout's own id.
    doc = fleet.store.load_rollout(rid)
    doc["deployments"]["u0"]["status"] = "pending"
    doc["status"] = "running"
    fleet.store.save_rollout(rid, doc)
    fleet.store.acquire_lease("u0", rid, 60.0)
    seen: dict[str, object] = {}

    class Probe(EventLog):
        def __call__(self, event):  # type: ignore[no-untyped-def]
            if getattr(event, "user_id", None) == "u0" and "renewal" not in seen:
                try:  # the older run renews its lease while the resumed run works u0
                    fleet.store.renew_lease("u0", rid, 60.0)
                    seen["renewal"] = "kept"
                except LeaseHeld as exc:
                    seen["renewal"] = f"lost to {exc.holder}"
            return super().__call__(event)

    again = fleet.run(resume=rid, emit=Probe())
    assert again.status == "completed"
    assert str(seen["renewal"]).startswith(f"lost to {rid}/")
    assert any(e.event == "lease_taken_over" for e in fleet.store.audit_log("u0"))
    assert fleet.store.current_lease("u0") is None  # released at the end


def test_another_rollouts_lease_is_not_taken(fleet: Fleet) -> None:
    fleet.add("u0")
    fleet.store.acquire_lease("u0", "r-other/1234abcd", 60.0)
    report = fleet.run(canary=0, waves=("100%",))
    [row] = report.rows
    assert row["status"] == "skipped"
    assert fleet.store.current_lease("u0").holder == "r-other/1234abcd"
