"""`byod build` and `byod toolchain` through click (no subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from engine.cli.main import cli
from engine.schema.loader import load_versions

VERSIONS_DIR = Path(__file__).resolve().parents[2] / "schema_versions"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_build_all_twice_gives_identical_trees(tmp_path: Path) -> None:
    for run in ("one", "two"):
        result = _invoke(
            "build",
            "--all",
            "--versions",
            str(VERSIONS_DIR),
            "--out",
            str(tmp_path / run),
            "--archive",
            "zip",
        )
        assert result.exit_code == 0, result.output
    one, two = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    assert one == two
    ids = [v.id for v in load_versions(VERSIONS_DIR)]
    assert sorted({p.split("/")[0] for p in one}) == sorted([*ids, *(f"{i}.zip" for i in ids)])
    assert all(f"{i}/convex/schema.ts" in one for i in ids)


def test_build_head_by_number_and_json(tmp_path: Path) -> None:
    versions = load_versions(VERSIONS_DIR)
    result = _invoke(
        "build",
        "1",
        "--versions",
        str(VERSIONS_DIR),
        "--out",
        str(tmp_path / "b"),
        "--archive",
        "tar.gz",
        "--json",
    )
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)["bundles"]
    assert entry["version"] == versions[0].id and entry["kind"] == "version"
    assert Path(entry["archive"]).name == "b.tar.gz" and Path(entry["archive"]).is_file()
    manifest = json.loads((tmp_path / "b" / "byod-manifest.json").read_text())
    assert manifest["fingerprint"] == entry["fingerprint"]
    head = _invoke(
        "build", "head", "--versions", str(VERSIONS_DIR), "--out", str(tmp_path / "h"), "--json"
    )
    assert head.exit_code == 0, head.output


def test_unknown_version_is_a_clean_error(tmp_path: Path) -> None:
    result = _invoke("build", "nope", "--versions", str(VERSIONS_DIR), "--out", str(tmp_path / "x"))
    assert result.exit_code == 1
    assert "unknown version 'nope'" in result.output
    assert "Traceback" not in result.output


def test_version_or_all_is_required(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "exactly one of VERSION or --all" in result.output


def test_refuses_to_overwrite_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    result = _invoke("build", "head", "--versions", str(VERSIONS_DIR), "--out", str(tmp_path))
    assert result.exit_code == 1 and "not empty" in result.output


def test_toolchain_path_json(tmp_path: Path, monkeypatch) -> None:
    result = _invoke("toolchain", "path", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["node_modules"].endswith("node_modules")
    assert info["convex_bin"].endswith("/.bin/convex")
    monkeypatch.setenv("BYOD_TOOLCHAIN_DIR", str(tmp_path))
    missing = _invoke("toolchain", "path")
    assert missing.exit_code == 1 and "package.json" in missing.output
