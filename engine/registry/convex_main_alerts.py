"""``AlertStore`` on the main Convex deployment (``byodRegAlerts``), as
``engine.registry.sql_alerts`` keeps it in SQL: an alert is stored when it is detected, one
row per delivery channel, before any delivery is tried, and stays pending until a round
on its channel is recorded as delivered; a round is claimed in one transaction
(``byodRegistry:claimAlert``: only if nobody took it since it was read), so two monitors
never send the same alert at once. Delivered rows are pruned after ``KEEP_DELIVERED_S``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from engine.ports.registry import PendingAlert
from engine.redact import redact
from engine.registry.sql_alerts import CHANNELS, KEEP_DELIVERED_S

__all__ = ["ConvexAlerts"]


def _alert(doc: dict[str, Any]) -> PendingAlert:
    return PendingAlert(id=int(doc["id"]), event=doc["event"],
                        payload=json.loads(doc["payload"]),
                        created_at=float(doc["createdAt"]), attempts=int(doc["attempts"]),
                        next_at=float(doc["nextAt"]), last_error=doc.get("lastError"),
                        delivered_at=doc.get("deliveredAt"), channel=doc["channel"])


class ConvexAlerts:
    """``AlertStore`` over ``byodRegistry:*Alert*`` (see the module docstring)."""

    if TYPE_CHECKING:
        _clock: Callable[[], float]

        def _query(self, name: str, **args: Any) -> Any: ...

        def _mutation(self, name: str, **args: Any) -> Any: ...

    def enqueue_alert(self, event: str, payload: dict[str, object],
                      channel: str = "webhook") -> PendingAlert:
        if channel not in CHANNELS:
            raise ValueError(f"unknown alert channel {channel!r} (one of {', '.join(CHANNELS)})")
        text = redact(json.dumps(payload, default=str, sort_keys=True))
        return _alert(self._mutation("enqueueAlert", event=event, payload=text,
                                     channel=channel, now=self._clock()))

    def pending_alerts(self, limit: int = 100,
                       channel: str | None = None) -> list[PendingAlert]:
        if limit <= 0:
            return []
        return [_alert(d) for d in self._query("pendingAlerts", channel=channel,
                                               limit=min(limit, 1000))]

    def claim_alert(self, alert_id: int, *, attempts: int, until: float) -> bool:
        return bool(self._mutation("claimAlert", id=float(alert_id), attempts=float(attempts),
                                   until=float(until)))

    def alert_attempted(self, alert_id: int, *, delivered: bool, error: str | None = None,
                        next_at: float | None = None) -> None:
        now = self._clock()
        self._mutation("alertAttempted", id=float(alert_id), delivered=bool(delivered),
                       error=None if error is None else redact(error)[:500],
                       nextAt=now if next_at is None else float(next_at), now=now,
                       keepDelivered=KEEP_DELIVERED_S)
