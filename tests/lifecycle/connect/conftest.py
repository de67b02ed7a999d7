"""Shared fixtures for the connect tests: a registry, a vault, the shipped head version."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.lifecycle.connect import head_version
from engine.registry.sqlite import SqliteStore
from engine.schema.models import SchemaVersion
from engine.vault import Vault, generate_key

from .fakes import FakeFleet

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def head() -> SchemaVersion:
    return head_version(None, EngineConfig(versions_dir=ROOT / "schema_versions"))


@pytest.fixture()
def config(tmp_path) -> EngineConfig:
    return EngineConfig(versions_dir=ROOT / "schema_versions",
                        registry_path=tmp_path / "reg" / "registry.sqlite3")


@pytest.fixture()
def store(config: EngineConfig):
    s = SqliteStore(config.registry_path)
    yield s
    s.close()


@pytest.fixture()
def key_hex() -> str:
    return generate_key()


@pytest.fixture()
def vault(key_hex: str) -> Vault:
    return Vault.from_hex(key_hex)


@pytest.fixture()
def fleet() -> FakeFleet:
    return FakeFleet()
