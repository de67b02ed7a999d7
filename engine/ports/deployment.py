"""The one interface every deployment is driven through.

A ``DeployAdapter`` deploys a compiled bundle, runs a function, and reads the deployed
version. Implementations: ``cli.CliDeployAdapter`` (the real ``npx convex deploy``),
``push.PushDeployAdapter`` (replays the push request the CLI built once per bundle),
``http.ConvexHttpClient`` (functions over the HTTP API), ``archive.ArchiveAdapter`` (writes
the bundle for a person to deploy by hand). The runner, health checks, routing and the
disconnect flow depend only on this protocol, so tests can substitute any of them.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from engine.ports.bundle import Bundle

__all__ = [
    "aclose_quietly",
    "close_quietly",
    "AsyncDeployAdapter",
    "AsyncFunctionRunner",
    "Connector",
    "DeployAdapter",
    "DeploymentTarget",
    "DeployResult",
    "FunctionKind",
    "FunctionRunner",
    "VersionInfo",
]

FunctionKind = Literal["query", "mutation", "action"]


@dataclass(frozen=True)
class DeploymentTarget:
    """Where and how to reach one deployment. ``label`` is the safe name used in every
    message and log (a user id or deployment name); ``url`` and ``admin_key`` are secrets
    in transit and never printed (``__repr__`` hides them)."""

    label: str
    url: str
    admin_key: str = field(repr=False)
    allow_insecure_local: bool = False

    def __repr__(self) -> str:
        return f"DeploymentTarget(label={self.label!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.admin_key, self.url)


@dataclass(frozen=True)
class DeployResult:
    """What a deploy did, already redacted."""

    label: str
    version_id: str
    fingerprint: str
    duration_s: float
    output: str = ""  # captured CLI output, redacted
    location: str = ""  # where a manual-deploy bundle was written (archive adapter)


@dataclass(frozen=True)
class VersionInfo:
    """What ``byod:version`` answered: the bundle now deployed and the deployment's own
    record of the last version applied to it (``recorded``, from its ``byodVersions``)."""

    version: str
    fingerprint: str
    kind: str
    recorded: dict[str, Any] | None = None


@runtime_checkable
class FunctionRunner(Protocol):
    """Run Convex functions on one deployment (admin auth; internal functions allowed)."""

    def run(self, kind: FunctionKind, path: str, args: dict[str, Any] | None = None) -> Any: ...

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any: ...

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any: ...

    def read_version(self) -> VersionInfo: ...


@runtime_checkable
class DeployAdapter(FunctionRunner, Protocol):
    """Deploy a bundle, then run functions and read the version like a FunctionRunner."""

    def deploy(self, bundle: Bundle) -> DeployResult: ...


@runtime_checkable
class AsyncFunctionRunner(Protocol):
    """``FunctionRunner`` for the event loop: the fleet-wide checks and rollouts run many
    deployments at once on one loop."""

    async def run(self, kind: FunctionKind, path: str,
                  args: dict[str, Any] | None = None) -> Any: ...

    async def query(self, path: str, args: dict[str, Any] | None = None) -> Any: ...

    async def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any: ...

    async def read_version(self) -> VersionInfo: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class AsyncDeployAdapter(AsyncFunctionRunner, Protocol):
    """``DeployAdapter`` for the event loop."""

    async def deploy(self, bundle: Bundle) -> DeployResult: ...


@runtime_checkable
class Connector(Protocol):
    """Builds every client and deployer a flow needs, from a target and nothing else.

    The one seam between the flows and the outside world: the CLI and the app get the real
    one (``engine.convex.connector.HttpConnector``), tests an in-memory fleet. Timeouts and
    retries are the connector's business, so flows never pass them around."""

    def client(self, target: DeploymentTarget) -> FunctionRunner:
        """Functions over HTTP on one deployment (sync)."""
        ...

    def async_client(self, target: DeploymentTarget, *, timeout: float | None = None,
                     retries: int | None = None) -> AsyncFunctionRunner:
        """Functions over HTTP on one deployment, for the event loop; a fleet-wide check
        bounds each call by its own ``timeout`` and ``retries``."""
        ...

    def deployer(self, target: DeploymentTarget) -> DeployAdapter:
        """Deploys bundles to one deployment and runs its functions (sync)."""
        ...

    def async_deployer(self, target: DeploymentTarget
                       ) -> tuple[Any, AsyncFunctionRunner | None]:
        """A deployer for the rollout runner and, when it is not itself async, the async
        functions client that goes with it."""
        ...


def close_quietly(client: object) -> None:
    """Close a client or adapter that can be closed. A failure to close never masks the
    outcome the caller is about to report: it is logged and dropped."""

    close = getattr(client, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - closing is best effort
            logging.getLogger(__name__).debug("closing a client failed", exc_info=True)


async def aclose_quietly(client: object) -> None:
    """``close_quietly`` for async clients (``aclose``, or a ``close`` that may be async)."""

    close = getattr(client, "aclose", None) or getattr(client, "close", None)
    if not callable(close):
        return
    try:
        result = close()
        if inspect.isawaitable(result):
            await result
    except Exception:  # noqa: BLE001 - closing is best effort
        logging.getLogger(__name__).debug("closing a client failed", exc_info=True)

