"""Choosing the adapter for one deployment: the one place that knows which classes exist,
so the runner, health checks and CLI ask for "an adapter for this target" and nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from engine.config import EngineConfig
from engine.convex.archive import ArchiveAdapter, ArchiveFormat
from engine.convex.deploy_cli import CliDeployAdapter
from engine.convex.http import ConvexHttpClient
from engine.convex.toolchain import Toolchain
from engine.ports.deployment import DeployAdapter, DeploymentTarget

if TYPE_CHECKING:
    from engine.convex.push import Payloads

__all__ = ["AdapterKind", "adapter_for", "payload_dir"]

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
