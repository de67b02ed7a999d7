"""Shared fixtures: the repository root and the shipped schema versions."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def versions_dir(repo_root: Path) -> Path:
    return repo_root / "schema_versions"
