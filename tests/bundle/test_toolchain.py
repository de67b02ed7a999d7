"""Toolchain lookup and install decisions, with a fake npm project (no network)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from engine import assets
from engine.convex.toolchain import Toolchain
from engine.errors import ConfigError, ToolchainError


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


def _packaged_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pretend the engine is installed from a wheel whose manifest is ``tmp_path/pkg``."""

    manifest = tmp_path / "pkg" / "toolchain"
    manifest.mkdir(parents=True)
    (manifest / "package.json").write_text('{"name": "t"}')
    (manifest / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": {}}')
    monkeypatch.setattr(assets, "toolchain_manifest_dir", lambda: manifest)
    monkeypatch.setattr(assets, "is_packaged", lambda path: path == manifest)
    return manifest


def test_packaged_manifest_installs_into_the_user_cache(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _packaged_manifest(tmp_path, monkeypatch)
    manifest.chmod(0o555)  # an installed package may be read-only
    try:
        tc = Toolchain.find({"XDG_CACHE_HOME": str(tmp_path / "cache")})
    finally:
        manifest.chmod(0o755)
    digest = hashlib.sha256((manifest / "package-lock.json").read_bytes()).hexdigest()[:16]
    assert tc.root == (tmp_path / "cache" / "byod" / "toolchain" / digest).resolve()
    for name in ("package.json", "package-lock.json"):
        assert (tc.root / name).read_bytes() == (manifest / name).read_bytes()
    assert tc.node_modules.parent == tc.root  # npm ci writes beside the copies
    again = Toolchain.find({"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert again.root == tc.root and not list(tc.root.glob(".*.tmp"))


def test_user_cache_defaults_to_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _packaged_manifest(tmp_path, monkeypatch)
    tc = Toolchain.find({"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": "relative"})
    assert tc.root.parent == (tmp_path / "home" / ".cache" / "byod" / "toolchain").resolve()


def test_toolchain_dir_setting_wins_over_the_packaged_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _packaged_manifest(tmp_path, monkeypatch)
    own = _project(tmp_path / "own", None, {"convex": "1.48.0"})
    tc = Toolchain.find({"BYOD_TOOLCHAIN_DIR": str(own.root),
                         "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert tc.root == own.root and not (tmp_path / "cache").exists()


def test_unwritable_cache_is_a_clear_error(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _packaged_manifest(tmp_path, monkeypatch)
    (tmp_path / "file").write_text("")
    with pytest.raises(ToolchainError, match="BYOD_TOOLCHAIN_DIR"):
        Toolchain.find({"XDG_CACHE_HOME": str(tmp_path / "file")})


def test_missing_assets_are_a_clear_error(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "_packaged_root", lambda: None)
    monkeypatch.setattr(assets, "_checkout_root", lambda: tmp_path)
    with pytest.raises(ConfigError, match="templates"):
        assets.templates_dir()
    with pytest.raises(ToolchainError, match="npm toolchain manifest"):
        Toolchain.find({})


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
