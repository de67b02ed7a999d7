"""Webhook alerts: POST a JSON summary when deployments turn unhealthy or recover, or
when stored credentials do not decrypt with the configured keys.

Delivery is retried under the engine's one ``RetryPolicy`` (``engine.convex.retry``:
exponential backoff with full jitter, a ``Retry-After`` on 429/503 honoured) inside a time
budget, so a slow receiver can never stretch a monitor run past its interval. The payload is built from sanitized
fields and passed through ``redact`` with every secret in scope before it leaves; the
webhook URL itself (which often embeds a token) is never logged or reported.
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
from engine.redact import redact

__all__ = ["AlertResult", "build_alert", "send_alert"]

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

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "delivered": self.delivered, "attempts": self.attempts,
                "error": self.error, "deployments": self.deployments}


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
