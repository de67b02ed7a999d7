"""The ``convex-main`` registry backend for the store tests: the registry kept on a local
main deployment (``engine/local``: the real pushed bundle, run by the Convex test runtime).

One local fleet per session; each test gets its own fresh deployment with the main bundle
(the push is captured once and replayed, ~0.4 s), so tests never see each other's rows
and no reset function has to exist on main. ``BYOD_MAIN_URL`` / ``BYOD_MAIN_ADMIN_KEY``
point at the test's deployment, as an operator's settings would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from local_ops import have_toolchain

LOCATION = "convex:main"
ROOT = Path(__file__).resolve().parents[3]


MARKS = (pytest.mark.local, pytest.mark.toolchain,
         pytest.mark.skipif(not have_toolchain(), reason="npm toolchain not installed"))


@dataclass
class MainFleet:
    """A session's local fleet and the connector that deploys and calls main bundles."""

    fleet: Any
    connector: Any
    version: Any
    config: Any
    targets: list[Any] = field(default_factory=list)

    def fresh(self) -> Any:
        """A new deployment with the main bundle on it (its target)."""

        from engine.demo.run import deploy_main
        from engine.ports.deployment import DeploymentTarget

        [dep] = self.fleet.add(1)
        target = DeploymentTarget("main", dep.url, dep.admin_key, True)
        deploy_main(target, self.version, self.config, connector=self.connector)
        self.targets.append(target)
        return target


_CURRENT: list[MainFleet] = []


def main_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainFleet]:
    """The session fixture's body (see ``tests/registry/conftest.py``)."""

    from engine.config import EngineConfig
    from engine.convex.connector import HttpConnector
    from engine.local.launcher import LocalFleet
    from engine.schema.loader import load_versions

    base = tmp_path_factory.mktemp("convex-main")
    config = EngineConfig(registry_path=base / "unused.sqlite3",
                          versions_dir=ROOT / "schema_versions", http_timeout_s=30.0)
    version = load_versions(config.versions_dir, config)[-1]
    connector = HttpConnector(config, kind="push")
    with LocalFleet.start(0, base / "fleet", timeout=120) as fleet:
        state = MainFleet(fleet=fleet, connector=connector, version=version, config=config)
        _CURRENT.append(state)
        try:
            yield state
        finally:
            _CURRENT.remove(state)
            connector.close()


def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh registry on a fresh main deployment; the environment names it."""

    state: MainFleet = request.getfixturevalue("convex_main_fleet")
    target = state.fresh()
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("BYOD_MAIN_URL", target.url)
    monkeypatch.setenv("BYOD_MAIN_ADMIN_KEY", target.admin_key)
    return LOCATION


def open_store(clock: Callable[[], float] | None = None) -> Any:
    """The registry on the main deployment the environment names, with ``clock``."""

    from engine.registry.convex_main import open_convex_main

    if not _CURRENT:
        raise RuntimeError("the convex-main backend needs the convex_main_fleet fixture")
    return open_convex_main(LOCATION, _CURRENT[-1].connector, clock=clock or time.time)
