"""Verbs about the registry's leases (who works which deployment or rollout): list them
with their holder process, and break one (audited). Each takes a ``Workspace``."""

from __future__ import annotations

import time
from typing import Any

from engine.commands.workspace import Workspace
from engine.errors import ConfirmationRequired, RegistryError, did_you_mean
from engine.ports.registry import Lease, LeaseAdmin

__all__ = ["break_lease", "list_leases"]


def _admin(ws: Workspace) -> LeaseAdmin:
    store = ws.store
    if not isinstance(store, LeaseAdmin):
        raise RegistryError("this registry store cannot list or break leases")
    return store


def lease_state(lease: Lease, now: float) -> str:
    """``expired`` (takeable by anyone), ``holder_dead`` (its process is provably gone:
    taken over at once), or ``active``."""

    from engine.registry.process import ProcessId, provably_dead

    if lease.expires_at <= now:
        return "expired"
    if lease.host is not None and lease.pid is not None and provably_dead(ProcessId(
            lease.host, int(lease.pid), lease.pid_started, lease.pid_namespace)):
        return "holder_dead"
    return "active"


def lease_dict(lease: Lease, now: float) -> dict[str, Any]:
    return {"id": lease.deployment, "holder": lease.holder, "state": lease_state(lease, now),
            "host": lease.host, "pid": lease.pid, "process_started_at": lease.pid_started,
            "acquired_at": lease.acquired_at, "renewed_at": lease.renewed_at,
            "expires_at": lease.expires_at}


def list_leases(ws: Workspace) -> list[dict[str, Any]]:
    """Every lease (expired ones too) with its holder process and state; an absent
    registry has none (and is not created)."""

    if not ws.registry_exists():
        return []
    now = time.time()
    return [lease_dict(lease, now) for lease in _admin(ws).list_leases()]


def break_lease(ws: Workspace, lease_id: str, *, confirm: bool = False,
                reason: str = "") -> dict[str, Any]:
    """End the lease ``lease_id`` (a user id, or ``rollout:<id>``) whoever holds it. The
    holder, if still alive, stops at its next renewal. Needs ``confirm``; audited."""

    store = _admin(ws)
    now = time.time()
    current = {lease.deployment: lease for lease in store.list_leases()}
    if lease_id not in current:
        raise RegistryError(f"no lease {lease_id!r}" + did_you_mean(lease_id, list(current))
                            + "; `byod leases` lists them")
    if not confirm:
        lease = current[lease_id]
        raise ConfirmationRequired(
            f"breaking lease {lease_id!r} (held by {lease.holder}, "
            f"{lease_state(lease, now).replace('_', ' ')}) lets another command work it at "
            "once; if its holder is still running it stops at its next renewal. Pass --yes "
            "to go ahead")
    broken = store.break_lease(lease_id, reason=reason or "byod leases break")
    if broken is None:  # released between the listing and now
        raise RegistryError(f"lease {lease_id!r} was released meanwhile; nothing to break")
    return {**lease_dict(broken, now), "broken": True}
