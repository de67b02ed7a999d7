"""Choosing the adapter for one deployment: the one place that knows which classes exist,
so the runner, health checks and CLI ask for "an adapter for this target" and nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..config import EngineConfig
from .adapter import DeployAdapter, DeploymentTarget
from .archive import ArchiveAdapter, ArchiveFormat
from .cli import CliDeployAdapter
from .http import ConvexHttpClient
from .toolchain import Toolchain

__all__ = ["AdapterKind", "adapter_for"]

AdapterKind = Literal["cli", "http", "archive"]


def adapter_for(target: DeploymentTarget, config: EngineConfig, *, kind: AdapterKind = "cli",
                toolchain: Toolchain | None = None, work_root: Path | None = None,
                archive_dir: Path | None = None,
                archive_format: ArchiveFormat = "tar.gz") -> DeployAdapter:
    """``cli``: deploy with the Convex CLI, functions over HTTP (the default);
    ``http``: functions only (deploying raises ``AdapterUnsupported``);
    ``archive``: write the bundle for a manual deploy (functions raise)."""

    if kind == "cli":
        return CliDeployAdapter(target, toolchain=toolchain, timeout=config.deploy_timeout_s,
                                http_timeout=config.http_timeout_s, work_root=work_root)
    if kind == "http":
        return ConvexHttpClient(target, timeout=config.http_timeout_s)
    if kind == "archive":
        return ArchiveAdapter(archive_dir or Path(".byod/archives"), archive_format,
                              label=target.label)
    raise ValueError(f"adapter kind must be 'cli', 'http' or 'archive', not {kind!r}")
