"""The operator dashboard's data: totals, the fleet by version (with the version graph's
edges), users failures first, rollouts, recent jobs and the audit log. Read-only; one pass
over the users."""

from __future__ import annotations

from typing import Any, Protocol

from engine import commands
from engine.commands.workspace import Workspace
from engine.registry.open import Store

__all__ = ["STATUS_ORDER", "fleet_overview"]

# failures first, then what is in flight, then the healthy and the gone
STATUS_ORDER = {"error": 0, "pending": 1, "connected": 2, "disconnected": 3}


class Service(Protocol):
    """What the overview reads of ``engine.serve.service.Service``."""

    ws: Workspace
    store: Store
    enabled: bool

    def head_version(self) -> str: ...


def fleet_overview(service: Service, *, audit_limit: int = 50) -> dict[str, Any]:
    ws = service.ws
    store = service.store
    head = service.head_version()
    users = store.list_users()
    totals = {"users": len(users), "connected": 0, "error": 0, "pending": 0,
              "disconnected": 0, "pending_migrations": 0}
    by_version: dict[str, int] = {}
    rows = []
    for user in users:
        totals[user.connection_status] = totals.get(user.connection_status, 0) + 1
        behind = user.connection_status in ("connected", "error") and \
            user.schema_version not in (None, head)
        if behind:
            totals["pending_migrations"] += 1
        if user.schema_version and user.connection_status != "disconnected":
            by_version[user.schema_version] = by_version.get(user.schema_version, 0) + 1
        row = user.public_dict()
        row["behind_head"] = behind
        rows.append(row)
    rows.sort(key=lambda r: (STATUS_ORDER.get(r["connection_status"], 9), r["user_id"]))
    graph = ws.graph
    heads = set(graph.heads())
    versions = [{"id": vid, "count": by_version.get(vid, 0), "parents": graph.parents(vid),
                 "head": vid in heads} for vid in graph.topological_order()]
    return {
        "head_version": head,
        "enabled": service.enabled,
        "availability": ws.config.availability,
        "totals": totals,
        "versions": versions,
        "users": rows,
        "rollouts": commands.list_rollouts(ws, limit=20),
        "jobs": [j.to_dict() for j in store.list_jobs(limit=20)],
        "audit": [{"at": e.at, "user_id": e.user_id, "event": e.event, "detail": e.detail}
                  for e in store.audit_log(None, limit=audit_limit)],
    }
