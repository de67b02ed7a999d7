"""Interval-bounded health runs rotate through the fleet: the least recently checked
deployments go first, so a budget that covers part of the fleet still reaches all of it."""

from __future__ import annotations

from pathlib import Path

from ops_fakes import table, version

from engine.lifecycle.health import check, monitor
from engine.plan.graph import VersionGraph
from engine.testing import InMemoryFleet

V1 = version("v1", 1, table("notes", title="string"))
GRAPH = VersionGraph([V1])

# Five answers at a time, each taking DELAY: a run's checks get 80% of BUDGET (0.8 s), so
# the first five answer (at 0.5 s) and the next five would answer too late (at 1.0 s).
DELAY, BUDGET, CONCURRENCY, USERS = 0.5, 1.0, 5, 20


def _fleet(tmp_path: Path) -> InMemoryFleet:
    fleet = InMemoryFleet(tmp_path, versions=GRAPH)
    for i in range(USERS):
        fleet.add(f"user-{i:02d}", version="v1").delay = DELAY
    return fleet


async def _no_sleep(_seconds: float) -> None:
    return None


def test_monitor_reaches_every_user_when_the_budget_covers_a_quarter(tmp_path: Path) -> None:
    with _fleet(tmp_path) as fleet:
        seen: list[set[str]] = []
        reports = monitor(BUDGET, max_runs=4, sleep=_no_sleep, store=fleet.store,
                          vault=fleet.vault, graph=GRAPH, config=fleet.config,
                          connector=fleet, concurrency=CONCURRENCY, timeout=5.0, alert=False)
        for report in reports:
            seen.append({r.user_id for r in report.results if r.state == "healthy"})
            assert 0 < len(seen[-1]) < USERS  # the budget covers part of the fleet
        covered = set().union(*seen)
        assert covered == {f"user-{i:02d}" for i in range(USERS)}, (
            f"never checked: {sorted({f'user-{i:02d}' for i in range(USERS)} - covered)}")
        for report, healthy in zip(reports, seen):
            body = report.to_dict()
            assert (body["selected"], body["checked"]) == (USERS, len(healthy))
        for user in fleet.store.list_users():
            assert user.last_connection_test is not None


def test_never_checked_first_then_oldest_then_user_id(tmp_path: Path) -> None:
    with InMemoryFleet(tmp_path, versions=GRAPH) as fleet:
        for uid in ("a", "b", "c", "d"):
            fleet.add(uid, version="v1")
        fleet.store.set_connection_status("a", "connected", tested_at=300.0)
        fleet.store.set_connection_status("b", "connected", tested_at=100.0)
        # c and d: never checked -> first, by user id; then b (older), then a.
        report = check(store=fleet.store, vault=fleet.vault, graph=GRAPH,
                       config=fleet.config, connector=fleet, concurrency=1, apply=False)
        assert [r.user_id for r in report.results] == ["c", "d", "b", "a"]
        body = report.to_dict()
        assert (body["selected"], body["checked"]) == (4, 4)
