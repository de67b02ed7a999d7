"""Every client and deployer is built here: the one place that knows which classes exist,
so the runner, health checks, routing, disconnect and the CLI ask the ``Connector`` for "a
client (or deployer) for this target" and nothing more."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine.config import EngineConfig
from engine.convex.archive import ArchiveAdapter, ArchiveFormat
from engine.convex.deploy_cli import CliDeployAdapter
from engine.convex.http import AsyncConvexHttpClient, ConvexHttpClient
from engine.convex.toolchain import Toolchain
from engine.ports.deployment import AsyncFunctionRunner, DeployAdapter, DeploymentTarget

if TYPE_CHECKING:
    from engine.convex.push import Payloads

__all__ = ["AdapterKind", "HttpConnector", "adapter_for", "payload_dir"]

AdapterKind = Literal["cli", "http", "archive", "push"]


def payload_dir(config: EngineConfig) -> Path:
    """Where captured push requests are cached: beside the registry."""

    return Path(config.registry_path).parent / "push-payloads"


def adapter_for(target: DeploymentTarget, config: EngineConfig, *, kind: AdapterKind = "cli",
                toolchain: Toolchain | None = None, work_root: Path | None = None,
                archive_dir: Path | None = None,
                archive_format: ArchiveFormat = "tar.gz",
                payloads: "Payloads | None" = None) -> DeployAdapter:
    """``cli``: deploy with the Convex CLI, functions over HTTP (the default);
    ``push``: replay the push request the CLI built once per bundle (``payloads``, by
    default a cache in ``payload_dir``), functions over HTTP;
    ``http``: functions only (deploying raises ``AdapterUnsupported``);
    ``archive``: write the bundle for a manual deploy (functions raise)."""

    if kind == "cli":
        return CliDeployAdapter(target, toolchain=toolchain, timeout=config.deploy_timeout_s,
                                http_timeout=config.http_timeout_s, work_root=work_root)
    if kind == "push":
        from engine.convex.push import PayloadCache, PushDeployAdapter

        cache = payloads if payloads is not None else PayloadCache(
            payload_dir(config), toolchain=toolchain, timeout=config.deploy_timeout_s)
        return PushDeployAdapter(target, payloads=cache, timeout=config.deploy_timeout_s,
                                 http_timeout=config.http_timeout_s)
    if kind == "http":
        return ConvexHttpClient(target, timeout=config.http_timeout_s)
    if kind == "archive":
        return ArchiveAdapter(archive_dir or Path(".byod/archives"), archive_format,
                              label=target.label)
    raise ValueError(f"adapter kind must be 'cli', 'push', 'http' or 'archive', not {kind!r}")


@dataclass
class HttpConnector:
    """The real ``Connector``: functions over the Convex HTTP API (httpx), deploys with
    ``kind`` (``cli`` by default, ``push`` for rollouts that replay one captured push per
    bundle). One per workspace; the push payload cache is shared by every deployer it
    builds, so a bundle is captured once per run."""

    config: EngineConfig
    kind: AdapterKind = "cli"
    toolchain: Toolchain | None = None
    work_root: Path | None = None
    payload_cache: "Payloads | None" = field(default=None, repr=False)

    def client(self, target: DeploymentTarget) -> ConvexHttpClient:
        return ConvexHttpClient(target, timeout=self.config.http_timeout_s)

    def async_client(self, target: DeploymentTarget, *, timeout: float | None = None,
                     retries: int | None = None) -> AsyncConvexHttpClient:
        seconds = self.config.http_timeout_s if timeout is None else timeout
        if retries is None:
            return AsyncConvexHttpClient(target, timeout=seconds)
        return AsyncConvexHttpClient(target, timeout=seconds, retries=retries)

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
                           payloads=self.payloads() if self.kind == "push" else None)

    def async_deployer(self, target: DeploymentTarget) -> tuple[Any, AsyncFunctionRunner | None]:
        functions = self.async_client(target)
        if self.kind == "push":
            from engine.convex.push import AsyncPushDeployAdapter

            return AsyncPushDeployAdapter(target, payloads=self.payloads(), http_client=functions,
                                          timeout=self.config.deploy_timeout_s), functions
        return self.deployer(target), functions
