"""SqliteStore's own: the file's DDL and its upgrades, foreign keys, file permissions, and
opening by path. The roles themselves run on every backend: ``test_store_contract.py``."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import pytest

from engine.config import EngineConfig
from engine.errors import RegistryError, UnknownUser
from engine.ports.registry import JournalEntry
from engine.registry import open_store
from engine.registry.ddl import MIGRATIONS
from engine.registry.sqlite import SCHEMA_VERSION, SqliteStore


@pytest.fixture()
def store(tmp_path):
    s = SqliteStore(tmp_path / "reg" / "registry.sqlite3")
    yield s
    s.close()


def _user(store: SqliteStore, uid: str = "u1") -> None:
    store.upsert_credentials(uid, url_ct="v1.x.y.z", key_ct="v1.x.y.w")


def test_schema_created_once_with_versioned_ddl(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "registry.sqlite3"
    s = SqliteStore(path)
    assert s.schema_version() == SCHEMA_VERSION >= 1
    s.close()
    raw = sqlite3.connect(path)
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "journal", "leases", "audit", "rollouts", "progress",
            "schema_migrations"} <= tables
    assert raw.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    SqliteStore(path).close()  # reopening applies nothing twice
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == SCHEMA_VERSION
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(RegistryError, match="newer than this engine"):
        SqliteStore(path)


def test_foreign_keys_are_enforced(store: SqliteStore) -> None:
    assert store._read("PRAGMA foreign_keys")[0][0] == 1
    with pytest.raises(UnknownUser):
        store.journal_plan([JournalEntry("ghost", "p", "s", 0, "deploy")])


def test_file_and_directory_permissions(tmp_path) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        s = SqliteStore(tmp_path / "fresh" / "registry.sqlite3")
        _user(s)
        directory = tmp_path / "fresh"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for f in directory.iterdir():  # the db and its -wal / -shm files
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name
        s.close()
    finally:
        os.umask(old)


def test_existing_file_is_tightened(tmp_path) -> None:
    path = tmp_path / "registry.sqlite3"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    SqliteStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _version_1_file(path, rows: dict[str, dict]) -> None:
    """A registry as the previous engine left it: version-1 DDL, copy progress stored as
    prefixed rollout rows."""

    raw = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            raw.execute(statement)
    raw.execute("CREATE TABLE schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    raw.execute("INSERT INTO schema_migrations VALUES (1, 1.0)")
    raw.execute("PRAGMA user_version = 1")
    for i, (rollout_id, data) in enumerate(rows.items()):
        raw.execute("INSERT INTO rollouts VALUES (?, ?, ?, ?)",
                    (rollout_id, json.dumps(data), 10.0 + i, 20.0 + i))
    raw.close()


def test_a_version_1_registry_is_upgraded_and_its_progress_moved(tmp_path) -> None:
    assert SCHEMA_VERSION >= 2
    path = tmp_path / "old.sqlite3"
    rollout = {"rollout_id": "r-20260101-000000-abcdef", "status": "halted",
               "deployments": {"u1": {"status": "failed"}}}
    _version_1_file(path, {
        "r-20260101-000000-abcdef": rollout,
        "disconnect:u1": {"kind": "disconnect", "state": "running", "mode": "migrate"},
        "connect-copy:u_2": {"kind": "connect-copy", "state": "done"},
        "disconnect:org:7": {"kind": "disconnect", "state": "done"},
        "r-disconnect:u9": {"status": "completed"},  # only a prefix marks progress
    })
    with SqliteStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.load_progress("disconnect", "u1") == {
            "kind": "disconnect", "state": "running", "mode": "migrate"}
        assert store.load_progress("copy_from_main", "u_2") == {"kind": "connect-copy",
                                                                "state": "done"}
        assert store.load_progress("disconnect", "org:7") == {"kind": "disconnect",
                                                              "state": "done"}
        assert store.load_progress("disconnect", "u_2") is None
        assert sorted(r["rollout_id"] for r in store.list_rollouts(limit=50)) == [
            "r-20260101-000000-abcdef", "r-disconnect:u9"]
        assert store.load_rollout("r-20260101-000000-abcdef") == rollout
        assert store.load_rollout("disconnect:u1") is None
        # what the upgrade moved still resumes: the flows read it through the progress role
        from engine.lifecycle.progress import copy_in_progress, disconnect_in_progress
        assert disconnect_in_progress(store, "u1") and not copy_in_progress(store, "u_2")
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT updated_at FROM progress WHERE kind = 'disconnect' AND "
                       "user_id = 'u1'").fetchone()[0] == 21.0  # kept, not reset
    assert [r[0] for r in raw.execute("SELECT version FROM schema_migrations ORDER BY 1")] \
        == list(range(1, SCHEMA_VERSION + 1))
    raw.close()


def test_open_store_from_config_and_path(tmp_path) -> None:
    cfg = EngineConfig(registry_path=tmp_path / "a" / "reg.sqlite3")
    s = open_store(cfg)
    assert s.path == cfg.registry_path and s.path.exists()
    s.close()
    open_store(str(tmp_path / "b.sqlite3")).close()
    with pytest.raises(RegistryError, match="not supported") as err:
        open_store("mysql://user:hunter2hunter2@host/db")
    assert "hunter2" not in str(err.value)


def test_unopenable_path_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RegistryError, match="cannot open the registry"):
        SqliteStore(blocker / "sub" / "r.sqlite3")
