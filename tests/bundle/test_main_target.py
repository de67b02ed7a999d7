"""The main deployment as a build/deploy target: `byod build --target main`, `byod deploy
--target main` (main from BYOD_MAIN_URL / BYOD_MAIN_ADMIN_KEY, or --url), and `byod check`
finding what a main bundle cannot hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from engine.bundle.compiler import MAIN_FUNCTIONS, compile_main, compile_version
from engine.cli.main import cli
from engine.commands import authoring
from engine.commands.workspace import Workspace
from engine.config import EngineConfig
from engine.testing import InMemoryFleet

VERSIONS = Path(__file__).resolve().parents[2] / "schema_versions"


def _invoke(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    return CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)


def test_build_target_main_writes_the_main_bundle(tmp_path: Path) -> None:
    result = _invoke("build", "head", "--target", "main", "--versions", str(VERSIONS),
                     "--out", str(tmp_path / "main"), "--json")
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.output)["bundles"]
    head = Workspace.open(EngineConfig(versions_dir=VERSIONS)).graph.resolve("head")
    expected = compile_main(head, EngineConfig(versions_dir=VERSIONS))
    assert entry["target"] == "main" and entry["fingerprint"] == expected.fingerprint
    manifest = json.loads((tmp_path / "main" / "byod-manifest.json").read_text())
    assert set(MAIN_FUNCTIONS) <= set(manifest["functions"])
    assert "byodImports" in manifest["tables"] and "users" in manifest["tables"]  # main-located
    assert (tmp_path / "main" / "convex" / "byodMain.ts").is_file()

    user = _invoke("build", "head", "--versions", str(VERSIONS), "--out", str(tmp_path / "u"))
    assert user.exit_code == 0, user.output
    assert not (tmp_path / "u" / "convex" / "byodMain.ts").exists()
    assert compile_version(head, EngineConfig()).fingerprint != expected.fingerprint


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryFleet]:
    with InMemoryFleet(tmp_path / "fleet", versions=VERSIONS) as f:
        monkeypatch.setattr(Workspace, "connector", property(lambda _self: f))
        yield f


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "byod.toml").write_text("")
    return {"BYOD_VERSIONS_DIR": str(VERSIONS), "BYOD_CONFIG": str(tmp_path / "byod.toml"),
            "BYOD_MAIN_URL": "", "BYOD_MAIN_ADMIN_KEY": "", **extra}


def test_deploy_target_main_from_the_environment(fleet: InMemoryFleet, tmp_path: Path) -> None:
    env = _env(tmp_path, BYOD_MAIN_URL=fleet.main.url, BYOD_MAIN_ADMIN_KEY=fleet.main.key)
    result = _invoke("deploy", "1", "--target", "main", env=env)
    assert result.exit_code == 0, result.output
    assert "deployed the main bundle of 0001_initial to main" in result.output
    assert fleet.main.key not in result.output and fleet.main.url not in result.output
    assert fleet.main.fingerprint == compile_main(fleet.version(1), fleet.config).fingerprint
    assert fleet.main.query("byodMain:getByIds", {"table": "byodVersions", "ids": []}) == []
    assert [r["version"] for r in fleet.main.recorded_versions] == ["0001_initial"]


def test_deploy_target_main_with_an_explicit_url(fleet: InMemoryFleet, tmp_path: Path) -> None:
    other = fleet.add_deployment("staging-main")
    result = _invoke("deploy", "--target", "main", "--url", other.url, "--key-stdin",
                     "--json", env=_env(tmp_path), stdin=other.key + "\n")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["target"] == "main" and data["deployment"] == "main"
    assert data["version"] == fleet.version("head").id
    assert other.query("byodMain:getByIds", {"table": "byodVersions", "ids": []}) == []


@pytest.mark.parametrize(("args", "code", "says"), [
    (("deploy", "--target", "main"), 1, "BYOD_MAIN_URL"),  # main not configured
    (("deploy", "--url", "https://x.convex.cloud", "--key-stdin"), 2, "VERSION"),
    (("deploy", "head"), 2, "--url"),
    (("deploy", "--target", "main", "--key-stdin"), 2, "--key-stdin goes with --url"),
])
def test_deploy_target_usage(fleet: InMemoryFleet, tmp_path: Path, args: tuple[str, ...],
                             code: int, says: str) -> None:
    result = _invoke(*args, env=_env(tmp_path), stdin="")
    assert result.exit_code == code, result.output
    assert says in result.output


def test_check_finds_a_table_the_main_bundle_cannot_hold(tmp_path: Path) -> None:
    """A main-located table named like main's receipts table only breaks the main bundle:
    `byod check` finds it, naming the version file."""

    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_initial.yaml").write_text(
        "description: one user table and a main table that clashes on main only\n"
        "parents: []\n"
        "tables:\n"
        "  notes:\n    location: user\n    fields:\n      title: string\n"
        "  byodImports:\n    location: main\n    fields:\n      receipt: string\n")
    result = authoring.check(Workspace.open(EngineConfig(versions_dir=versions)))
    [problem] = [p for p in result.problems if p.code == "compile-main"]
    assert problem.file.endswith("0001_initial.yaml") and problem.severity == "error"
    assert "byodImports" in problem.message and "main bundle of version" in problem.message
    assert problem.location == "tables.byodImports"

    (versions / "0001_initial.yaml").write_text(
        (versions / "0001_initial.yaml").read_text().replace("byodImports", "imports"))
    result = authoring.check(Workspace.open(EngineConfig(versions_dir=versions)))
    assert not [p for p in result.problems if p.severity == "error"]


def test_deep_check_covers_every_main_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """`check --deep` hands the toolchain each version's main bundle with its main schema
    (what the export is compared against), beside the user bundles."""

    from engine.bundle.compiler import deployed_schema
    from engine.check import deep
    from engine.schema.loader import load_versions

    seen: list[deep.CheckItem] = []
    monkeypatch.setattr(deep, "check_bundles", lambda items, toolchain=None: seen.extend(items)
                        or [])
    versions = load_versions(VERSIONS)
    assert deep.deep_check(versions, EngineConfig()) == []
    mains = [i for i in seen if i.target == "main"]
    assert [i.bundle.version_id for i in mains] == [v.id for v in versions]
    for item in mains:
        assert item.bundle.fingerprint == compile_main(
            next(v for v in versions if v.id == item.bundle.version_id), EngineConfig()
        ).fingerprint
        assert "byodImports" in deployed_schema(item.schema, item.target).tables
        assert item.label.endswith("(main)") and item.file.endswith(".yaml")
