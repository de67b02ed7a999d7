"""A disconnect's data step holds the user's lease (the one a rollout's runner takes):
it never runs while another runner works the deployment, and stops when it loses it."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from ops_fakes import Fleet

from engine.errors import DisconnectError

from .test_disconnect import USER_TABLES, connect, go  # noqa: F401 - shared setup
from .test_disconnect import fleet as fleet  # noqa: F401 - the fixture


def test_migrate_refuses_while_another_runner_holds_the_lease(fleet: Fleet) -> None:
    dep = connect(fleet)
    fleet.store.acquire_lease("u1", "rollout-runner", 60.0)
    with pytest.raises(DisconnectError, match="another runner") as caught:
        go(fleet, "migrate", page_size=2)
    assert caught.value.exit_code == 3  # refused for safety, nothing changed
    assert "rollout-runner, process " in str(caught.value)  # who holds it, and where
    assert "byod leases break u1 --yes" in str(caught.value)
    assert fleet.store.get_user("u1").connection_status == "connected"
    assert fleet.store.load_progress("disconnect", "u1") is None
    assert all(not fleet.main.docs(t) for t in USER_TABLES)
    assert dep.docs("messages")  # untouched
    # still the rollout's lease: the refused disconnect did not release it
    assert fleet.store.current_lease("u1").holder == "rollout-runner"


def test_migrate_releases_its_lease_when_done(fleet: Fleet) -> None:
    connect(fleet)
    assert go(fleet, "migrate", page_size=2).status == "disconnected"
    assert fleet.store.current_lease("u1") is None


def test_migrate_stops_at_the_next_page_when_the_lease_is_taken_over(fleet: Fleet) -> None:
    dep = connect(fleet)
    calls = {"n": 0}

    def hook(path: str, args: dict[str, Any]) -> None:
        if path == "byod:exportPage":
            calls["n"] += 1
            if calls["n"] == 2:  # the lease expired meanwhile and a rollout took it
                fleet.store.release_lease("u1", fleet.store.current_lease("u1").holder)
                fleet.store.acquire_lease("u1", "rollout-runner", 60.0)

    dep.before_call = hook
    with pytest.raises(DisconnectError, match="rollout-runner"):
        go(fleet, "migrate", page_size=2)
    dep.before_call = None
    # stopped after at most the page in flight; never marked disconnected
    assert fleet.store.get_user("u1").connection_status != "disconnected"
    copied = sum(len(fleet.main.docs(t)) for t in USER_TABLES)
    assert copied <= 2


TAKE_AND_DIE = """
import sys
from engine.registry.sqlite import SqliteStore
SqliteStore(sys.argv[1]).acquire_lease(sys.argv[2], "disconnect:killed", 600)
"""


@pytest.mark.timeout(60)
def test_a_rerun_after_a_kill_past_the_status_write_tidies_the_dead_holders_lease(
        fleet: Fleet) -> None:
    connect(fleet)
    assert go(fleet, "keep").status == "disconnected"
    # the first run was killed after writing the status, before releasing its lease
    subprocess.run([sys.executable, "-c", TAKE_AND_DIE, str(fleet.store.path), "u1"],
                   check=True, timeout=30)
    assert fleet.store.current_lease("u1").holder == "disconnect:killed"
    report = go(fleet, "keep")
    assert report.message == "already disconnected; nothing to do"
    assert fleet.store.current_lease("u1") is None


def test_a_rerun_leaves_a_live_holders_lease_alone(fleet: Fleet) -> None:
    connect(fleet)
    assert go(fleet, "keep").status == "disconnected"
    fleet.store.acquire_lease("u1", "rollout-runner", 60.0)  # this process: alive
    assert go(fleet, "keep").status == "disconnected"
    assert fleet.store.current_lease("u1").holder == "rollout-runner"
