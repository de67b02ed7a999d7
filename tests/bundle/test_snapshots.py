"""Every file of every bundle of every shipped version, snapshotted (syrupy).

A change here is a change to what deploys to every user's deployment: review the diff,
then update with ``pytest tests/bundle --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.bundle.compiler import compile_version
from engine.config import EngineConfig
from engine.schema.loader import load_versions

VERSIONS_DIR = Path(__file__).resolve().parents[2] / "schema_versions"
VERSIONS = load_versions(VERSIONS_DIR)


def test_there_are_versions_to_snapshot() -> None:
    assert len(VERSIONS) >= 3


@pytest.mark.parametrize("schema_version", VERSIONS, ids=[v.id for v in VERSIONS])
def test_bundle_snapshot(schema_version, snapshot) -> None:
    bundle = compile_version(schema_version, EngineConfig())
    assert bundle.files == snapshot
    assert compile_version(schema_version, EngineConfig()).files == bundle.files
