"""Toolchain lookup and install decisions, with a fake npm project (no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.convex.toolchain import Toolchain
from engine.errors import ToolchainError


def _project(root: Path, installed: dict[str, str] | None, locked: dict[str, str]) -> Toolchain:
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps({"name": "t", "dependencies": locked}))
    packages = {"": {"name": "t"}}
    packages.update({f"node_modules/{n}": {"version": v} for n, v in locked.items()})
    packages["node_modules/@esbuild/other-os"] = {"version": "1.0.0", "optional": True}
    (root / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 3, "packages": packages})
    )
    for name, version in (installed or {}).items():
        pkg = root / "node_modules" / name
        pkg.mkdir(parents=True)
        (pkg / "package.json").write_text(json.dumps({"name": name, "version": version}))
    return Toolchain.find({"BYOD_TOOLCHAIN_DIR": str(root)})


def test_find_requires_package_and_lock(tmp_path: Path) -> None:
    with pytest.raises(ToolchainError, match="package.json"):
        Toolchain.find({"BYOD_TOOLCHAIN_DIR": str(tmp_path)})
    (tmp_path / "package.json").write_text("{}")
    with pytest.raises(ToolchainError, match="package-lock.json"):
        Toolchain.find({"BYOD_TOOLCHAIN_DIR": str(tmp_path)})


def test_default_is_the_repository_toolchain() -> None:
    tc = Toolchain.find({})
    assert tc.root.name == "toolchain" and (tc.root / "package-lock.json").is_file()


def test_install_state_follows_the_lock(tmp_path: Path) -> None:
    absent = _project(tmp_path / "a", None, {"convex": "1.48.0"})
    assert not absent.is_installed()
    matching = _project(tmp_path / "b", {"convex": "1.48.0"}, {"convex": "1.48.0"})
    assert matching.is_installed()  # adopted: versions match, optional other-OS package absent
    stale = _project(tmp_path / "c", {"convex": "1.47.0"}, {"convex": "1.48.0"})
    assert not stale.is_installed()


def test_stamp_decides_once_written(tmp_path: Path) -> None:
    tc = _project(tmp_path / "p", {"convex": "1.48.0"}, {"convex": "1.48.0"})
    (tc.node_modules / ".byod-lock-sha256").write_text(tc.lock_sha256 + "\n")
    assert tc.is_installed()
    lock = json.loads((tc.root / "package-lock.json").read_text())
    lock["packages"]["node_modules/convex"]["version"] = "1.49.0"
    (tc.root / "package-lock.json").write_text(json.dumps(lock))
    assert not tc.is_installed()  # the lock changed since the stamp


def test_ensure_installed_skips_npm_when_current(tmp_path: Path, monkeypatch) -> None:
    tc = _project(tmp_path / "p", {"convex": "1.48.0"}, {"convex": "1.48.0"})
    monkeypatch.setattr(Toolchain, "_npm_ci", lambda self: pytest.fail("npm ci ran"))
    if not _has_node():
        pytest.skip("node is not installed")
    tc.ensure_installed()
    assert (tc.node_modules / ".byod-lock-sha256").read_text().strip() == tc.lock_sha256


def test_ensure_installed_runs_npm_when_missing(tmp_path: Path, monkeypatch) -> None:
    if not _has_node():
        pytest.skip("node is not installed")
    tc = _project(tmp_path / "p", None, {"convex": "1.48.0"})
    calls = []

    def fake_ci(self: Toolchain) -> None:
        calls.append(self.root)
        (self.node_modules).mkdir()

    monkeypatch.setattr(Toolchain, "_npm_ci", fake_ci)
    tc.ensure_installed()
    assert calls == [tc.root] and tc.is_installed()
    tc.ensure_installed()
    assert len(calls) == 1  # the stamp now matches


def test_missing_node_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    tc = _project(tmp_path / "p", None, {"convex": "1.48.0"})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolchainError, match="node is not installed"):
        tc.ensure_installed()


def test_bin_lookup(tmp_path: Path) -> None:
    tc = _project(tmp_path / "p", {"convex": "1.48.0"}, {"convex": "1.48.0"})
    with pytest.raises(ToolchainError, match="byod toolchain install"):
        tc.bin("convex")
    (tc.node_modules / ".bin").mkdir()
    (tc.node_modules / ".bin" / "convex").write_text("")
    assert tc.convex_bin == tc.node_modules / ".bin" / "convex"


def test_link_node_modules(tmp_path: Path) -> None:
    tc = _project(tmp_path / "p", {"convex": "1.48.0"}, {"convex": "1.48.0"})
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    link = tc.link_node_modules(bundle)
    assert link.is_symlink() and link.resolve() == tc.node_modules.resolve()
    assert tc.link_node_modules(bundle) == link  # idempotent


def _has_node() -> bool:
    import shutil

    return shutil.which("node") is not None and bool(os.environ.get("PATH"))
