"""Exactly one health monitor per registry, however many processes run one.

The monitor (its checks, its status moves and its alert deliveries) runs in the process
holding the registry lease ``monitor``, renewed by a ``LeaseHeartbeat``; every other
monitor — a second `byod monitor` on another machine, a replica of `byod serve` — stands
by and tries again every half lease TTL. A holder that dies stops renewing: a standby takes
over within the TTL (at once on the same host, where a dead holder is provable). Without
this, two machines would both check the fleet and both deliver each alert.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from engine.errors import LeaseHeld
from engine.ports.registry import LeaseStore
from engine.registry.heartbeat import HEARTBEAT_TTL_S, LeaseHeartbeat

__all__ = ["MONITOR_LEASE", "MonitorLeadership", "monitor_holder"]

log = logging.getLogger(__name__)

MONITOR_LEASE = "monitor"


def monitor_holder() -> str:
    """This process's name on the lease: host and pid (shown by `byod leases`)."""

    return f"monitor:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class MonitorLeadership:
    """``lead()`` before each run: True while this process holds (or has just taken) the
    monitor lease; ``let_go()`` when the monitor stops, so a standby takes over at once."""

    def __init__(self, store: LeaseStore, holder: str | None = None, *,
                 ttl_s: float = HEARTBEAT_TTL_S):
        self.store, self.ttl_s = store, ttl_s
        self.holder = holder or monitor_holder()
        self.held_by: str | None = None  # the other holder, when standing by
        self._heartbeat: LeaseHeartbeat | None = None

    @property
    def leader(self) -> bool:
        return self._heartbeat is not None and self._heartbeat.lost is None

    def lead(self) -> bool:
        """Hold the lease, or take it when free (its holder let go, expired or died)."""

        if self._heartbeat is not None:
            if self._heartbeat.lost is None:
                return True
            log.warning("monitor: the lease was taken over (%s); standing by",
                        self._heartbeat.lost)
            self._heartbeat.release()
            self._heartbeat = None
        heartbeat = LeaseHeartbeat(self.store, MONITOR_LEASE, self.holder, ttl_s=self.ttl_s)
        try:
            heartbeat.acquire()
        except LeaseHeld as exc:
            self.held_by = exc.holder
            return False
        self._heartbeat, self.held_by = heartbeat, None
        return True

    def let_go(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.release()
            self._heartbeat = None
