"""The mock transport speaks the deployment protocol the engine's real HTTP clients and push
adapters use: functions, the push sequence, faults as real answers, each deployment's own
key only; and every request is counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.convex.connector import HttpConnector
from engine.errors import (
    DeploymentServerError,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    FunctionError,
    SchemaValidationFailed,
)
from engine.ports.deployment import DeploymentTarget
from engine.testing.fleet import InMemoryFleet
from engine.testing.mock_transport import ConvexMockTransport, InstantPayloads

from .conftest import assert_no_secret

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> InMemoryFleet:
    fleet = InMemoryFleet(tmp_path_factory.mktemp("mock-transport"),
                          versions=ROOT / "schema_versions", config=EngineConfig())
    fleet.connect_user("alice", 1)
    fleet.connect_user("bob", 1)
    yield fleet
    fleet.close()


def _wire(fleet: InMemoryFleet) -> tuple[ConvexMockTransport, InstantPayloads, HttpConnector]:
    payloads = InstantPayloads()
    transport = ConvexMockTransport(fleet.deployments, bundles=payloads.bundle)
    connector = HttpConnector(EngineConfig(), kind="push", payload_cache=payloads,
                              transport=transport)
    return transport, payloads, connector


def test_functions_round_trip_and_are_counted(fleet: InMemoryFleet) -> None:
    transport, _, connector = _wire(fleet)
    alice = fleet.deployment("alice")
    with connector.client(fleet.target("alice")) as client:
        info = client.read_version()
        assert info.version == alice.version and info.fingerprint == alice.fingerprint
        with pytest.raises(FunctionError, match="Could not find public function"):
            client.query("byod:noSuchFunction")
    assert transport.by_endpoint == {"/api/query": 2}
    assert transport.by_function == {"byod:version": 1, "byod:noSuchFunction": 1}
    assert transport.by_deployment[alice.name] == 2 and transport.handler_cpu_s > 0


def test_push_deploys_the_named_bundle(fleet: InMemoryFleet) -> None:
    transport, _, connector = _wire(fleet)
    bob = fleet.deployment("bob")
    bundle = fleet.bundle(2)

    async def push() -> None:
        adapter, functions = connector.async_deployer(fleet.target("bob"))
        try:
            await adapter.deploy(bundle)
            assert (await functions.read_version()).version == bundle.version_id
        finally:
            await adapter.aclose()
            await functions.aclose()

    asyncio.run(push())
    assert bob.version == bundle.version_id and bob.deploys >= 1
    for endpoint in ("start_push", "wait_for_schema", "finish_push"):
        assert transport.by_endpoint[f"/api/deploy2/{endpoint}"] == 1
    # the completion report is fire and forget: sent at most once
    assert transport.by_endpoint["/api/deploy2/report_push_completed"] <= 1


def test_another_deployments_key_is_refused_without_leaking(fleet: InMemoryFleet) -> None:
    _, _, connector = _wire(fleet)
    alice, bob = fleet.deployment("alice"), fleet.deployment("bob")
    swapped = DeploymentTarget(label="mallory", url=bob.url, admin_key=alice.key)
    with connector.client(swapped) as client:
        with pytest.raises(DeploymentUnauthorized) as info:
            client.read_version()
    assert_no_secret(info.value, alice.key, bob.key, alice.key.split("|")[1], bob.url)


def test_faults_become_real_answers(fleet: InMemoryFleet) -> None:
    _, _, connector = _wire(fleet)
    alice = fleet.deployment("alice")
    target = fleet.target("alice")
    try:
        for fault, error in (("down", DeploymentUnreachable), ("revoked", DeploymentUnauthorized),
                             ("5xx", DeploymentServerError)):
            alice.fault = fault
            with connector.client(target) as client:
                client.policy = type(client.policy)(retries=0)
                with pytest.raises(error):
                    client.read_version()
        alice.fault = "deploy_fails"
        adapter = connector.deployer(target)
        with pytest.raises(SchemaValidationFailed):
            adapter.deploy(fleet.bundle(2))
    finally:
        alice.fault = None
