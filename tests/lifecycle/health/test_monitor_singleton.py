"""One health monitor per registry: a second `byod monitor` (another machine, another
process) stands by while the first holds the ``monitor`` lease, and takes over when the
holder stops. The lease is the registry's, so this holds on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time

from pathlib import Path

import pytest
from ops_fakes import Fleet

from engine.lifecycle.health import monitor
from engine.lifecycle.monitor_lease import MONITOR_LEASE, MonitorLeadership

from .test_health import CONFIG, GRAPH


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


async def _no_sleep(_: float) -> None:
    return None


def test_a_second_monitor_stands_by_while_the_first_holds_the_lease(fleet: Fleet) -> None:
    first = MonitorLeadership(fleet.store, "monitor:elsewhere:1:aaaa")
    assert first.lead()
    standby: list[str | None] = []
    reports = monitor(1.0, max_runs=2, sleep=_no_sleep, store=fleet.store, vault=fleet.vault,
                      config=CONFIG, graph=GRAPH, connector=fleet, on_standby=standby.append)
    assert reports == [] and standby == ["monitor:elsewhere:1:aaaa"] * 2
    first.let_go()
    reports = monitor(1.0, max_runs=1, sleep=_no_sleep, store=fleet.store, vault=fleet.vault,
                      config=CONFIG, graph=GRAPH, connector=fleet, on_standby=standby.append)
    assert len(reports) == 1 and len(standby) == 2
    # a monitor that ends lets go of the lease: nobody holds it now
    assert all(lease.deployment != MONITOR_LEASE or lease.expires_at < time.time()
               for lease in fleet.store.list_leases())


def test_the_standby_takes_over_when_the_leader_stops(fleet: Fleet) -> None:
    leader = MonitorLeadership(fleet.store, "monitor:a:1:bbbb", ttl_s=1.0)
    assert leader.lead()
    stood: list[str | None] = []
    done: list[int] = []

    def run_standby() -> None:
        reports = monitor(0.1, max_runs=40, store=fleet.store, vault=fleet.vault,
                          config=CONFIG, graph=GRAPH, connector=fleet,
                          on_standby=stood.append)
        done.append(len(reports))

    thread = threading.Thread(target=run_standby)
    thread.start()
    time.sleep(0.5)
    assert stood and not done
    leader.let_go()
    thread.join(30)
    assert done and done[0] >= 1  # it ran once the leader let go
