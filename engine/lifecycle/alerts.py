"""Webhook alerts: POST a JSON summary when deployments turn unhealthy or recover, or
when stored credentials do not decrypt with the configured keys.

Delivery is retried under the engine's one ``RetryPolicy`` (``engine.convex.retry``:
exponential backoff with full jitter, a ``Retry-After`` on 429/503 honoured) inside a time
budget, so a slow receiver can never stretch a monitor run past its interval. The payload
is built from sanitized fields and passed through ``redact`` with every secret in scope
before it leaves; the webhook URL itself (which often embeds a token) is never logged or
reported. Email is the other channel (``engine.lifecycle.email_alerts``): it shares the
queue discipline here (``deliver_queue``), one queue per channel.

Alerts are never lost to a receiver that is down: with a registry that keeps them
(``AlertStore``), every alert is stored when it is detected and ``deliver_pending`` sends
the queue in order, oldest first, on every run until the webhook answers 2xx. A failed
attempt stops the run's deliveries (the receiver is likely down) and holds the queue back
for a bounded, growing delay (``retry_delay``: 30 s doubling to at most 15 min), so a
receiver that recovers hears about every outage and recovery, in order. The body carries
``alert_id`` so a receiver can drop the rare duplicate (a process killed between the 2xx
and recording it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from engine.convex.http import hide_request_urls
from engine.convex.retry import DEADLINE_MARGIN_S, RetryPolicy, retry_after_of
from engine.ports.registry import AlertStore
from engine.redact import redact

__all__ = ["ALERT_BACKOFF_S", "AlertResult", "build_alert", "deliver_pending", "deliver_queue",
           "retry_delay", "send_alert"]

# (first delay, longest delay) between delivery attempts of a pending alert, in seconds
ALERT_BACKOFF_S: tuple[float, float] = (30.0, 900.0)
_CLAIM_HOLD_S = 120.0  # how long a round without a time budget holds the alert it took

log = logging.getLogger(__name__)
hide_request_urls()  # httpx would log the webhook URL (and its token) at INFO


@dataclass(frozen=True)
class AlertResult:
    """What happened to one alert (no URL, no payload secrets)."""

    event: str
    delivered: bool
    attempts: int
    error: str | None = None
    deployments: int = 0
    alert_id: int | None = None  # the stored alert (None: not kept in a registry)
    channel: str = "webhook"  # "webhook" | "email"

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "delivered": self.delivered, "attempts": self.attempts,
                "error": self.error, "deployments": self.deployments,
                "alert_id": self.alert_id, "channel": self.channel}


def retry_delay(failures: int, backoff: tuple[float, float] = ALERT_BACKOFF_S) -> float:
    """Seconds to wait after ``failures`` failed delivery rounds: doubling from the first
    delay, never more than the longest."""

    first, longest = backoff
    return float(min(longest, first * 2 ** max(0, min(failures - 1, 30))))


# one delivery round of one alert: (payload, seconds left or None) -> its result
Send = Callable[[dict[str, Any], float | None], Awaitable[AlertResult]]


async def deliver_pending(outbox: AlertStore, url: str, *, now: float,
                          budget_s: float | None = None,
                          transport: httpx.AsyncBaseTransport | None = None,
                          backoff: tuple[float, float] = ALERT_BACKOFF_S,
                          sleep: Callable[[float], Awaitable[None]] | None = None,
                          ) -> list[AlertResult]:
    """Send the stored webhook alerts in order, oldest first, within ``budget_s`` (see
    ``deliver_queue``)."""

    async def send(payload: dict[str, Any], remaining: float | None) -> AlertResult:
        return await send_alert(url, payload, budget_s=remaining, transport=transport,
                                sleep=sleep)

    return await deliver_queue(outbox, "webhook", send, now=now, budget_s=budget_s,
                               backoff=backoff)


async def deliver_queue(outbox: AlertStore, channel: str, send: Send, *, now: float,
                        budget_s: float | None = None,
                        backoff: tuple[float, float] = ALERT_BACKOFF_S,
                        ) -> list[AlertResult]:
    """Send one channel's stored alerts in order, oldest first, within ``budget_s``. The
    queue waits while its oldest alert is backing off (``next_at`` after ``now``); the
    first failure records the attempt, sets the alert's next time and ends this run's
    deliveries on the channel; an alert the budget does not reach stays due, with no
    attempt counted. Each round first claims its alert, so two processes delivering at
    once never send the same alert."""

    deadline = None if budget_s is None else time.monotonic() + budget_s
    results: list[AlertResult] = []
    for alert in outbox.pending_alerts(channel=channel):
        if alert.attempts and alert.next_at > now:
            break  # the queue is backing off: keep the order, try again later
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= DEADLINE_MARGIN_S:
            break
        hold = _CLAIM_HOLD_S if remaining is None else max(1.0, remaining)
        if not outbox.claim_alert(alert.id, attempts=alert.attempts, until=now + hold):
            break  # another run is delivering the queue right now
        payload = {**alert.payload, "alert_id": alert.id}
        result = await send(payload, remaining)
        if result.attempts == 0:  # no time was left for even one try: due again at once
            outbox.alert_attempted(alert.id, delivered=False, error=result.error, next_at=now)
            break
        retry_at = None if result.delivered else now + retry_delay(alert.attempts + 1, backoff)
        outbox.alert_attempted(alert.id, delivered=result.delivered, error=result.error,
                               next_at=retry_at)
        results.append(AlertResult(result.event, result.delivered, result.attempts,
                                   result.error, result.deployments, alert.id, channel))
        if not result.delivered:
            break
    return results


def build_alert(event: str, deployments: list[dict[str, Any]], summary: dict[str, int],
                at: float, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON body of one alert; every string is redacted against ``secrets``."""

    body = {
        "source": "byod",
        "event": event,  # "unhealthy" | "recovered" | "vault_error"
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
        "count": len(deployments),
        "deployments": deployments,
        "summary": summary,
    }
    text = redact(json.dumps(body, sort_keys=True, default=str), list(secrets))
    return json.loads(text)


@dataclass(frozen=True)
class _Try:
    """One delivery attempt: delivered, or why not and whether to try again."""

    delivered: bool = False
    error: str | None = None
    retry: bool = False
    retry_after: float | None = None


async def send_alert(url: str, payload: dict[str, Any], *, attempts: int = 4,
                     backoff_s: float = 0.5, timeout_s: float = 5.0,
                     budget_s: float | None = None,
                     transport: httpx.AsyncBaseTransport | None = None,
                     max_wait_s: float = 30.0,
                     sleep: Callable[[float], Awaitable[None]] | None = None) -> AlertResult:
    """POST ``payload`` to ``url``; retry 429, 5xx and network failures with backoff (at
    most ``attempts`` tries, never past ``budget_s``; a ``Retry-After`` is honoured up to
    ``max_wait_s``). Any other 4xx is not retried: the receiver said no."""

    event = str(payload.get("event", ""))
    count = int(payload.get("count", 0) or 0)
    deadline = time.monotonic() + budget_s if budget_s is not None else None
    policy = RetryPolicy(retries=max(1, attempts) - 1, backoff_base=backoff_s,
                         backoff_max=max(backoff_s, max_wait_s), max_wait=max_wait_s,
                         deadline=deadline)
    tried = 0
    last: _Try | None = None
    async with httpx.AsyncClient(transport=transport, trust_env=False,
                                 follow_redirects=False) as client:

        async def attempt() -> _Try:
            nonlocal tried, last
            remaining = policy.remaining()
            if remaining is not None and remaining <= DEADLINE_MARGIN_S:
                return _Try(error=(last and last.error) or "no time left in this run's budget")
            per_try = timeout_s if remaining is None else max(0.05, min(timeout_s, remaining))
            tried += 1
            last = await _post(client, url, payload, per_try)
            return last

        result = await policy.acall(attempt, retry_on=lambda t: t.retry,
                                    retry_after=lambda t: t.retry_after, sleep=sleep)
    if result.delivered:
        return AlertResult(event, True, tried, None, count)
    log.warning("alert %s not delivered after %d attempt(s): %s", event, tried, result.error)
    return AlertResult(event, False, tried, result.error, count)


async def _post(client: httpx.AsyncClient, url: str, payload: dict[str, Any],
                timeout: float) -> _Try:
    try:
        response = await client.post(url, json=payload, timeout=timeout)
    except httpx.HTTPError as exc:  # the message may name the URL: keep the type only
        return _Try(error=f"delivery failed ({type(exc).__name__})", retry=True)
    status = response.status_code
    if 200 <= status < 300:
        return _Try(delivered=True)
    return _Try(error=f"the receiver answered HTTP {status}",
                retry=not (400 <= status < 500 and status != 429),
                retry_after=retry_after_of(response))
