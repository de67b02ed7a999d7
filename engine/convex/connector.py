"""Every client and deployer is built here: the one place that knows which classes exist,
so the runner, health checks, routing, disconnect and the CLI ask the ``Connector`` for "a
client (or deployer) for this target" and nothing more.

The clients of one ``HttpConnector`` share its connection pools (one SSL context, one small
pool per deployment origin, ``engine.convex.pools``; each request carries its own
deployment's URL and key): a single sync pool
for the connector's life, and one async pool per event loop, opened by the first client on
that loop and closed when its last client closes (an asyncio pool cannot outlive its
loop, and a rollout, a health check and a reconcile each run their own loop).
``close`` / ``aclose`` close what is still open."""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from engine.config import EngineConfig, state_dir
from engine.convex.archive import ArchiveAdapter, ArchiveFormat
from engine.convex.deploy_cli import CliDeployAdapter
from engine.convex.http import (
    AsyncConvexHttpClient,
    ConvexHttpClient,
    new_async_pool,
    new_pool,
)
from engine.convex.toolchain import Toolchain
from engine.ports.deployment import AsyncFunctionRunner, DeployAdapter, DeploymentTarget

if TYPE_CHECKING:
    from engine.convex.push import Payloads

__all__ = ["AdapterKind", "HttpConnector", "adapter_for", "payload_dir"]

AdapterKind = Literal["cli", "http", "archive", "push"]


def payload_dir(config: EngineConfig) -> Path:
    """Where captured push requests are cached: beside the registry file (or in the state
    directory when the registry is a server)."""

    return state_dir(config) / "push-payloads"


def adapter_for(target: DeploymentTarget, config: EngineConfig, *, kind: AdapterKind = "cli",
                toolchain: Toolchain | None = None, work_root: Path | None = None,
                archive_dir: Path | None = None,
                archive_format: ArchiveFormat = "tar.gz",
                payloads: "Payloads | None" = None,
                http_client: ConvexHttpClient | None = None) -> DeployAdapter:
    """``cli``: deploy with the Convex CLI, functions over HTTP (the default);
    ``push``: replay the push request the CLI built once per bundle (``payloads``, by
    default a cache in ``payload_dir``), functions over HTTP;
    ``http``: functions only (deploying raises ``AdapterUnsupported``);
    ``archive``: write the bundle for a manual deploy (functions raise).
    ``http_client``: the functions client to use (None: the adapter builds its own)."""

    if kind == "cli":
        return CliDeployAdapter(target, toolchain=toolchain, timeout=config.deploy_timeout_s,
                                http_timeout=config.http_timeout_s, work_root=work_root,
                                http_client=http_client)
    if kind == "push":
        from engine.convex.push import PayloadCache, PushDeployAdapter

        cache = payloads if payloads is not None else PayloadCache(
            payload_dir(config), toolchain=toolchain, timeout=config.deploy_timeout_s)
        return PushDeployAdapter(target, payloads=cache, timeout=config.deploy_timeout_s,
                                 http_timeout=config.http_timeout_s, http_client=http_client)
    if kind == "http":
        return http_client or ConvexHttpClient(target, timeout=config.http_timeout_s)
    if kind == "archive":
        return ArchiveAdapter(archive_dir or Path(".byod/archives"), archive_format,
                              label=target.label)
    raise ValueError(f"adapter kind must be 'cli', 'push', 'http' or 'archive', not {kind!r}")


class _LoopPool:
    """One event loop's shared async pool and how many open clients use it."""

    def __init__(self, pool: httpx.AsyncBaseTransport) -> None:
        self.pool = pool
        self.users = 0


@dataclass
class HttpConnector:
    """The real ``Connector``: functions over the Convex HTTP API (httpx), deploys with
    ``kind`` (``cli`` by default, ``push`` for rollouts that replay one captured push per
    bundle). One per workspace; the push payload cache is shared by every deployer it
    builds, so a bundle is captured once per run, and the connection pools are shared by
    every client it builds (see the module docstring).

    ``transport``: an httpx transport to send every request through instead of the
    network (tests and benchmarks: ``engine.testing.mock_transport``); it must serve sync
    requests, async ones, or both, as the clients asked for need, and stays the caller's
    to close."""

    config: EngineConfig
    kind: AdapterKind = "cli"
    toolchain: Toolchain | None = None
    work_root: Path | None = None
    payload_cache: "Payloads | None" = field(default=None, repr=False)
    transport: Any = field(default=None, repr=False)
    _pool: httpx.BaseTransport | None = field(default=None, init=False, repr=False)
    _loop_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool]" = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def client(self, target: DeploymentTarget) -> ConvexHttpClient:
        """A sync client over the connector's one sync pool."""

        with self._lock:
            if self._pool is None:
                self._pool = self.transport if self.transport is not None else new_pool()
            pool = self._pool
        return ConvexHttpClient(target, timeout=self.config.http_timeout_s, shared=pool)

    def async_client(self, target: DeploymentTarget, *, timeout: float | None = None,
                     retries: int | None = None) -> AsyncConvexHttpClient:
        """An async client over the running loop's shared pool (a private pool when no
        loop runs: it could not be shared with anything)."""

        seconds = self.config.http_timeout_s if timeout is None else timeout
        options: dict[str, Any] = {"timeout": seconds}
        if retries is not None:
            options["retries"] = retries
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return AsyncConvexHttpClient(target, transport=self.transport, **options)
        with self._lock:
            entry = self._loop_pools.get(loop)
            if entry is None:
                entry = self._loop_pools[loop] = _LoopPool(
                    self.transport if self.transport is not None else new_async_pool())
            entry.users += 1

        async def release() -> None:
            await self._release(loop, entry)

        return AsyncConvexHttpClient(target, shared=entry.pool, release=release, **options)

    async def _release(self, loop: asyncio.AbstractEventLoop, entry: _LoopPool) -> None:
        with self._lock:
            entry.users -= 1
            last = entry.users <= 0 and self._loop_pools.get(loop) is entry
            if last:
                del self._loop_pools[loop]
        if last and self.transport is None:  # a transport given is the caller's
            await entry.pool.aclose()

    def close(self) -> None:
        """Close the sync pool (each async pool closes with its last client; ``aclose``
        closes the running loop's at once)."""

        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self.transport is None:
            pool.close()

    async def aclose(self) -> None:
        """``close``, and close the running loop's async pool even if clients remain."""

        self.close()
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._loop_pools.pop(loop, None)
        if entry is not None and self.transport is None:
            await entry.pool.aclose()

    def payloads(self) -> "Payloads":
        """The push-payload cache (beside the registry), created on first use."""

        if self.payload_cache is None:
            from engine.convex.push import PayloadCache

            self.payload_cache = PayloadCache(payload_dir(self.config),
                                              toolchain=self.toolchain,
                                              timeout=self.config.deploy_timeout_s)
        return self.payload_cache

    def deployer(self, target: DeploymentTarget) -> DeployAdapter:
        return adapter_for(target, self.config, kind=self.kind, toolchain=self.toolchain,
                           work_root=self.work_root,
                           payloads=self.payloads() if self.kind == "push" else None,
                           http_client=self.client(target) if self.kind != "archive" else None)

    def async_deployer(self, target: DeploymentTarget) -> tuple[Any, AsyncFunctionRunner | None]:
        functions = self.async_client(target)
        if self.kind == "push":
            from engine.convex.push import AsyncPushDeployAdapter

            return AsyncPushDeployAdapter(target, payloads=self.payloads(), http_client=functions,
                                          timeout=self.config.deploy_timeout_s), functions
        return self.deployer(target), functions
