"""Shared fixtures: the repository root and the shipped schema versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pg_fixture import pg_database, pg_server, pg_url  # noqa: F401  (shared fixtures)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def versions_dir(repo_root: Path) -> Path:
    return repo_root / "schema_versions"


@pytest.fixture(scope="session")
def toolchain():
    """The pinned npm toolchain, installed once per session. Skips only when Node.js is
    absent (CI has it, so the toolchain tests run there)."""

    import shutil

    if shutil.which("node") is None:
        pytest.skip("node is not installed: tests marked `toolchain` need Node.js and npm")
    from engine.convex.toolchain import Toolchain

    return Toolchain.find().ensure_installed()
