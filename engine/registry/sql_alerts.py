"""``SqlAlerts``: the ``AlertStore`` role of both SQL stores (a mixin, like those of
``engine.registry.sql_roles``).

An alert is written when it is detected, before any delivery is tried — one row per
delivery channel (``webhook``, ``email``) — so a receiver that is down, or a monitor process
that dies, never loses it; each row stays pending until an attempt on its channel is
recorded as delivered. Each channel is its own queue: a webhook that is down never holds
back the email, nor the other way round. Delivered rows are kept for a while for the record
and pruned after ``KEEP_DELIVERED_S``.
"""

from __future__ import annotations

import json
from typing import Any

from engine.ports.registry import PendingAlert
from engine.redact import redact
from engine.registry.sql_core import SqlCore

__all__ = ["CHANNELS", "KEEP_DELIVERED_S", "SqlAlerts"]

KEEP_DELIVERED_S = 30 * 86_400.0
CHANNELS = ("webhook", "email")

_COLS = ("id, event, payload, created_at, attempts, next_at, last_error, delivered_at, "
         "channel")


def _alert(row: Any) -> PendingAlert:
    return PendingAlert(id=row["id"], event=row["event"], payload=json.loads(row["payload"]),
                        created_at=row["created_at"], attempts=row["attempts"],
                        next_at=row["next_at"], last_error=row["last_error"],
                        delivered_at=row["delivered_at"], channel=row["channel"])


class SqlAlerts(SqlCore):
    """``AlertStore``: alerts kept until their channel acknowledges them."""

    def enqueue_alert(self, event: str, payload: dict[str, object],
                      channel: str = "webhook") -> PendingAlert:
        """Store a new alert for one channel, due now. The payload is redacted once more
        (defence in depth: it is built from sanitized fields)."""

        if channel not in CHANNELS:
            raise ValueError(f"unknown alert channel {channel!r} (one of {', '.join(CHANNELS)})")
        text = redact(json.dumps(payload, default=str, sort_keys=True))
        now = self._clock()
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO alerts (event, payload, created_at, attempts, next_at, channel) "
                f"VALUES (?, ?, ?, 0, ?, ?) RETURNING {_COLS}",
                (event, text, now, now, channel)).fetchone()
            return _alert(row)

    def pending_alerts(self, limit: int = 100,
                       channel: str | None = None) -> list[PendingAlert]:
        """Undelivered alerts, oldest first: one channel's queue, or every channel's."""

        if channel is None:
            rows = self._read(f"SELECT {_COLS} FROM alerts WHERE delivered_at IS NULL "
                              "ORDER BY id LIMIT ?", (limit,))
        else:
            rows = self._read(f"SELECT {_COLS} FROM alerts WHERE delivered_at IS NULL "
                              "AND channel = ? ORDER BY id LIMIT ?", (channel, limit))
        return [_alert(r) for r in rows]

    def claim_alert(self, alert_id: int, *, attempts: int, until: float) -> bool:
        """Take the alert for one delivery round (counted as an attempt), unless another
        process took it since it was read with ``attempts``: two monitors never send the
        same alert at once. Held until ``until``: a round that dies before recording its
        outcome leaves the alert due again then."""

        with self._write() as conn:
            cur = conn.execute("UPDATE alerts SET attempts = attempts + 1, next_at = ? "
                               "WHERE id = ? AND attempts = ? AND delivered_at IS NULL",
                               (until, alert_id, attempts))
            return cur.rowcount == 1

    def alert_attempted(self, alert_id: int, *, delivered: bool, error: str | None = None,
                        next_at: float | None = None) -> None:
        """Record a claimed round's outcome: delivered (never sent again), or failed with
        ``error`` and due again at ``next_at``."""

        now = self._clock()
        with self._write() as conn:
            if delivered:
                conn.execute("UPDATE alerts SET delivered_at = ?, last_error = NULL "
                             "WHERE id = ? AND delivered_at IS NULL", (now, alert_id))
                conn.execute("DELETE FROM alerts WHERE delivered_at IS NOT NULL AND "
                             "delivered_at < ?", (now - KEEP_DELIVERED_S,))
            else:
                conn.execute("UPDATE alerts SET last_error = ?, next_at = ? "
                             "WHERE id = ? AND delivered_at IS NULL",
                             (None if error is None else redact(error)[:500],
                              now if next_at is None else next_at, alert_id))
