"""Shared setup for the health/disconnect/demo tests on real local deployments: a fleet,
a registry, a vault, a main deployment, users connected at a version and seeded."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.config import EngineConfig
from engine.plan.graph import VersionGraph
from engine.ports.deployment import DeploymentTarget
from engine.registry.sqlite import SqliteStore
from engine.schema.loader import load_versions
from engine.vault import Vault, generate_key

ROOT = Path(__file__).resolve().parent.parent


def have_toolchain() -> bool:
    try:
        from engine.convex.toolchain import Toolchain

        root = Toolchain.find().root
    except Exception:  # noqa: BLE001 - any failure to find it means: skip
        return False
    return shutil.which("node") is not None and (root / "node_modules" / ".bin" / "convex").exists()


needs_toolchain = pytest.mark.skipif(not have_toolchain(), reason="npm toolchain not installed")


@dataclass
class Env:
    fleet: Any
    store: SqliteStore
    vault: Vault
    config: EngineConfig
    graph: VersionGraph
    main: DeploymentTarget
    users: dict[str, Any]  # user id -> LocalDeployment
    key_hex: str  # the vault's key, for tests that drive the CLI through the environment


def start(tmp: Path, users: int, *, with_main: bool = True) -> Env:
    from engine.local.launcher import LocalFleet

    config = EngineConfig(registry_path=tmp / "registry.sqlite3",
                          versions_dir=ROOT / "schema_versions", http_timeout_s=10.0)
    graph = VersionGraph(load_versions(config.versions_dir, config))
    fleet = LocalFleet.start(users + (1 if with_main else 0), tmp / "fleet", timeout=120)
    deps = list(fleet.deployments)
    main_dep = deps.pop(0) if with_main else None
    main = DeploymentTarget("main", main_dep.url, main_dep.admin_key, True) if main_dep else None
    key_hex = generate_key()
    return Env(fleet=fleet, store=SqliteStore(config.registry_path),
               vault=Vault.from_hex(key_hex), config=config, graph=graph,
               main=main,  # type: ignore[arg-type]
               users={f"u{i + 1}": d for i, d in enumerate(deps)}, key_hex=key_hex)


def connect_all(env: Env, version: str, seed: bool = False) -> dict[str, dict[str, int]]:
    from engine.convex.http import ConvexHttpClient
    from engine.demo.seed import seed_user
    from engine.lifecycle.connect import connect

    v = env.graph.resolve(version)
    seeded = {}
    for uid, dep in env.users.items():
        connect(uid, dep.url, dep.admin_key, store=env.store, vault=env.vault,
                config=env.config, versions=[v], allow_insecure_local=True)
        if seed:
            with ConvexHttpClient(env.vault.target_for(env.store.get_user(uid))) as client:
                seeded[uid] = seed_user(client, uid)
    return seeded
