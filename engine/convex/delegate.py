"""Functions over HTTP for adapters that deploy some other way.

The CLI and push adapters deploy differently but run functions, read the version, ping
and close the same way: through an HTTP client they either were given or made (and then
own, so closing the adapter closes it). These mixins hold that one behaviour, sync and
async, so every adapter delegates identically.
"""

from __future__ import annotations

from typing import Any, Self

from engine.convex.http import AsyncConvexHttpClient, ConvexHttpClient
from engine.ports.deployment import DeploymentTarget, FunctionKind, VersionInfo

__all__ = ["AsyncHttpFunctions", "HttpFunctions"]


class HttpFunctions:
    """Run functions through ``self.http``; close it only when this adapter made it."""

    http: ConvexHttpClient
    _owns_http: bool

    def _attach_http(self, client: ConvexHttpClient | None, target: DeploymentTarget,
                     timeout: float) -> None:
        self._owns_http = client is None
        self.http = client or ConvexHttpClient(target, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def run(self, kind: FunctionKind, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.http.run(kind, path, args)

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.http.query(path, args)

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.http.mutation(path, args)

    def action(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.http.action(path, args)

    def read_version(self) -> VersionInfo:
        return self.http.read_version()

    def ping(self) -> float:
        return self.http.ping()


class AsyncHttpFunctions:
    """The asyncio twin of ``HttpFunctions`` (awaitable functions, ``aclose``)."""

    http: AsyncConvexHttpClient
    _owns_http: bool

    def _attach_http(self, client: AsyncConvexHttpClient | None, target: DeploymentTarget,
                     timeout: float) -> None:
        self._owns_http = client is None
        self.http = client or AsyncConvexHttpClient(target, timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def run(self, kind: FunctionKind, path: str,
                  args: dict[str, Any] | None = None) -> Any:
        return await self.http.run(kind, path, args)

    async def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self.http.query(path, args)

    async def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self.http.mutation(path, args)

    async def action(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self.http.action(path, args)

    async def read_version(self) -> VersionInfo:
        return await self.http.read_version()

    async def ping(self) -> float:
        return await self.http.ping()
