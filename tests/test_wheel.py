"""A wheel built from the repository works on its own: installed into a fresh virtualenv
outside the checkout, its ``byod`` checks, builds, plans and deploys a project that has
only its own ``schema_versions/``, and the engine finds its templates, toolchain manifest
and example versions inside the installed package (``engine.assets``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.errors import LocalFleetError
from engine.local import LocalFleet
from engine.registry.ddl import SCHEMA_VERSION

pytestmark = [pytest.mark.slow, pytest.mark.toolchain, pytest.mark.timeout(1500)]

BUILD_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 600
CLI_TIMEOUT_S = 180
VERSIONS = ("0001_initial.yaml", "0002_tags.yaml")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    project: Path  # a project directory with only its own schema_versions/
    elsewhere: Path  # an empty directory: no schema_versions/ of its own
    cache: Path  # XDG_CACHE_HOME for the installed engine

    @property
    def byod(self) -> Path:
        return self.venv / "bin" / "byod"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _run(argv: list[Any], *, timeout: float, **options: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                            timeout=timeout, check=False, **options)
    assert result.returncode == 0, (
        f"{' '.join(str(a) for a in argv)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    )
    return result


def _clean_env(cache: Path, **extra: str) -> dict[str, str]:
    """The environment without this checkout's virtualenv or engine settings."""

    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
           and not k.startswith(("BYOD_", "CONVEX_"))}
    env["XDG_CACHE_HOME"] = str(cache)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, repo_root: Path,
              versions_dir: Path) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(repo_root)
    dist = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", repo_root, "--no-deps", "--quiet",
          "--disable-pip-version-check", "-w", dist], timeout=BUILD_TIMEOUT_S)
    (wheel,) = dist.glob("byod_engine-*.whl")

    venv = base / "venv"
    _run([sys.executable, "-m", "venv", venv], timeout=120)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet",
          "--disable-pip-version-check", wheel], timeout=INSTALL_TIMEOUT_S,
         env=_clean_env(base / "cache"), cwd=base)

    project = base / "project"
    (project / "schema_versions").mkdir(parents=True)
    for name in VERSIONS:
        shutil.copy(versions_dir / name, project / "schema_versions" / name)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return Installed(wheel=wheel, venv=venv, project=project, elsewhere=elsewhere,
                     cache=base / "cache")


def test_wheel_carries_the_package_data_and_the_assets(installed: Installed,
                                                       repo_root: Path) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert "engine/py.typed" in names
    for rel in ("js", "local/harness"):
        shipped = {p.name for p in (repo_root / "engine" / rel).glob("*.mjs")}
        assert shipped and {f"engine/{rel}/{n}" for n in shipped} <= names
    for path in (repo_root / "templates").rglob("*"):
        if path.is_file():
            assert f"engine/_assets/{path.relative_to(repo_root).as_posix()}" in names
    for path in (repo_root / "schema_versions").glob("*"):
        assert f"engine/_assets/schema_versions/{path.name}" in names
    toolchain = {n for n in names if n.startswith("engine/_assets/toolchain/")}
    assert toolchain == {"engine/_assets/toolchain/package.json",
                         "engine/_assets/toolchain/package-lock.json"}
    assert not any("node_modules" in n or "__pycache__" in n for n in names)
    # the registry's Alembic environment: read from the installed package at run time
    migrations = repo_root / "engine" / "registry" / "migrations"
    shipped_scripts = {f"engine/{p.relative_to(repo_root / 'engine').as_posix()}"
                       for p in migrations.rglob("*.py")}
    assert len(shipped_scripts) >= 9 and shipped_scripts <= names


PROBE = """
import json, os, sysconfig, tempfile
import engine
from engine.registry import migrations
from engine.registry.sqlite import SqliteStore
from engine import assets
from engine.config import EngineConfig
from engine.convex.toolchain import Toolchain
from engine.demo.run import default_versions_dir
with tempfile.TemporaryDirectory() as scratch:  # a new registry: the packaged revisions
    with SqliteStore(os.path.join(scratch, "registry.sqlite3")) as store:
        registry_schema = store.schema_version()
print(json.dumps({
    "engine": engine.__file__,
    "site_packages": sysconfig.get_paths()["purelib"],
    "templates": str(assets.templates_dir()),
    "manifest": str(assets.toolchain_manifest_dir()),
    "examples": str(assets.example_versions_dir()),
    "demo_versions": str(default_versions_dir(EngineConfig())),
    "toolchain_root": str(Toolchain.find().root),
    "migrations": str(migrations.DIRECTORY),
    "registry_schema": registry_schema,
}))
"""


def test_installed_engine_finds_its_packaged_assets(installed: Installed,
                                                    repo_root: Path) -> None:
    out = _run([installed.python, "-c", PROBE], timeout=CLI_TIMEOUT_S,
               cwd=installed.elsewhere, env=_clean_env(installed.cache))
    found = json.loads(out.stdout)
    site = Path(found["site_packages"]).resolve()
    engine_dir = Path(found["engine"]).resolve().parent
    assert not engine_dir.is_relative_to(repo_root)
    assert engine_dir == site / "engine"

    packaged = engine_dir / "_assets"
    assert Path(found["templates"]) == packaged / "templates"
    assert (packaged / "templates" / "bundle" / "schema.ts.j2").is_file()
    manifest = Path(found["manifest"])
    assert manifest == packaged / "toolchain" and manifest.resolve().is_relative_to(site)
    lock = (manifest / "package-lock.json").read_bytes()
    assert lock == (repo_root / "toolchain" / "package-lock.json").read_bytes()
    assert Path(found["examples"]) == packaged / "schema_versions"
    assert Path(found["demo_versions"]) == packaged / "schema_versions"
    assert Path(found["migrations"]) == engine_dir / "registry" / "migrations"
    assert found["registry_schema"] == SCHEMA_VERSION

    # Without BYOD_TOOLCHAIN_DIR the installed engine installs into a per-user cache
    # directory named by the lock, seeded with the packaged manifest (site-packages may be
    # read-only).
    root = Path(found["toolchain_root"])
    digest = hashlib.sha256(lock).hexdigest()[:16]
    assert root == (installed.cache / "byod" / "toolchain" / digest).resolve()
    assert (root / "package-lock.json").read_bytes() == lock
    assert (root / "package.json").read_bytes() == (manifest / "package.json").read_bytes()


def test_installed_cli_checks_builds_and_plans(installed: Installed, toolchain: Any,
                                               tmp_path: Path) -> None:
    env = _clean_env(installed.cache, BYOD_TOOLCHAIN_DIR=str(toolchain.root))
    run = dict(timeout=CLI_TIMEOUT_S, cwd=installed.project, env=env)

    check = json.loads(_run([installed.byod, "check", "--deep", "--json"], **run).stdout)
    assert check["ok"] and check["versions"] == ["0001_initial", "0002_tags"] and check["errors"] == 0, check

    out = tmp_path / "bundle"
    built = json.loads(_run([installed.byod, "build", "head", "--out", out, "--json"],
                            **run).stdout)
    assert [b["version"] for b in built["bundles"]] == ["0002_tags"]
    assert "defineSchema" in (out / "convex" / "schema.ts").read_text()

    plan = json.loads(_run([installed.byod, "plan", "--from", "1", "--to", "head", "--json"],
                           **run).stdout)
    assert (plan["source"], plan["target"]) == ("0001_initial", "0002_tags")
    assert plan["path"] == ["0001_initial", "0002_tags"]


def test_installed_cli_deploys_to_a_local_deployment(installed: Installed, toolchain: Any,
                                                     tmp_path: Path) -> None:
    env = _clean_env(installed.cache, BYOD_TOOLCHAIN_DIR=str(toolchain.root))
    run = dict(timeout=CLI_TIMEOUT_S, cwd=installed.project, env=env)
    fleet_dir = tmp_path / "fleet"
    try:
        up = json.loads(_run([installed.byod, "local", "up", "--count", "1", "--dir", fleet_dir,
                              "--json"], **run).stdout)
        url = up["deployments"][0]["url"]
        key = json.loads((fleet_dir / "secrets.json").read_text())["deployments"][0]["admin_key"]

        deployed = _run([installed.byod, "deploy", "head", "--url", url,
                         "--allow-insecure-local", "--key-stdin", "--json"],
                        input=key + "\n", **run)
        summary = json.loads(deployed.stdout)
        assert key not in deployed.stdout + deployed.stderr
        assert summary["version"] == "0002_tags"
        assert summary["verified"] is True and summary["recorded"] is True
        _run([installed.byod, "local", "down", "--dir", fleet_dir], **run)
    finally:
        try:  # stop whatever a failed step left running
            LocalFleet.attach(fleet_dir).stop()
        except LocalFleetError:
            pass
