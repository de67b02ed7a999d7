"""``byod registry copy --to convex:main`` and back: a SQLite registry moved onto a local main
deployment arrives row for row (counts and checksums verified on both sides), the engine
reads it there as it read the original, and copied back into a new SQLite file it is the
same registry again, alerts, tokens and jobs included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.commands.registry_file import copy_registry
from engine.commands.workspace import Workspace
from engine.config import EngineConfig
from engine.ports.deployment import DeploymentTarget
from engine.registry.sqlite import SqliteStore
from engine.registry.tables import TABLE_NAMES
from engine.vault import Vault

from ..test_copy import KEY, SECRET_KEYS, SECRET_URLS, PastClock, populate
from .backend import MARKS

pytestmark = [*MARKS, pytest.mark.timeout(600)]


def every_row(store: Any, name: str) -> list[dict[str, Any]]:
    return store.dump_rows(name, after=None, limit=1_000_000)


@pytest.fixture()
def main(convex_main_fleet: Any, monkeypatch: pytest.MonkeyPatch) -> DeploymentTarget:
    target = convex_main_fleet.fresh()
    monkeypatch.setenv("BYOD_MAIN_URL", target.url)
    monkeypatch.setenv("BYOD_MAIN_ADMIN_KEY", target.admin_key)
    return target


def _sqlite_source(path: Path) -> Path:
    with SqliteStore(path, clock=PastClock()) as store:
        populate(store, Vault.from_hex(KEY))
    return path


def test_a_registry_moves_to_main_and_back_whole(tmp_path: Path, main: DeploymentTarget,
                                                convex_main_fleet: Any) -> None:
    source = _sqlite_source(tmp_path / "source.sqlite3")
    with Workspace.open(EngineConfig(registry_path=source)) as ws:
        result = copy_registry(ws, "convex:main", page_size=3)  # many pages per table
    assert result["ok"] and result["mismatches"] == [], result
    assert result["target"] == "convex:main"
    checks = {t["table"]: t for t in result["tables"]}
    assert list(checks) == list(TABLE_NAMES)
    for name, check in checks.items():
        assert check["source_rows"] == check["target_rows"] > 0, name
        assert check["source_checksum"] == check["target_checksum"], name

    original = SqliteStore(source)
    with Workspace.open(EngineConfig(registry_path="convex:main")) as on_main:
        copy = on_main.store
        for uid in [*SECRET_URLS, "zz_entitled_only"]:
            assert copy.get_user(uid) == original.get_user(uid)
        vault = Vault.from_hex(KEY)
        assert vault.target_for(copy.get_user("u2")).admin_key == SECRET_KEYS["u2"]
        assert copy.journal("u0", "plan-1") == original.journal("u0", "plan-1")
        assert copy.load_rollout("r-1") == original.load_rollout("r-1")
        assert copy.load_rollout("legacy") == original.load_rollout("legacy")
        assert copy.rollout_counts("r-1") == {"pending": 3, "succeeded": 1, "failed": 1}
        assert copy.audit_log(limit=1000) == original.audit_log(limit=1000)
        assert copy.load_progress("disconnect", "u4") == original.load_progress(
            "disconnect", "u4")
        back = tmp_path / "back.sqlite3"
        result = copy_registry(on_main, str(back), page_size=4)
        assert result["ok"] and result["mismatches"] == [], result
        # the copy is a working registry: a row saved there moves its count
        copy.save_deployment_row("r-1", "u1", "succeeded", {"after": "v2"})
        assert copy.rollout_counts("r-1") == {"pending": 2, "succeeded": 2, "failed": 1}
    returned = SqliteStore(back)
    try:
        for name in TABLE_NAMES:
            assert every_row(returned, name) == every_row(original, name), name
        assert returned.pending_alerts() == original.pending_alerts()
        assert returned.list_tokens() == original.list_tokens()
        assert returned.list_jobs() == original.list_jobs()
    finally:
        returned.close()
        original.close()


def test_the_cli_copies_to_main_and_refuses_a_main_holding_rows(
        tmp_path: Path, main: DeploymentTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _sqlite_source(tmp_path / "source.sqlite3")
    monkeypatch.setenv("BYOD_REGISTRY", str(source))
    runner = CliRunner()
    done = runner.invoke(cli, ["registry", "copy", "--to", "convex:main"])
    assert done.exit_code == 0, done.output
    again = runner.invoke(cli, ["registry", "copy", "--to", "convex:main"])
    assert again.exit_code != 0 and "not empty" in again.output
    for text in (done.output, again.output):
        assert main.admin_key not in text and main.admin_key.split("|")[1] not in text
        for secret in (*SECRET_URLS.values(), *SECRET_KEYS.values()):
            assert secret not in text
