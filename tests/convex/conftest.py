"""Fixtures for the deploy adapter tests: a target with a recognisable key, a check that a
secret appears nowhere in an exception (message, repr, or anything it chains), and what
the tests against local deployments share (the shipped versions, targets, keys)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pytest

from engine.plan.graph import VersionGraph
from engine.ports.deployment import DeploymentTarget
from engine.schema.loader import load_versions

if TYPE_CHECKING:
    from engine.local import LocalDeployment, LocalFleet

ADMIN_KEY = "convex-self-hosted|01c046ab5f9e4d2c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c"
SECRET_PART = ADMIN_KEY.split("|", 1)[1]


@pytest.fixture
def target() -> DeploymentTarget:
    return DeploymentTarget(label="user_42", url="https://happy-otter-123.convex.cloud",
                            admin_key=ADMIN_KEY)


def exception_texts(exc: BaseException, chain: bool = True) -> Iterable[str]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(getattr(current, "__dict__", {}))
        current = (current.__cause__ or current.__context__) if chain else None


def assert_no_secret(exc: BaseException, *secrets: str, chain: bool = True) -> None:
    """``chain=False`` checks only the engine's own exception (for a test that plants the
    key in a library exception's text, which real sockets never produce)."""
    for text in exception_texts(exc, chain):
        for secret in (ADMIN_KEY, SECRET_PART, *secrets):
            assert secret not in text, f"secret leaked into {type(exc).__name__}: {text[:200]}"


def assert_logs_clean(records: Iterable[logging.LogRecord], *secrets: str) -> None:
    for record in records:
        text = record.getMessage() + repr(record.args) + str(record.exc_text or "")
        for secret in (ADMIN_KEY, SECRET_PART, *secrets):
            assert secret not in text, f"secret leaked into log {record.name}: {text[:200]}"


# -- against local deployments --------------------------------------------------------------

@pytest.fixture(scope="module")
def graph(versions_dir: Path) -> VersionGraph:
    return VersionGraph(load_versions(versions_dir))


def local_target(dep: LocalDeployment) -> DeploymentTarget:
    return DeploymentTarget(label=dep.name, url=dep.url, admin_key=dep.admin_key,
                            allow_insecure_local=True)


def fleet_keys(fleet: LocalFleet) -> list[str]:
    """Every deployment's admin key, whole and without its name prefix."""
    return [d.admin_key for d in fleet.deployments] + [
        d.admin_key.split("|", 1)[1] for d in fleet.deployments]
