"""`connect --copy-from-main` needs the main bundle on main: without it the connect is
refused while it is still validating — nothing stored, nothing deployed, nobody blocked —
naming `byod deploy head --target main`; after that command it copies."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.commands.workspace import Workspace
from engine.errors import SAFETY_EXIT_CODE, CopyFromMainError
from engine.lifecycle.connect import connect
from engine.lifecycle.main_bundle import MainNotReady
from engine.testing import InMemoryFleet

ROOT = Path(__file__).resolve().parents[3]
VERSIONS = ROOT / "schema_versions"
NOTE = {"userId": "carol", "title": "kept", "body": "text", "isPinned": False,
        "isArchived": False, "createdAt": 1.0, "updatedAt": 1.0}


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryFleet]:
    with InMemoryFleet(tmp_path / "fleet", versions=VERSIONS) as f:
        monkeypatch.setenv("BYOD_MAIN_URL", f.main.url)
        monkeypatch.setenv("BYOD_MAIN_ADMIN_KEY", f.main.key)
        yield f


def _connect(fleet: InMemoryFleet, url: str, key: str):  # type: ignore[no-untyped-def]
    return connect("carol", url, key, store=fleet.store, vault=fleet.vault,
                   config=fleet.config, connector=fleet, versions=fleet.graph,
                   copy_from_main=True)


def test_copy_is_refused_while_validating_without_the_main_bundle(fleet: InMemoryFleet
                                                                  ) -> None:
    fleet.main.deploy(fleet.bundle("head"))  # a user bundle on main
    dest = fleet.add_deployment("carol-dep")
    with pytest.raises(MainNotReady) as caught:
        _connect(fleet, dest.url, dest.key)
    assert caught.value.exit_code == SAFETY_EXIT_CODE
    assert "`byod deploy head --target main`" in str(caught.value)
    assert dest.key not in str(caught.value) and fleet.main.key not in str(caught.value)
    assert fleet.store.find_user("carol") is None  # nothing stored, nobody blocked
    assert dest.deploys == 0 and dest.history == []  # the user's deployment untouched

    fleet.deploy_main("head")
    fleet.main.insert("notes", NOTE)
    user = _connect(fleet, dest.url, dest.key)
    assert user.connection_status == "connected"
    assert [d["title"] for d in dest.docs("notes")] == ["kept"]


def test_cli_connect_copy_refusal_exit_code(fleet: InMemoryFleet, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Workspace, "connector", property(lambda _self: fleet))
    dest = fleet.add_deployment("carol-dep")
    (tmp_path / "byod.toml").write_text("")
    env = {"BYOD_ENCRYPTION_KEY": fleet.key_hex, "BYOD_VERSIONS_DIR": str(VERSIONS),
           "BYOD_CONFIG": str(tmp_path / "byod.toml"), "BYOD_AVAILABILITY": "everyone",
           "BYOD_MAIN_URL": fleet.main.url, "BYOD_MAIN_ADMIN_KEY": fleet.main.key,
           **fleet.registry.env()}
    result = CliRunner().invoke(
        cli, ["connect", "--user", "carol", "--url", dest.url, "--key-stdin",
              "--copy-from-main"], env=env, input=dest.key + "\n", catch_exceptions=False)
    assert result.exit_code == SAFETY_EXIT_CODE, result.output
    assert "byod deploy head --target main" in result.output
    assert dest.key not in result.output
    assert fleet.store.find_user("carol") is None


def test_main_on_another_version_is_refused_before_the_copy(fleet: InMemoryFleet) -> None:
    fleet.deploy_main(1)
    dest = fleet.add_deployment("carol-dep")
    head = fleet.version("head").id
    with pytest.raises(CopyFromMainError, match=rf"`byod deploy {head} --target main`"):
        _connect(fleet, dest.url, dest.key)
    assert "byod:importPage" not in dest.calls
    audit = [e.event for e in fleet.store.audit_log("carol")]
    assert "copy_from_main_started" not in audit
