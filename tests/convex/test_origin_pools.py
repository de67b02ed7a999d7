"""One small pool per deployment origin (``engine.convex.pools``): a call only ever looks
at its own deployment's connections, idle origins beyond the bound are closed least
recently used first (never one whose response is still being read), and closing the pools
closes every socket. Over real loopback servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from engine.convex.http import shared_ssl_context
from engine.convex.pools import AsyncOriginPools, OriginPools

from .test_http_pool_sockets import Deployment

KEY = "convex-self-hosted|aa11bb22cc33dd44ee55ff66aa77bb88cc99dd00ee11ff22aa33bb44cc55dd66"


@pytest.fixture
def servers() -> Iterator[list[Deployment]]:
    deps = [Deployment(KEY) for _ in range(5)]
    yield deps
    for d in deps:
        d.close()


def _url(dep: Deployment) -> str:
    return f"http://127.0.0.1:{dep.httpd.server_address[1]}/api/query"


def test_each_origin_keeps_its_own_connection_and_the_bound_evicts_idle_ones(
        servers: list[Deployment]) -> None:
    pools = OriginPools(shared_ssl_context(), max_origins=3)
    with httpx.Client(transport=pools) as client:
        for dep in servers[:3]:
            for _ in range(3):
                assert client.post(_url(dep), json={}).json()["value"] == "ok"
        assert pools.origins == 3
        assert [d.connections for d in servers[:3]] == [1, 1, 1]  # each reused its own
        for dep in servers[3:]:
            client.post(_url(dep), json={})
        assert pools.origins == 3  # the two least recently used were closed
        client.post(_url(servers[0]), json={})  # evicted: a new pool, a new connection
        assert servers[0].connections == 2
        assert servers[4].connections == 1
    assert pools.origins == 0  # closing the client closed every pool


def test_a_pool_with_a_response_being_read_is_never_evicted(
        servers: list[Deployment]) -> None:
    pools = OriginPools(shared_ssl_context(), max_origins=1)
    with httpx.Client(transport=pools) as client:
        with client.stream("POST", _url(servers[0]), json={}) as held:
            # another origin arrives while the first response is still open: the bound
            # cannot be kept by closing a pool in use, so both stay
            assert client.post(_url(servers[1]), json={}).json()["value"] == "ok"
            assert pools.origins == 2
            assert held.read()  # still readable
        client.post(_url(servers[2]), json={})
        assert pools.origins == 1  # both idle now: trimmed back to the bound


def test_async_pools_share_nothing_between_origins_and_close_all(
        servers: list[Deployment]) -> None:
    async def run() -> int:
        pools = AsyncOriginPools(shared_ssl_context(), max_origins=8)
        async with httpx.AsyncClient(transport=pools) as client:
            await asyncio.gather(*(client.post(_url(d), json={}) for d in servers
                                   for _ in range(2)))
            origins = pools.origins
        assert pools.origins == 0
        return origins

    assert asyncio.run(run()) == len(servers)
    with pytest.raises(RuntimeError, match="closed"):
        pools = OriginPools(shared_ssl_context())
        pools.close()
        pools.handle_request(httpx.Request("POST", _url(servers[0])))
