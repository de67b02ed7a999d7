"""User deployments for the connect tests, reached through a ``DeployAdapter``: the
in-memory fleet of ``engine.testing``, keyed by URL, starting with nothing deployed."""

from __future__ import annotations

from typing import Any

from engine.ports.deployment import DeploymentTarget
from engine.testing.deployment import InMemoryDeployment, RefusedClient
from engine.testing.fleet import InMemoryFleet


class FakeDeployment(InMemoryDeployment):
    """``bundle``: the (version, fingerprint, kind) ``byod:version`` answers, None when no
    byod bundle is deployed; ``recorded``: the ``byod:recordVersion`` arguments stored in
    its ``byodVersions``."""

    @property
    def bundle(self) -> tuple[str, str, str] | None:
        if self.version is None:
            return None
        return (self.version, str(self.fingerprint), self.kind)

    @bundle.setter
    def bundle(self, value: tuple[str, str, str] | None) -> None:
        self.deployed = None
        if value is None:
            self.version = self.fingerprint = None
        else:
            self.version, self.fingerprint, self.kind = value

    @property
    def recorded(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k not in ("_id", "_creationTime", "appliedAt")}
                for row in self.recorded_versions]


FakeAdapter = FakeDeployment | RefusedClient
"""What ``FakeFleet.factory`` hands out: the deployment itself, or a refusal."""


class FakeFleet(InMemoryFleet):
    """URL → deployment, and the connector connect takes (``factory``: its deployer, as an
    ``adapter_factory``); every client or deployer handed out is in ``adapters``."""

    deployment_class = FakeDeployment

    def __init__(self) -> None:
        super().__init__()
        self.adapters: list[Any] = []

    def add(self, url: str, key: str) -> FakeDeployment:  # type: ignore[override]
        dep = self.add_deployment(url=url, key=key)
        assert isinstance(dep, FakeDeployment)
        return dep

    def deployer(self, target: DeploymentTarget) -> Any:
        adapter = super().deployer(target)
        self.adapters.append(adapter)
        return adapter

    def client(self, target: DeploymentTarget) -> Any:
        adapter = super().client(target)
        self.adapters.append(adapter)
        return adapter

    def factory(self, target: DeploymentTarget) -> Any:
        return self.deployer(target)


class FixedConnector:
    """A connector whose every client and deployer is ``make(target)``: one hand-built
    adapter standing in for the whole outside world."""

    def __init__(self, make: Any):
        self.make = make

    def client(self, target: DeploymentTarget) -> Any:
        return self.make(target)

    def deployer(self, target: DeploymentTarget) -> Any:
        return self.make(target)
