"""A bundle compiled by the engine deploys to a local deployment with the real CLI and
its engine functions answer."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from engine.local import LocalFleet

from .conftest import CLI_TIMEOUT_S, TOOLCHAIN, needs_toolchain

pytestmark = [pytest.mark.local, pytest.mark.toolchain, needs_toolchain, pytest.mark.timeout(300)]


def test_compiled_bundle_deploys_and_answers(tmp_path: Path, versions_dir: Path, fleet: LocalFleet) -> None:
    compiler = pytest.importorskip("engine.bundle.compiler")
    bundle_io = pytest.importorskip("engine.bundle.write")
    from engine.config import EngineConfig
    from engine.schema.loader import load_versions

    assert TOOLCHAIN is not None
    config = EngineConfig()
    first = load_versions(versions_dir, config)[0]
    bundle = compiler.compile_version(first, config)
    out = bundle_io.write_bundle(bundle, tmp_path / "bundle")
    (out / "node_modules").symlink_to(TOOLCHAIN / "node_modules", target_is_directory=True)
    dep = fleet.deployments[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEX_")}
    env.update({"CI": "1", "CONVEX_SELF_HOSTED_URL": dep.url, "CONVEX_SELF_HOSTED_ADMIN_KEY": dep.admin_key})
    result = subprocess.run(
        [str(TOOLCHAIN / "node_modules" / ".bin" / "convex"), "deploy", "--typecheck=disable"],
        cwd=out, env=env, check=False, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer = httpx.post(f"{dep.url}/api/query", json={"path": "byod:version", "args": {}, "format": "json"},
                        headers={"Authorization": f"Convex {dep.admin_key}"}).json()
    assert answer["status"] == "success", answer
    assert answer["value"]["version"] == bundle.version_id
    assert answer["value"]["fingerprint"] == bundle.fingerprint
    tables = {t["tableName"] for t in fleet.state(dep.name)["schema"]["tables"]}
    assert set(bundle.tables) <= tables
