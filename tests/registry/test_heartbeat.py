"""A command's lease: a short TTL kept alive by a background heartbeat while it runs;
``check()`` reports a lease that was lost so the holder stops before its next write. On
every backend (``tests/registry/conftest.py``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.errors import LeaseHeld
from engine.registry.heartbeat import HEARTBEAT_TTL_S, LeaseHeartbeat


def test_the_heartbeat_keeps_a_short_lease_alive(store: Any) -> None:
    with LeaseHeartbeat(store, "u1", "me", ttl_s=0.3) as beat:
        time.sleep(1.0)  # three ttls: only the heartbeat keeps it
        lease = store.current_lease("u1")
        assert lease is not None and lease.holder == "me"
        assert lease.renewed_at is not None and lease.renewed_at > lease.acquired_at
        with pytest.raises(LeaseHeld):
            store.acquire_lease("u1", "other", 30)
        beat.check()
    assert store.current_lease("u1") is None  # released on exit
    assert HEARTBEAT_TTL_S <= 30


def test_a_lost_lease_is_reported_and_not_released(store: Any) -> None:
    beat = LeaseHeartbeat(store, "u1", "me", ttl_s=0.3)
    beat.acquire()
    store.break_lease("u1")
    store.acquire_lease("u1", "other", 30)
    time.sleep(0.3)  # the heartbeat notices
    assert beat.lost is not None and beat.lost.holder == "other"
    with pytest.raises(LeaseHeld):
        beat.check()
    beat.release()
    assert store.current_lease("u1").holder == "other"  # not ours to release
