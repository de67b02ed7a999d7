"""The one retry policy (``engine.convex.retry``): ``Retry-After`` (seconds or an HTTP date)
on 429/503 honoured and capped, full-jitter backoff otherwise, only idempotent calls
retried, a deadline never overrun; the Convex clients (sync and async) and alert delivery
use it. No test sleeps: the sleep function is injected or patched."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import httpx
import pytest

from engine.convex.http import AsyncConvexHttpClient, ConvexHttpClient
from engine.convex.retry import RetryPolicy, parse_retry_after
from engine.errors import DeploymentRequestRejected
from engine.lifecycle.alerts import send_alert
from engine.ports.deployment import DeploymentTarget

ADMIN_KEY = "prod:retry-test|" + "0a1b2c3d" * 6


@pytest.fixture
def target() -> DeploymentTarget:
    return DeploymentTarget(url="https://retry-test-123.convex.cloud", admin_key=ADMIN_KEY,
                            label="user_7")


def ok(value: Any) -> httpx.Response:
    return httpx.Response(200, json={"status": "success", "value": value, "logLines": []})


class Script:
    """A MockTransport handler answering with the given responses in turn."""

    def __init__(self, *replies: httpx.Response):
        self.replies = list(replies)
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        reply = self.replies[min(self.calls, len(self.replies) - 1)]
        self.calls += 1
        return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


# -- parsing --------------------------------------------------------------------------------

def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("1") == 1.0 and parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for bad in (None, "", "-1", "soon", "nan", "inf"):
        assert parse_retry_after(bad) is None, bad


# -- the Convex clients -----------------------------------------------------------------------

def test_sync_client_waits_what_retry_after_says(target: DeploymentTarget) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}), ok(5))
    slept: list[float] = []
    with ConvexHttpClient(target, transport=httpx.MockTransport(script),
                          sleep=slept.append) as client:
        assert client.query("m:q") == 5
    assert script.calls == 2 and slept == [1.0]


def test_async_client_waits_what_retry_after_says(target: DeploymentTarget) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}), ok(5))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> Any:
        async with AsyncConvexHttpClient(target, transport=httpx.MockTransport(script),
                                         sleep=sleep) as client:
            return await client.query("m:q")

    assert asyncio.run(go()) == 5
    assert script.calls == 2 and slept == [1.0]


def test_patched_sleep_and_an_http_date_on_503(target: DeploymentTarget,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("engine.convex.retry.time.sleep", slept.append)
    script = Script(httpx.Response(503, headers={"Retry-After": http_date(20)}), ok("up"))
    with ConvexHttpClient(target, transport=httpx.MockTransport(script)) as client:
        assert client.query("m:q") == "up"
    assert len(slept) == 1 and 18.0 <= slept[0] <= 20.0


def test_retry_after_is_capped(target: DeploymentTarget) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}), ok(1))
    slept: list[float] = []
    with ConvexHttpClient(target, transport=httpx.MockTransport(script), max_wait=2.0,
                          sleep=slept.append) as client:
        assert client.query("m:q") == 1
    assert slept == [2.0]


def test_retry_after_never_makes_a_mutation_retry(target: DeploymentTarget) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}), ok(1))
    slept: list[float] = []
    with ConvexHttpClient(target, transport=httpx.MockTransport(script),
                          sleep=slept.append) as client:
        with pytest.raises(DeploymentRequestRejected, match="429"):
            client.mutation("m:m")
    assert script.calls == 1 and slept == []


def test_without_retry_after_the_backoff_has_full_jitter(target: DeploymentTarget) -> None:
    script = Script(httpx.Response(502), httpx.Response(502), httpx.Response(502), ok(1))
    slept: list[float] = []
    with ConvexHttpClient(target, transport=httpx.MockTransport(script), retries=3,
                          backoff_base=0.5, backoff_max=1.0, sleep=slept.append) as client:
        assert client.query("m:q") == 1
    assert len(slept) == 3
    for seconds, ceiling in zip(slept, (0.5, 1.0, 1.0)):
        assert 0.0 <= seconds <= ceiling


def test_a_retry_after_on_another_status_is_ignored(target: DeploymentTarget) -> None:
    script = Script(httpx.Response(500, headers={"Retry-After": "9"}), ok(1))
    slept: list[float] = []
    with ConvexHttpClient(target, transport=httpx.MockTransport(script), backoff_base=0.1,
                          sleep=slept.append) as client:
        assert client.query("m:q") == 1
    assert len(slept) == 1 and slept[0] <= 0.1


# -- the policy on its own ---------------------------------------------------------------------

def test_policy_gives_the_last_outcome_back_and_respects_a_deadline() -> None:
    slept: list[float] = []
    tries: list[int] = []

    def attempt() -> str:
        tries.append(1)
        return "bad"

    policy = RetryPolicy(retries=5, backoff_base=0.0)
    assert policy.call(attempt, retry_on=lambda r: r == "bad", sleep=slept.append) == "bad"
    assert len(tries) == 6 and slept == [0.0] * 5

    near = RetryPolicy(retries=5, deadline=time.monotonic() + 0.5)
    tries.clear()
    slept.clear()
    near.call(attempt, retry_on=lambda r: True, retry_after=lambda r: 10.0,
              sleep=slept.append)
    assert slept and all(s <= 0.5 for s in slept)


def test_an_exception_is_not_retried() -> None:
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        RetryPolicy(retries=3).call(attempt, retry_on=lambda r: True, sleep=lambda s: None)
    assert calls == [1]


# -- alert delivery ------------------------------------------------------------------------------

def test_alert_delivery_honours_retry_after() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    result = asyncio.run(send_alert("https://hooks.example.com/x", {"event": "unhealthy"},
                                    transport=httpx.MockTransport(script), sleep=sleep))
    assert result.delivered and result.attempts == 2 and slept == [1.0]


def test_alert_refusal_is_not_retried() -> None:
    script = Script(httpx.Response(404), httpx.Response(200))
    result = asyncio.run(send_alert("https://hooks.example.com/x", {"event": "unhealthy"},
                                    transport=httpx.MockTransport(script)))
    assert not result.delivered and result.attempts == 1 and "404" in (result.error or "")


def test_backoff_for_loops_inside_a_step_is_jittered_and_capped() -> None:
    from engine.convex.retry import RetryPolicy

    policy = RetryPolicy(backoff_base=0.4, backoff_max=2.0, max_wait=1.5)
    for attempt, ceiling in ((1, 0.4), (2, 0.8), (3, 1.5), (9, 1.5)):
        waits = [policy.backoff(attempt) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits), (attempt, max(waits))
        assert len(set(waits)) > 1  # full jitter, not a fixed sleep
