"""Every client of one connector shares its connection pool and the process's SSL context,
and yet each request carries only its own deployment's URL and key: two deployments on
one loopback host (they differ only by port) never see each other's key or cookies."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import httpx
import pytest

from engine.config import EngineConfig
from engine.convex import http as http_module
from engine.convex.connector import HttpConnector
from engine.convex.http import (
    AsyncConvexHttpClient,
    ConvexHttpClient,
    shared_ssl_context,
)
from engine.errors import DeploymentUnauthorized
from engine.ports.deployment import DeploymentTarget

from .conftest import assert_logs_clean, assert_no_secret

KEY_A = "convex-self-hosted|aa11bb22cc33dd44ee55ff66aa77bb88cc99dd00ee11ff22aa33bb44cc55dd66"
KEY_B = "convex-self-hosted|0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
A = DeploymentTarget(label="alice", url="http://127.0.0.1:3210", admin_key=KEY_A,
                     allow_insecure_local=True)
B = DeploymentTarget(label="bob", url="http://127.0.0.1:3211", admin_key=KEY_B,
                     allow_insecure_local=True)
KEYS = {3210: KEY_A, 3211: KEY_B}


class Pool(httpx.MockTransport):
    """A pool stand-in over ``Recorder`` that knows whether it was closed."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.closed = 0

    def close(self) -> None:
        self.closed += 1

    async def aclose(self) -> None:
        self.closed += 1


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[Pool]:
    """Every pool a connector builds, recorded (answers from one ``Recorder``)."""

    import engine.convex.connector as connector_module

    built: list[Pool] = []
    recorder = Recorder()

    def make() -> Pool:
        built.append(Pool(recorder))
        return built[-1]

    monkeypatch.setattr(connector_module, "new_pool", make)
    monkeypatch.setattr(connector_module, "new_async_pool", make)
    return built


class Recorder:
    """Answers like a deployment that accepts only its own key, sets a session cookie on
    every answer, and records what each request carried."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, str]] = []  # (port, Authorization, Cookie)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        port = request.url.port or 0
        auth = request.headers.get("authorization", "")
        self.seen.append((port, auth, request.headers.get("cookie", "")))
        if auth != f"Convex {KEYS[port]}":
            return httpx.Response(401, json={"code": "BadAdminKey", "message": "bad key"})
        return httpx.Response(200, json={"status": "success", "value": port},
                              headers={"set-cookie": f"session=port{port}; Path=/"})


def _check_own_keys(recorder: Recorder, calls: int) -> None:
    assert len(recorder.seen) == calls
    for port, auth, cookie in recorder.seen:
        assert auth == f"Convex {KEYS[port]}"
        other = KEY_B if port == 3210 else KEY_A
        assert other not in auth
        assert cookie == "", "a cookie from one deployment was sent again"


def test_sync_clients_share_one_pool_and_send_only_their_own_key(pools: list[Pool]) -> None:
    connector = HttpConnector(EngineConfig())
    a, b = connector.client(A), connector.client(B)
    try:
        assert len(pools) == 1 and a._pool is b._pool is pools[0]
        for _ in range(3):
            assert a.query("m:f") == 3210
            assert b.query("m:f") == 3211
    finally:
        a.close()
        b.close()
    recorder = pools[0].handler
    assert isinstance(recorder, Recorder)
    _check_own_keys(recorder, 6)
    assert pools[0].closed == 0, "closing its clients closed the shared pool"
    with pytest.raises(RuntimeError, match="closed"):
        a.query("m:f")
    connector.close()
    assert pools[0].closed == 1


def test_async_clients_share_the_loop_pool_which_closes_with_its_last_client(
        pools: list[Pool]) -> None:
    connector = HttpConnector(EngineConfig())

    async def run() -> Any:
        a, b = connector.async_client(A), connector.async_client(B, retries=0)
        assert a._pool is b._pool is pools[-1]
        results = await asyncio.gather(*(c.query("m:f") for c in (a, b, a, b, a, b)))
        assert results == [3210, 3211] * 3
        pool = pools[-1]
        await a.aclose()
        await a.aclose()  # a second close must not release the pool twice
        assert pool.closed == 0
        await b.aclose()
        assert pool.closed == 1, "the pool outlived its last client"
        return pool

    first = asyncio.run(run())
    second = asyncio.run(run())  # a new loop gets a new pool
    assert first is not second and len(pools) == 2
    recorder = pools[0].handler
    assert isinstance(recorder, Recorder)
    _check_own_keys(recorder, 12)


def test_a_wrong_key_is_refused_without_the_key_in_the_error_or_logs(
        caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    connector = HttpConnector(EngineConfig(), transport=httpx.MockTransport(recorder))
    swapped = DeploymentTarget(label="mallory", url=B.url, admin_key=KEY_A,
                               allow_insecure_local=True)
    caplog.set_level(logging.DEBUG)

    async def run() -> None:
        good, bad = connector.async_client(A), connector.async_client(swapped)
        try:
            assert await good.query("m:f") == 3210
            with pytest.raises(DeploymentUnauthorized) as info:
                await bad.query("m:f")
            assert_no_secret(info.value, KEY_A, KEY_B, A.url, B.url)
        finally:
            await good.aclose()
            await bad.aclose()

    asyncio.run(run())
    assert_logs_clean(caplog.records, KEY_A, KEY_B, KEY_A.split("|")[1], KEY_B.split("|")[1])


def test_clients_reuse_the_one_ssl_context(monkeypatch: pytest.MonkeyPatch) -> None:
    shared_ssl_context()  # built once for the process
    built: list[Any] = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context",
                        lambda *a, **k: built.append(1) or real(*a, **k))
    target = DeploymentTarget(label="carol", url="https://happy-otter-123.convex.cloud",
                              admin_key=KEY_A)
    connector = HttpConnector(EngineConfig())

    async def run() -> None:
        clients = [connector.async_client(target) for _ in range(5)]
        for c in clients:
            await c.aclose()

    asyncio.run(run())
    for _ in range(3):
        ConvexHttpClient(target).close()
        asyncio.run(AsyncConvexHttpClient(target).aclose())
    connector.client(target).close()
    connector.close()
    assert built == [], "a client built its own SSL context"
    assert shared_ssl_context() is http_module.shared_ssl_context()
    assert shared_ssl_context().verify_mode == ssl.CERT_REQUIRED


def test_a_client_built_outside_a_loop_owns_a_private_pool() -> None:
    recorder = Recorder()
    connector = HttpConnector(EngineConfig(), transport=httpx.MockTransport(recorder))
    client = connector.async_client(A)

    async def run() -> None:
        assert await client.query("m:f") == 3210
        await client.aclose()

    asyncio.run(run())
    assert client._closed and client._pool is connector.transport
    assert not connector._loop_pools
