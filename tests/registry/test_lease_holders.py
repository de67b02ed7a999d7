"""Leases record their holder process (host, pid namespace, pid, start time): a lease of a
process that is provably dead on this host is taken over at once (audited); a live
holder's, another host's or an old row's (no holder recorded) is not. Operators list and
break leases. Every test runs on every backend (``tests/registry/conftest.py``); those
that start holder processes or edit lease rows, on the SQL ones."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from engine.errors import LeaseHeld
from engine.ports.registry import LeaseAdmin
from engine.registry.ddl import MIGRATIONS
from engine.registry.process import current_process, provably_dead, start_time
from engine.registry.sqlite import SqliteStore

TAKE = """
import sys, time
from engine.registry.open import open_store
store = open_store(sys.argv[1])
store.acquire_lease(sys.argv[2], sys.argv[3], 600)
print("held", flush=True)
if sys.argv[4] == "stay":
    time.sleep(60)
"""


def _holder(location: str, key: str, holder: str, stay: bool) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", TAKE, location, key, holder,
                             "stay" if stay else "exit"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_lease_records_its_holder_process(store: Any) -> None:
    lease = store.acquire_lease("u1", "me", 30)
    me = current_process()
    assert (lease.host, lease.pid, lease.pid_started) == (me.host, os.getpid(), me.started)
    assert me.started is not None and abs(me.started - start_time(os.getpid())) < 0.02
    [row] = store.list_leases()
    assert row.pid == os.getpid() and row.acquired_at == row.renewed_at
    assert not provably_dead(me)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("sql_only")
def test_a_dead_holders_lease_is_taken_over_at_once(registry_location: str,
                                                    make_store: Callable[..., Any]) -> None:
    make_store()  # the registry exists before the holder starts
    proc = _holder(registry_location, "u1", "crashed-runner", stay=False)
    proc.wait(timeout=30)
    store = make_store()
    [held] = store.list_leases()
    assert held.pid == proc.pid and held.expires_at > time.time() + 500  # far from expiry
    lease = store.acquire_lease("u1", "rescuer", 30)
    assert lease.holder == "rescuer"
    [entry] = [e for e in store.audit_log("u1") if e.event == "lease_taken_over"]
    assert entry.detail["from"] == "crashed-runner" and entry.detail["pid"] == proc.pid
    assert entry.detail["reason"] == "holder process is dead"


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("sql_only")
def test_a_killed_holder_not_yet_reaped_counts_as_dead(registry_location: str,
                                                       make_store: Callable[..., Any]) -> None:
    store = make_store()
    proc = _holder(registry_location, "u1", "killed", stay=True)
    try:
        proc.kill()
        time.sleep(0.3)  # a zombie until we wait for it
        assert store.acquire_lease("u1", "rescuer", 30).holder == "rescuer"
    finally:
        proc.wait(timeout=30)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("sql_only")
def test_a_live_holder_keeps_its_lease_and_a_reused_pid_does_not(
        registry_location: str, make_store: Callable[..., Any]) -> None:
    store = make_store()
    proc = _holder(registry_location, "u1", "alive", stay=True)
    try:
        with pytest.raises(LeaseHeld) as caught:
            store.acquire_lease("u1", "other", 30)
        assert caught.value.holder == "alive"
        # the same pid with another start time: the holder died and the pid was reused
        with store._write() as conn:
            conn.execute("UPDATE leases SET pid_started = pid_started - 100")
        assert store.acquire_lease("u1", "other", 30).holder == "other"
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.usefixtures("sql_only")
def test_another_hosts_or_an_unrecorded_holder_waits_for_expiry(store: Any) -> None:
    store.acquire_lease("a", "remote", 30)
    store.acquire_lease("b", "old", 30)
    with store._write() as conn:  # a pid that cannot exist here, on another host
        conn.execute("UPDATE leases SET host = 'elsewhere', pid = 4194304 "
                     "WHERE deployment = 'a'")
        conn.execute("UPDATE leases SET host = NULL, pid = NULL WHERE deployment = 'b'")
    for key in ("a", "b"):
        with pytest.raises(LeaseHeld):
            store.acquire_lease(key, "me", 30)
    with store._write() as conn:  # the same pid on this host: provably gone
        conn.execute("UPDATE leases SET host = ? WHERE deployment = 'a'",
                     (current_process().host,))
    assert store.acquire_lease("a", "me", 30).holder == "me"


def test_list_and_break(store: Any) -> None:
    assert isinstance(store, LeaseAdmin)
    store.acquire_lease("u2", "x", 30)
    store.acquire_lease("u1", "y", 0.01)
    time.sleep(0.02)
    assert [lease.deployment for lease in store.list_leases()] == ["u1", "u2"]  # expired too
    broken = store.break_lease("u2", reason="stuck")
    assert broken is not None and broken.holder == "x"
    assert store.break_lease("u2") is None
    assert [lease.deployment for lease in store.list_leases()] == ["u1"]
    [entry] = [e for e in store.audit_log("u2") if e.event == "lease_broken"]
    assert entry.detail["holder"] == "x" and entry.detail["reason"] == "stuck"
    with pytest.raises(LeaseHeld):  # the holder notices at its next renewal
        store.renew_lease("u2", "x", 30)


def test_an_older_registry_gains_the_holder_columns(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    raw = sqlite3.connect(path)
    for version, ddl in enumerate(MIGRATIONS[:2], start=1):
        raw.executescript(ddl)
        raw.execute(f"PRAGMA user_version = {version}")
    raw.execute("INSERT INTO leases VALUES ('u1', 'old-runner', 0, ?)", (time.time() + 60,))
    raw.commit()
    raw.close()
    store = SqliteStore(path)
    [lease] = store.list_leases()
    assert lease.holder == "old-runner" and lease.pid is None
    with pytest.raises(LeaseHeld):  # no holder recorded: only expiry frees it
        store.acquire_lease("u1", "me", 30)
