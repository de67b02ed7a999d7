"""Webhook alerts: POST a JSON summary when deployments turn unhealthy or recover, or
when stored credentials do not decrypt with the configured keys.

Delivery is retried with exponential backoff inside a time budget, so a slow receiver can
never stretch a monitor run past its interval. The payload is built from sanitized
fields and passed through ``redact`` with every secret in scope before it leaves; the
webhook URL itself (which often embeds a token) is never logged or reported.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from engine.convex.http import hide_request_urls
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


async def send_alert(url: str, payload: dict[str, Any], *, attempts: int = 4,
                     backoff_s: float = 0.5, timeout_s: float = 5.0,
                     budget_s: float | None = None,
                     transport: httpx.AsyncBaseTransport | None = None) -> AlertResult:
    """POST ``payload`` to ``url``; retry 5xx / network failures with backoff (at most
    ``attempts`` tries, never past ``budget_s``). 4xx is not retried: the receiver said no."""

    event = str(payload.get("event", ""))
    count = int(payload.get("count", 0) or 0)
    deadline = time.monotonic() + budget_s if budget_s is not None else None
    error: str | None = None
    tried = 0
    async with httpx.AsyncClient(transport=transport, trust_env=False,
                                 follow_redirects=False) as client:
        for attempt in range(max(1, attempts)):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0.05:
                error = error or "no time left in this run's budget"
                break
            per_try = timeout_s if remaining is None else max(0.05, min(timeout_s, remaining))
            tried += 1
            try:
                response = await client.post(url, json=payload, timeout=per_try)
            except httpx.HTTPError as exc:  # the message may name the URL: keep the type only
                error = f"delivery failed ({type(exc).__name__})"
            else:
                if 200 <= response.status_code < 300:
                    return AlertResult(event, True, tried, None, count)
                error = f"the receiver answered HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    break
            delay = backoff_s * (2 ** attempt)
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic() - 0.05))
            if attempt + 1 < attempts and delay > 0:
                await asyncio.sleep(delay)
    log.warning("alert %s not delivered after %d attempt(s): %s", event, tried, error)
    return AlertResult(event, False, tried, error, count)
