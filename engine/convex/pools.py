"""Connection pools shared by every deployment client of a run, one small pool per origin.

A fleet talks to hundreds of origins (every deployment has its own host). One httpx pool
holding all their connections scans every connection on every request (httpcore picks an
idle connection by walking its whole list), so the cost of a call grows with the fleet:
measured, most of the engine's CPU in a 60-deployment rollout went to that scan. Here each
origin (scheme, host, port) gets its own small pool, built on first use with the process's
one SSL context (building a pool is cheap; loading a CA bundle is not), and a request only
ever looks at its own deployment's connections.

Idle origins do not pile up: beyond ``max_origins`` the least recently used pool with no
request in flight is closed (its keep-alive sockets with it), so a 100k-deployment rollout
holds a bounded number of sockets.
"""

from __future__ import annotations

import ssl
import threading
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Generic, TypeVar

import httpx

__all__ = ["AsyncOriginPools", "ORIGIN_LIMITS", "OriginPools"]

#: Per deployment: enough connections for a deployment's concurrent calls (a health probe
#: and a rollout's call at once), one kept alive to carry its next call.
ORIGIN_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=4,
                             keepalive_expiry=30.0)
#: Pools kept open at once (idle ones beyond this are closed, least recently used first).
MAX_ORIGINS = 256

Origin = tuple[str, str, int | None]
T = TypeVar("T")


def _origin(request: httpx.Request) -> Origin:
    url = request.url
    return (url.scheme, url.host, url.port)


class _Table(Generic[T]):
    """Origin → pool, least recently used first, with in-flight counts (under a lock)."""

    def __init__(self, make: Callable[[], T], max_origins: int) -> None:
        self._make, self._max = make, max_origins
        self._pools: OrderedDict[Origin, T] = OrderedDict()
        self._busy: dict[Origin, int] = {}
        self._lock = threading.Lock()
        self.closed = False

    def enter(self, origin: Origin) -> tuple[T, list[T]]:
        """The origin's pool (marked in use) and the idle pools to close to stay bounded."""

        with self._lock:
            if self.closed:
                raise RuntimeError("the connection pools are closed")
            pool = self._pools.get(origin)
            if pool is None:
                pool = self._pools[origin] = self._make()
            self._pools.move_to_end(origin)
            self._busy[origin] = self._busy.get(origin, 0) + 1
            evicted: list[T] = []
            if len(self._pools) > self._max:  # rare: never walk the table on the hot path
                for key in list(self._pools):
                    if len(self._pools) <= self._max:
                        break
                    if not self._busy.get(key):
                        evicted.append(self._pools.pop(key))
            return pool, evicted

    def leave(self, origin: Origin) -> None:
        with self._lock:
            left = self._busy.get(origin, 1) - 1
            if left > 0:
                self._busy[origin] = left
            else:
                self._busy.pop(origin, None)

    def drain(self) -> list[T]:
        with self._lock:
            self.closed = True
            pools = list(self._pools.values())
            self._pools.clear()
            return pools

    def __len__(self) -> int:
        return len(self._pools)


class _Stream(httpx.SyncByteStream):
    """A response body that tells its pool table when it is closed (once)."""

    def __init__(self, inner: httpx.SyncByteStream | Iterable[bytes],
                 done: Callable[[], None]) -> None:
        self._inner, self._done = inner, done

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            done, self._done = self._done, _nothing
            done()


class _AsyncStream(httpx.AsyncByteStream):
    """The asyncio twin of ``_Stream``."""

    def __init__(self, inner: httpx.AsyncByteStream | AsyncIterable[bytes],
                 done: Callable[[], None]) -> None:
        self._inner, self._done = inner, done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._inner, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            done, self._done = self._done, _nothing
            done()


def _nothing() -> None:
    return None


class OriginPools(httpx.BaseTransport):
    """A sync transport: one ``httpx.HTTPTransport`` per origin (see the module docstring)."""

    def __init__(self, ssl_context: ssl.SSLContext, *, limits: httpx.Limits = ORIGIN_LIMITS,
                 max_origins: int = MAX_ORIGINS) -> None:
        self._table: _Table[httpx.HTTPTransport] = _Table(
            lambda: httpx.HTTPTransport(verify=ssl_context, limits=limits, trust_env=False),
            max_origins)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request)
        pool, evicted = self._table.enter(origin)
        try:
            for idle in evicted:
                idle.close()
            response = pool.handle_request(request)
        except BaseException:
            self._table.leave(origin)
            raise
        # in use until its body is read and closed: only then may its pool be evicted
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _Stream(response.stream, lambda: self._table.leave(origin))
        return response

    def close(self) -> None:
        for pool in self._table.drain():
            pool.close()

    @property
    def origins(self) -> int:
        return len(self._table)


class AsyncOriginPools(httpx.AsyncBaseTransport):
    """The asyncio twin of ``OriginPools`` (bound to the event loop that uses it)."""

    def __init__(self, ssl_context: ssl.SSLContext, *, limits: httpx.Limits = ORIGIN_LIMITS,
                 max_origins: int = MAX_ORIGINS) -> None:
        self._table: _Table[httpx.AsyncHTTPTransport] = _Table(
            lambda: httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits,
                                             trust_env=False),
            max_origins)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request)
        pool, evicted = self._table.enter(origin)
        try:
            for idle in evicted:
                await idle.aclose()
            response = await pool.handle_async_request(request)
        except BaseException:
            self._table.leave(origin)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _AsyncStream(response.stream, lambda: self._table.leave(origin))
        return response

    async def aclose(self) -> None:
        for pool in self._table.drain():
            await pool.aclose()

    @property
    def origins(self) -> int:
        return len(self._table)
