"""The failures an in-memory deployment simulates.

``FAULTS`` names what ``InMemoryDeployment.fault`` can be switched to, and ``check_fault``
raises the error each one makes a call meet; ``Crash`` and ``crash_at`` make the process
"die" mid-call; ``RefusedClient`` is what a fleet hands out for a target it cannot serve.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from engine.errors import (
    DeploymentError,
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
)
from engine.ports.deployment import DeployResult, VersionInfo

__all__ = ["FAULTS", "Crash", "RefusedClient", "check_fault", "crash_at"]

FAULTS: dict[str, str] = {
    "down": "every call: DeploymentUnreachable (connection refused)",
    "unreachable": "the same as down",
    "slow": "every call: DeploymentTimeout (no answer in time)",
    "timeout": "the same as slow",
    "revoked": "every call: DeploymentUnauthorized (the key was rejected)",
    "5xx": "every call: DeploymentServerError (HTTP 503)",
    "deploy_fails": "deploys: SchemaValidationFailed; functions answer",
    "ignore_deploy": "deploys report success, yet byod:version keeps answering the old "
                     "marker (a deploy that did not take)",
}
"""The values ``InMemoryDeployment.fault`` takes (None: no fault)."""


def check_fault(fault: str | None, what: str, deployment: str) -> None:
    """Raise what a call (``what``: a function path, or ``deploy``) meets on
    ``deployment`` under ``fault``; nothing for no fault, or a deploy-only one."""

    if fault is None or fault in ("deploy_fails", "ignore_deploy"):
        return
    if fault in ("down", "unreachable"):
        raise DeploymentUnreachable(f"{what}: cannot connect (connection refused)",
                                    deployment=deployment)
    if fault in ("slow", "timeout"):
        raise DeploymentTimeout(f"{what}: no answer within 1 s", deployment=deployment)
    if fault == "revoked":
        raise DeploymentUnauthorized(f"{what}: the deployment rejected the key (HTTP 401)",
                                     deployment=deployment)
    if fault == "5xx":
        raise DeploymentServerError(f"{what}: HTTP 503 from the deployment",
                                    deployment=deployment)
    raise ValueError(f"unknown fault {fault!r}; use one of {', '.join(FAULTS)} or None")


class Crash(BaseException):
    """Simulates the process dying mid-call: a ``BaseException``, so no ``except
    Exception`` in the engine catches it (raise it from a hook, or use ``crash_at``)."""


def crash_at(nth: int, path: str | None = None) -> Callable[[str, dict[str, Any]], None]:
    """A hook for ``before_call`` / ``after_mutation`` that raises ``Crash`` at the
    ``nth`` call (of ``path``, or of any function)."""

    seen = itertools.count(1)

    def hook(called: str, _args: dict[str, Any]) -> None:
        if (path is None or called == path) and next(seen) == nth:
            raise Crash(f"crashed at {called} (call #{nth})")

    return hook


class RefusedClient:
    """What a fleet hands out for a target it cannot serve (an unknown URL, a key the
    deployment does not accept): every call raises the same kind of error."""

    delay = 0.0

    def __init__(self, label: str, error: Callable[[str], DeploymentError]) -> None:
        self.name = label
        self._error = error
        self.closed = 0

    def __repr__(self) -> str:
        return f"RefusedClient(label={self.name!r})"

    @classmethod
    def unreachable(cls, label: str) -> RefusedClient:
        return cls(label, lambda what: DeploymentUnreachable(
            f"{what}: cannot connect (connection refused)", deployment=label))

    @classmethod
    def unauthorized(cls, label: str) -> RefusedClient:
        return cls(label, lambda what: DeploymentUnauthorized(
            f"{what}: the deployment rejected the key (HTTP 401)", deployment=label))

    def run(self, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
        raise self._error(path)

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        raise self._error(path)

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        raise self._error(path)

    def read_version(self) -> VersionInfo:
        raise self._error("byod:version")

    def deploy(self, bundle: Any) -> DeployResult:
        raise self._error("deploy")

    def close(self) -> None:
        self.closed += 1

