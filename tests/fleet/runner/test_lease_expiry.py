"""The runner's lease guard: a lease whose renewals keep failing must stop the work once
its ttl has run out, because another runner may take the deployment over by then."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import RegistryError, RolloutError
from engine.fleet.context import DeploymentLease, RunContext
from engine.registry.sqlite import SqliteStore


class _BusyRenewals(SqliteStore):
    """A registry whose every renewal fails as busy (acquire and release still work)."""

    def renew_lease(self, deployment: str, holder: str, ttl_s: float):  # type: ignore[override]
        raise RegistryError("the registry is busy")


def test_lease_counts_as_lost_once_ttl_passes_without_a_renewal(tmp_path) -> None:
    store = _BusyRenewals(tmp_path / "registry.db")
    ctx = RunContext(store=store, kit=None, holder="runner-a", lease_ttl_s=0.4)  # type: ignore[arg-type]

    async def scenario() -> None:
        lease = DeploymentLease(ctx, "alice")
        lease.acquire()
        try:
            lease.check()  # fresh: fine
            await asyncio.sleep(0.6)
            # another runner can take the expired lease over now ...
            store.acquire_lease("alice", "runner-b", 5.0)
            # ... so this one must not go on working
            with pytest.raises(RolloutError, match="lease expired"):
                lease.check()
        finally:
            lease.release()

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_lease_renewed_in_time_stays_valid(tmp_path) -> None:
    store = SqliteStore(tmp_path / "registry.db")
    ctx = RunContext(store=store, kit=None, holder="runner-a", lease_ttl_s=0.4)  # type: ignore[arg-type]

    async def scenario() -> None:
        lease = DeploymentLease(ctx, "alice")
        lease.acquire()
        try:
            await asyncio.sleep(0.9)
            lease.check()
        finally:
            lease.release()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
