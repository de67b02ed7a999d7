"""`disconnect --data migrate` needs the main bundle on main: without it the disconnect is
refused before the user is blocked or anything is written, naming the command that fixes it
(`byod deploy VERSION --target main`), and works once that command ran — through the API
and through the CLI alone, over in-memory deployments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.commands.workspace import Workspace
from engine.errors import SAFETY_EXIT_CODE
from engine.lifecycle.disconnect import disconnect
from engine.lifecycle.main_bundle import MainNotReady
from engine.lifecycle.progress import DISCONNECT
from engine.testing import InMemoryFleet

ROOT = Path(__file__).resolve().parents[3]
VERSIONS = ROOT / "schema_versions"


def _note(i: int, text_field: str = "content") -> dict[str, Any]:
    """A note of version 1 (``content``) or of the head (``body``)."""

    return {"userId": "alice", "title": f"note {i}", text_field: "text", "isPinned": False,
            "isArchived": False, "createdAt": 1.0 + i, "updatedAt": 1.0 + i}


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryFleet]:
    with InMemoryFleet(tmp_path / "fleet", versions=VERSIONS) as f:
        monkeypatch.setenv("BYOD_MAIN_URL", f.main.url)
        monkeypatch.setenv("BYOD_MAIN_ADMIN_KEY", f.main.key)
        f.connect_user("alice", 1)
        for i in range(3):
            f.users["alice"].insert("notes", _note(i))
        yield f


def _snapshot(fleet: InMemoryFleet) -> dict[str, Any]:
    """Everything a refused disconnect must leave as it was."""

    user = fleet.store.get_user("alice")
    return {"status": user.connection_status, "error": user.connection_error,
            "progress": fleet.store.load_progress(DISCONNECT, "alice"),
            "audit": [(e.event, e.detail) for e in fleet.store.audit_log("alice")],
            "lease": fleet.store.current_lease("alice"),
            "main_docs": fleet.main.docs("notes"), "main_writes": fleet.main.mutations,
            "user_writes": fleet.users["alice"].mutations}


def _migrate(fleet: InMemoryFleet) -> Any:
    return disconnect("alice", "migrate", store=fleet.store, vault=fleet.vault,
                      config=fleet.config, graph=fleet.graph, connector=fleet)


@pytest.mark.parametrize("on_main", ["user bundle", "nothing"])
def test_migrate_is_refused_early_without_the_main_bundle(fleet: InMemoryFleet,
                                                         on_main: str) -> None:
    if on_main == "user bundle":  # what `byod deploy 1 --url <main>` used to leave there
        fleet.main.deploy(fleet.bundle(1))
    before = _snapshot(fleet)
    with pytest.raises(MainNotReady) as caught:
        _migrate(fleet)
    assert caught.value.exit_code == SAFETY_EXIT_CODE
    message = str(caught.value)
    assert "`byod deploy 0001_initial --target main`" in message
    assert "nothing was changed" in message and "alice" in message
    assert fleet.main.key not in message and fleet.main.url not in message
    assert _snapshot(fleet) == before  # not blocked, no progress, no audit, no lease
    assert fleet.store.get_user("alice").connection_status == "connected"
    assert not [c for c in fleet.users["alice"].calls if c.startswith("byod:export")]

    fleet.deploy_main(1)  # the fix the message names
    report = _migrate(fleet)
    assert report.verified and report.status == "disconnected"
    assert sorted(d["title"] for d in fleet.main.docs("notes")) == \
        ["note 0", "note 1", "note 2"]


def test_migrate_with_main_on_another_version_names_the_deploy(fleet: InMemoryFleet) -> None:
    fleet.deploy_main(2)
    before = _snapshot(fleet)
    with pytest.raises(Exception, match=r"byod deploy 0001_initial --target main"):
        _migrate(fleet)
    assert _snapshot(fleet) == before


def test_cli_migrate_after_deploy_target_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              ) -> None:
    """From the CLI alone: refused (exit 3, the command named, the user untouched), then
    `byod deploy --target main`, then the same disconnect succeeds."""

    with InMemoryFleet(tmp_path / "fleet", versions=VERSIONS) as fleet:
        monkeypatch.setattr(Workspace, "connector", property(lambda _self: fleet))
        fleet.connect_user("alice", "head")
        for i in range(3):
            fleet.users["alice"].insert("notes", _note(i, "body"))
        (tmp_path / "byod.toml").write_text("")
        env = {"BYOD_ENCRYPTION_KEY": fleet.key_hex, "BYOD_VERSIONS_DIR": str(VERSIONS),
               "BYOD_CONFIG": str(tmp_path / "byod.toml"),
               "BYOD_MAIN_URL": fleet.main.url, "BYOD_MAIN_ADMIN_KEY": fleet.main.key,
               **fleet.registry.env()}

        def byod(*args: str) -> tuple[int, str]:
            result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
            assert fleet.main.key not in result.output
            return result.exit_code, result.output

        fleet.main.deploy(fleet.bundle("head"))  # a user bundle on main
        code, out = byod("disconnect", "--user", "alice", "--data", "migrate")
        head = fleet.version("head").id
        assert code == SAFETY_EXIT_CODE, out
        assert f"byod deploy {head} --target main" in out
        assert fleet.store.get_user("alice").connection_status == "connected"

        code, out = byod("deploy", "--target", "main", "--json")
        assert code == 0, out
        summary = json.loads(out)
        assert summary["target"] == "main" and summary["deployment"] == "main"
        assert summary["version"] == head and summary["verified"]

        code, out = byod("disconnect", "--user", "alice", "--data", "migrate", "--json")
        assert code == 0, out
        report = json.loads(out[out.index("{"):])
        assert report["verified"] and report["status"] == "disconnected"
        assert len(fleet.main.docs("notes")) == 3
