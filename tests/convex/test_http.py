"""The HTTP function client against httpx.MockTransport: request shape, every status and
exception mapping, bounded retries, and no secret in any exception or log record. Every
case runs through both the sync and the async client."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
import pytest

from engine.convex.http import AsyncConvexHttpClient, ConvexHttpClient
from engine.convex.values import Int64
from engine.errors import (
    AdapterUnsupported,
    DeploymentRequestRejected,
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    FunctionError,
)
from engine.ports.deployment import DeploymentTarget, FunctionRunner, VersionInfo

from .conftest import ADMIN_KEY, SECRET_PART, assert_logs_clean, assert_no_secret

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeDeployment:
    """Answers each request with the next reply (the last one repeats) and records it."""

    replies: list[Reply]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(request)
        # a fresh response each time: one response object cannot serve two clients
        return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)

    @property
    def calls(self) -> int:
        return len(self.requests)


def ok(value: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"status": "success", "value": value, "logLines": []})


class Runner:
    """Drives either client with the same synchronous-looking calls."""

    def __init__(self, mode: str, target: DeploymentTarget, fake: FakeDeployment, **kw: Any):
        self.mode = mode
        transport = httpx.MockTransport(fake)
        kw.setdefault("backoff_base", 0.0)
        cls = ConvexHttpClient if mode == "sync" else AsyncConvexHttpClient
        self.client = cls(target, transport=transport, **kw)

    def __call__(self, method: str, *args: Any) -> Any:
        if self.mode == "sync":
            with self.client:
                return getattr(self.client, method)(*args)

        async def go() -> Any:
            async with self.client:
                return await getattr(self.client, method)(*args)

        return asyncio.run(go())


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def test_request_shape_and_decoding(mode: str, target: DeploymentTarget) -> None:
    fake = FakeDeployment([ok({"n": {"$integer": "KgAAAAAAAAA="}, "b": {"$bytes": "AQI="}})])
    value = Runner(mode, target, fake)(
        "mutation", "messages:send", {"count": Int64(7), "raw": b"\x00", "x": 1.5})
    assert value == {"n": 42, "b": b"\x01\x02"}
    assert isinstance(value["n"], Int64)
    request = fake.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/api/mutation"
    assert request.headers["authorization"] == f"Convex {ADMIN_KEY}"
    body = json.loads(request.content)
    assert body == {
        "path": "messages:send",
        "args": {"count": {"$integer": "BwAAAAAAAAA="}, "raw": {"$bytes": "AA=="}, "x": 1.5},
        "format": "convex_encoded_json",
    }


@pytest.mark.parametrize("kind", ["query", "mutation", "action"])
def test_each_kind_posts_to_its_endpoint(mode: str, target: DeploymentTarget, kind: str) -> None:
    fake = FakeDeployment([ok(None)])
    assert Runner(mode, target, fake)("run", kind, "m:f", None) is None
    assert fake.requests[0].url.path == f"/api/{kind}"
    assert json.loads(fake.requests[0].content)["args"] == {}


def test_keep_alive_one_client_many_calls(target: DeploymentTarget) -> None:
    fake = FakeDeployment([ok(1)])
    with ConvexHttpClient(target, transport=httpx.MockTransport(fake)) as client:
        assert [client.query("a:b") for _ in range(3)] == [1, 1, 1]
    assert fake.calls == 3


@pytest.mark.parametrize("status", [200, 560])
def test_function_error_carries_message_and_data(mode: str, target: DeploymentTarget,
                                                 status: int) -> None:
    body = {"status": "error", "errorMessage": "Uncaught Error: boom",
            "errorData": {"kind": "DRY RUN", "n": {"$integer": "AQAAAAAAAAA="}}}
    fake = FakeDeployment([httpx.Response(status, json=body)])
    with pytest.raises(FunctionError) as info:
        Runner(mode, target, fake)("mutation", "migrations:step", {})
    err = info.value
    assert "boom" in str(err) and "user_42" in str(err) and "migrations:step" in str(err)
    assert err.function == "migrations:step"
    assert err.data == {"kind": "DRY RUN", "n": 1}
    assert err.deployment == "user_42"
    assert fake.calls == 1  # a function error is an answer, never retried


@pytest.mark.parametrize("status", [401, 403])
def test_auth_rejection(mode: str, target: DeploymentTarget, status: int) -> None:
    body = {"code": "BadAdminKey", "message": f"The provided admin key {ADMIN_KEY} is invalid"}
    fake = FakeDeployment([httpx.Response(status, json=body)])
    with pytest.raises(DeploymentUnauthorized) as info:
        Runner(mode, target, fake, retries=3)("query", "byod:version")
    assert "BadAdminKey" in str(info.value) and "user_42" in str(info.value)
    assert_no_secret(info.value)
    assert fake.calls == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_retried_for_queries_only(mode: str, target: DeploymentTarget,
                                               status: int) -> None:
    fake = FakeDeployment([httpx.Response(status, text="upstream exploded")])
    with pytest.raises(DeploymentServerError) as info:
        Runner(mode, target, fake, retries=2)("query", "m:q")
    assert f"HTTP {status}" in str(info.value)
    assert fake.calls == 3  # one try + two retries, then give up

    fake = FakeDeployment([httpx.Response(status)])
    with pytest.raises(DeploymentServerError):
        Runner(mode, target, fake, retries=2)("mutation", "m:m")
    assert fake.calls == 1  # a mutation may have run: never repeated


def test_mutation_resent_only_when_the_server_says_it_never_ran(
        mode: str, target: DeploymentTarget) -> None:
    interrupted = httpx.Response(503, json={"code": "CallInterrupted", "message": "send it again"})
    fake = FakeDeployment([interrupted, ok(7)])
    assert Runner(mode, target, fake, retries=2)("mutation", "m:m") == 7
    assert fake.calls == 2

    committed = httpx.Response(500, json={"code": "CallInterruptedAfterCommit",
                                          "message": "do not send it again"})
    fake = FakeDeployment([committed, ok(7)])
    with pytest.raises(DeploymentServerError, match="CallInterruptedAfterCommit"):
        Runner(mode, target, fake, retries=2)("mutation", "m:m")
    assert fake.calls == 1


def test_query_recovers_after_transient_failures(mode: str, target: DeploymentTarget) -> None:
    fake = FakeDeployment([httpx.Response(503), httpx.RemoteProtocolError("dropped"), ok(5)])
    assert Runner(mode, target, fake, retries=2)("query", "m:q") == 5
    assert fake.calls == 3


def test_retries_zero_means_one_attempt(mode: str, target: DeploymentTarget) -> None:
    fake = FakeDeployment([httpx.Response(503), ok(1)])
    with pytest.raises(DeploymentServerError):
        Runner(mode, target, fake, retries=0)("query", "m:q")
    assert fake.calls == 1


def test_other_4xx_is_request_rejected(mode: str, target: DeploymentTarget) -> None:
    fake = FakeDeployment([httpx.Response(400, json={"code": "BadJsonBody", "message": "nope"})])
    with pytest.raises(DeploymentRequestRejected) as info:
        Runner(mode, target, fake)("query", "m:q")
    assert info.value.status == 400 and info.value.code == "BadJsonBody"
    assert fake.calls == 1


@pytest.mark.parametrize("kind,expected_calls", [("query", 3), ("mutation", 3)])
def test_connect_error_is_unreachable_and_retried_for_all(
        mode: str, target: DeploymentTarget, kind: str, expected_calls: int) -> None:
    fake = FakeDeployment([httpx.ConnectError("[Errno 111] Connection refused")])
    with pytest.raises(DeploymentUnreachable) as info:
        Runner(mode, target, fake, retries=2)("run", kind, "m:f", {})
    assert "cannot connect" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert fake.calls == expected_calls  # nothing was sent: safe even for mutations


@pytest.mark.parametrize("kind,expected_calls", [("query", 3), ("mutation", 1), ("action", 1)])
def test_dropped_connection(mode: str, target: DeploymentTarget, kind: str,
                            expected_calls: int) -> None:
    fake = FakeDeployment([httpx.RemoteProtocolError("Server disconnected without "
                                                     "sending a response.")])
    with pytest.raises(DeploymentUnreachable) as info:
        Runner(mode, target, fake, retries=2)("run", kind, "m:f", {})
    assert "dropped" in str(info.value)
    assert fake.calls == expected_calls


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("timed out"),
                                 httpx.ConnectTimeout("timed out"),
                                 httpx.WriteTimeout("timed out")])
def test_timeouts_are_typed_and_not_retried(mode: str, target: DeploymentTarget,
                                            exc: Exception) -> None:
    fake = FakeDeployment([exc])
    with pytest.raises(DeploymentTimeout) as info:
        Runner(mode, target, fake, retries=2, timeout=1.5)("query", "m:q")
    assert "1.5 s" in str(info.value)
    assert fake.calls == 1


@pytest.mark.parametrize("reply", [
    httpx.Response(200, text="<html>hello</html>"),
    httpx.Response(200, json={"unexpected": True}),
    httpx.Response(200, json={"status": "success", "value": {"$integer": "short"}}),
])
def test_malformed_success_is_server_error(mode: str, target: DeploymentTarget,
                                           reply: httpx.Response) -> None:
    with pytest.raises(DeploymentServerError):
        Runner(mode, target, FakeDeployment([reply]))("query", "m:q")


def test_read_version(mode: str, target: DeploymentTarget) -> None:
    value = {"version": "0003", "fingerprint": "sha256:abc", "kind": "narrow",
             "recorded": {"version": "0003", "appliedAt": 1.0}}
    fake = FakeDeployment([ok(value)])
    info = Runner(mode, target, fake)("read_version")
    assert info == VersionInfo(version="0003", fingerprint="sha256:abc", kind="narrow",
                               recorded={"version": "0003", "appliedAt": 1.0})
    assert json.loads(fake.requests[0].content)["path"] == "byod:version"
    assert fake.requests[0].url.path == "/api/query"

    with pytest.raises(DeploymentServerError, match="not a version record"):
        Runner(mode, target, FakeDeployment([ok(None)]))("read_version")


def test_ping(mode: str, target: DeploymentTarget) -> None:
    missing = httpx.Response(200, json={"status": "error", "errorMessage":
                                        "Could not find public function for 'byod:ping'"})
    assert Runner(mode, target, FakeDeployment([missing]))("ping") >= 0.0
    with pytest.raises(DeploymentUnauthorized):
        Runner(mode, target, FakeDeployment([httpx.Response(401)]))("ping")


def test_http_client_cannot_deploy(target: DeploymentTarget) -> None:
    client = ConvexHttpClient(target, transport=httpx.MockTransport(FakeDeployment([ok(1)])))
    assert isinstance(client, FunctionRunner)
    with pytest.raises(AdapterUnsupported, match="user_42"):
        client.deploy(object())


def test_bad_arguments_fail_before_io(target: DeploymentTarget) -> None:
    fake = FakeDeployment([ok(1)])
    client = ConvexHttpClient(target, transport=httpx.MockTransport(fake))
    with pytest.raises(ValueError, match="reserved"):
        client.query("m:q", {"$bad": 1})
    with pytest.raises(ValueError, match="kind"):
        client.run("subscribe", "m:q")  # type: ignore[arg-type]
    assert fake.calls == 0


def test_no_secret_in_any_exception_or_log(mode: str, target: DeploymentTarget,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Servers that echo the key back in every possible place; nothing reaches the caller."""
    echo = f"key {ADMIN_KEY} secret {SECRET_PART} header Authorization: Convex {ADMIN_KEY}"
    replies: list[Reply] = [
        httpx.Response(200, json={"status": "error", "errorMessage": echo,
                                  "errorData": {"why": echo}}),
        httpx.Response(401, json={"code": "BadAdminKey", "message": echo}),
        httpx.Response(500, text=echo),
        httpx.Response(400, json={"code": echo, "message": echo}),
        httpx.ConnectError(echo),
        httpx.RemoteProtocolError(echo),
        httpx.ReadTimeout(echo),
    ]
    caplog.set_level(logging.DEBUG)
    for reply in replies:
        fake = FakeDeployment([reply])
        with pytest.raises(Exception) as info:
            Runner(mode, target, fake, retries=1)("query", "m:q")
        assert "user_42" in str(info.value)
        assert_no_secret(info.value, chain=not isinstance(reply, Exception))
        if isinstance(info.value, FunctionError):
            assert SECRET_PART not in json.dumps(info.value.data)
        for text in (str(info.value), repr(info.value)):
            assert target.url not in text
    assert_logs_clean(caplog.records)
    assert any(r.name == "engine.convex.http" for r in caplog.records)


def test_target_repr_and_client_repr_hide_secrets(target: DeploymentTarget) -> None:
    client = ConvexHttpClient(target, transport=httpx.MockTransport(FakeDeployment([ok(1)])))
    for text in (repr(target), repr(client), str(client)):
        assert ADMIN_KEY not in text and target.url not in text
