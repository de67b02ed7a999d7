"""An in-memory stand-in for user deployments, reached through a ``DeployAdapter``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import (
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    FunctionError,
    SchemaValidationFailed,
)
from engine.ports.deployment import DeploymentTarget, DeployResult, VersionInfo


@dataclass
class FakeDeployment:
    key: str
    fault: str | None = None  # unreachable | timeout | revoked | deploy_fails | ignore_deploy
    bundle: tuple[str, str, str] | None = None  # (version, fingerprint, kind)
    recorded: list[dict[str, Any]] = field(default_factory=list)
    deploys: int = 0


class FakeAdapter:
    def __init__(self, fleet: "FakeFleet", target: DeploymentTarget):
        self.fleet = fleet
        self.target = target
        self.dep = fleet.deployments.get(target.url)
        self.closed = False

    def _check(self) -> FakeDeployment:
        label = self.target.label
        if self.dep is None or self.dep.fault == "unreachable":
            raise DeploymentUnreachable("cannot connect (connection refused)", deployment=label)
        if self.dep.fault == "timeout":
            raise DeploymentTimeout("no answer within 1 s", deployment=label)
        if self.dep.fault == "revoked" or self.target.admin_key != self.dep.key:
            raise DeploymentUnauthorized("the deployment rejected the key (HTTP 401)",
                                         deployment=label)
        return self.dep

    def read_version(self) -> VersionInfo:
        dep = self._check()
        if dep.bundle is None:
            raise FunctionError("Could not find public function for 'byod:version'",
                                deployment=self.target.label, function="byod:version")
        return VersionInfo(dep.bundle[0], dep.bundle[1], dep.bundle[2],
                           dep.recorded[-1] if dep.recorded else None)

    def deploy(self, bundle: Any) -> DeployResult:
        dep = self._check()
        if dep.fault == "deploy_fails":
            raise SchemaValidationFailed("Schema validation failed: messages has bad docs",
                                         deployment=self.target.label, table="messages")
        if dep.fault != "ignore_deploy":
            dep.bundle = (bundle.version_id, bundle.fingerprint, bundle.kind)
        dep.deploys += 1
        return DeployResult(self.target.label, bundle.version_id, bundle.fingerprint, 0.01)

    def run(self, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
        dep = self._check()
        if path == "byod:recordVersion":
            dep.recorded.append(dict(args or {}))
            return "id1"
        raise FunctionError(f"Could not find function for '{path}'", function=path)

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.run("query", path, args)

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.run("mutation", path, args)

    def close(self) -> None:
        self.closed = True


class FakeFleet:
    """URL → deployment; ``factory`` is the ``adapter_factory`` connect takes."""

    def __init__(self) -> None:
        self.deployments: dict[str, FakeDeployment] = {}
        self.adapters: list[FakeAdapter] = []

    def add(self, url: str, key: str) -> FakeDeployment:
        self.deployments[url] = FakeDeployment(key=key)
        return self.deployments[url]

    def factory(self, target: DeploymentTarget) -> FakeAdapter:
        adapter = FakeAdapter(self, target)
        self.adapters.append(adapter)
        return adapter
