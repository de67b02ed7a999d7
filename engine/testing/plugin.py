"""pytest fixtures for apps that use byod, registered by the ``byod`` pytest11 entry point
(installing byod-engine is enough; ``-p no:byod`` turns them off).

* ``byod_versions_dir``: the app's version files (default ``schema_versions/`` of the
  current directory; override the fixture in a ``conftest.py`` to point elsewhere).
* ``byod_registry``: a temporary SQLite registry and a fresh encryption key, with
  ``BYOD_REGISTRY`` and ``BYOD_ENCRYPTION_KEY`` set for the test (a ``TempRegistry``).
* ``byod_config``: the app's ``EngineConfig`` (``byod.toml`` if present) on that registry
  and those versions.
* ``byod_fleet``: an ``InMemoryFleet`` on that registry and those versions, usable as the
  ``connector`` of every engine flow.
* ``byod_connected_user``: a factory, ``byod_connected_user("alice", version="0002")``,
  returning a ``ConnectedUser`` connected on ``byod_fleet`` at that version (default: the
  head) with that version's bundle deployed.
* ``byod_local_fleet``: real local Convex-compatible deployments
  (``engine.local.launcher.LocalFleet``), started once per session; skipped when Node.js
  or the pinned npm toolchain is missing. ``byod_local_deployments`` in the pytest ini
  sets how many (default 2).

Importing this module imports nothing of the engine: every fixture imports what it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from engine.config import EngineConfig
    from engine.local.launcher import LocalFleet
    from engine.testing.fleet import ConnectedUser, InMemoryFleet, TempRegistry

__all__ = [
    "byod_config",
    "byod_connected_user",
    "byod_fleet",
    "byod_local_fleet",
    "byod_registry",
    "byod_versions_dir",
    "pytest_addoption",
]

LOCAL_DEPLOYMENTS_INI = "byod_local_deployments"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(LOCAL_DEPLOYMENTS_INI,
                  "how many local deployments the byod_local_fleet fixture starts",
                  default="2")


@pytest.fixture
def byod_versions_dir() -> Path:
    """The app's version files: ``schema_versions/`` of the current directory."""

    return Path.cwd() / "schema_versions"


@pytest.fixture
def byod_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TempRegistry]:
    """A temporary registry and key; ``BYOD_REGISTRY`` / ``BYOD_ENCRYPTION_KEY`` point at
    them for the test (and ``BYOD_ENCRYPTION_KEYS_OLD`` is cleared)."""

    from engine.testing.fleet import TempRegistry
    from engine.vault import ENV_OLD_KEYS

    registry = TempRegistry.create(tmp_path / "byod-registry")
    for name, value in registry.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(ENV_OLD_KEYS, raising=False)
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture
def byod_config(byod_registry: TempRegistry, byod_versions_dir: Path) -> EngineConfig:
    """The app's config (``byod.toml`` when present), on the test's registry and
    ``byod_versions_dir``."""

    from engine.config import load_config

    return load_config().model_copy(update={"versions_dir": Path(byod_versions_dir),
                                            "registry_path": byod_registry.path})


@pytest.fixture
def byod_fleet(byod_registry: TempRegistry, byod_config: EngineConfig) -> Iterator[InMemoryFleet]:
    """An in-memory fleet on the test's registry, knowing the app's versions (when
    ``byod_versions_dir`` exists)."""

    from engine.testing.fleet import InMemoryFleet

    versions = byod_config.versions_dir if Path(byod_config.versions_dir).is_dir() else None
    fleet = InMemoryFleet(registry=byod_registry, versions=versions, config=byod_config)
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def byod_connected_user(byod_fleet: InMemoryFleet) -> Callable[..., ConnectedUser]:
    """``byod_connected_user(user_id, version=None, *, status="connected", tables=None)``:
    the user connected on ``byod_fleet`` at ``version`` (id, number or ``head``; None: the
    head), that version's bundle deployed and recorded."""

    def connect(user_id: str, version: str | int | None = None, **options: Any) -> ConnectedUser:
        return byod_fleet.connect_user(user_id, version, **options)

    return connect


def _local_fleet_unavailable() -> str | None:
    """Why local deployments cannot start here (None: they can)."""

    import shutil

    from engine.errors import ByodError

    if shutil.which("node") is None:
        return ("byod_local_fleet needs Node.js: node is not on PATH (install Node.js 18 or "
                "newer and npm, then run `byod toolchain install`)")
    try:
        from engine.convex.toolchain import Toolchain, node_executable

        node_executable()
        toolchain = Toolchain.find()
    except ByodError as exc:
        return f"byod_local_fleet needs the pinned npm toolchain: {exc}"
    if not toolchain.is_installed() or not (
            toolchain.node_modules / "convex-test" / "package.json").is_file():
        return (f"byod_local_fleet needs the pinned npm toolchain, which is not installed in "
                f"{toolchain.root}: run `byod toolchain install`")
    return None


@pytest.fixture(scope="session")
def byod_local_fleet(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """Local Convex-compatible deployments for the whole session (stopped at its end);
    connect them with ``allow_insecure_local`` (they listen on http://127.0.0.1)."""

    reason = _local_fleet_unavailable()
    if reason is not None:
        pytest.skip(reason)
    from engine.local.launcher import LocalFleet

    count = int(request.config.getini(LOCAL_DEPLOYMENTS_INI) or 2)
    fleet = LocalFleet.start(count, tmp_path_factory.mktemp("byod-local-fleet"), timeout=120)
    try:
        yield fleet
    finally:
        fleet.stop()
