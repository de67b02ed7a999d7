"""A lease held for as long as a command runs: a short TTL, renewed by a background thread.

A command that is killed stops renewing, so its lease lapses within ``HEARTBEAT_TTL_S``
(sooner: a holder that is provably dead on this host is taken over at once, see
``engine.registry.process``). A command that is alive keeps its lease however long a
single step takes (a deploy, a slow page). ``check()`` renews synchronously and raises
``LeaseHeld`` once the lease is lost, so the holder stops before its next write instead
of racing whoever took it.
"""

from __future__ import annotations

import threading

from engine.errors import ByodError, LeaseHeld
from engine.ports.registry import Lease, LeaseStore

__all__ = ["HEARTBEAT_TTL_S", "LeaseHeartbeat"]

HEARTBEAT_TTL_S = 30.0


class LeaseHeartbeat:
    """``acquire()`` (``LeaseHeld`` if another live holder has it), then renewed every
    ``ttl_s / 3`` until ``release()``; usable as a context manager."""

    def __init__(self, store: LeaseStore, key: str, holder: str, *,
                 ttl_s: float = HEARTBEAT_TTL_S):
        if ttl_s <= 0:
            raise ValueError("a lease needs a positive ttl")
        self.store, self.key, self.holder, self.ttl_s = store, key, holder, ttl_s
        self.lost: LeaseHeld | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> Lease:
        lease = self.store.acquire_lease(self.key, self.holder, self.ttl_s)
        self._thread = threading.Thread(target=self._beat, name=f"lease:{self.key}",
                                        daemon=True)
        self._thread.start()
        return lease

    def _beat(self) -> None:
        interval = max(0.05, self.ttl_s / 3)
        while not self._stop.wait(interval):
            try:
                self.store.renew_lease(self.key, self.holder, self.ttl_s)
            except LeaseHeld as exc:
                self.lost = exc
                return
            except ByodError:
                continue  # a busy registry: the next beat retries, the ttl covers it

    def check(self) -> None:
        """Still ours? Renew now; ``LeaseHeld`` when it was lost (taken over, broken)."""

        if self.lost is not None:
            raise self.lost
        try:
            self.store.renew_lease(self.key, self.holder, self.ttl_s)
        except LeaseHeld as exc:
            self.lost = exc
            raise

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self.lost is None:
            try:
                self.store.release_lease(self.key, self.holder)
            except ByodError:
                pass  # it expires on its own

    def __enter__(self) -> "LeaseHeartbeat":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
