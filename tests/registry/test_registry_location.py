"""Where the registry is: ``BYOD_REGISTRY`` (or ``registry_path`` in ``byod.toml``) names a
SQLite file, a PostgreSQL URL or ``convex:main``. A URL is kept as written (a path would
fold its ``//``), printed without its password, and side files (reports, push payloads) go
to the state directory when there is no registry file to sit beside."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.commands.workspace import Workspace
from engine.config import (
    EngineConfig,
    is_registry_url,
    load_config,
    registry_display,
    registry_location,
    state_dir,
)
from engine.errors import ConfigError, RegistryError
from engine.registry.open import OPENERS, open_store, registry_kind

SECRET = "pw-location-secret-4242"
URL = f"postgresql://fleet:{SECRET}@db.internal:6543/registry?sslmode=require"


def test_a_url_is_kept_as_written_and_a_path_is_a_path(tmp_path: Path) -> None:
    config = load_config(env={"BYOD_REGISTRY": URL, "BYOD_CONFIG": str(_empty(tmp_path))})
    assert config.registry_path == URL and registry_location(config) == URL
    assert is_registry_url(config.registry_path)
    for alias in ("postgres://h/db", "convex:main"):
        assert EngineConfig(registry_path=alias).registry_path == alias
    path = EngineConfig(registry_path=str(tmp_path / "r.sqlite3")).registry_path
    assert isinstance(path, Path) and path == tmp_path / "r.sqlite3"
    assert isinstance(EngineConfig().registry_path, Path)


def test_a_url_is_shown_without_its_password(tmp_path: Path) -> None:
    config = EngineConfig(registry_path=URL)
    assert registry_display(config) == "postgresql://fleet@db.internal:6543/registry"
    assert SECRET not in repr(config) and SECRET not in str(config)
    assert registry_display(tmp_path / "r.sqlite3") == str(tmp_path / "r.sqlite3")


def test_another_scheme_is_refused_without_echoing_the_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mysql://… is not supported") as err:
        load_config(env={"BYOD_REGISTRY": f"mysql://u:{SECRET}@h/db",
                         "BYOD_CONFIG": str(_empty(tmp_path))})
    assert SECRET not in str(err.value)
    with pytest.raises(RegistryError, match="not supported") as err2:
        registry_kind(f"mysql://u:{SECRET}@h/db")
    assert SECRET not in str(err2.value)


def test_open_store_dispatches_on_the_location(tmp_path: Path) -> None:
    assert (registry_kind("postgresql://h/db"), registry_kind("POSTGRES://h/db"),
            registry_kind("convex:main"), registry_kind(str(tmp_path / "r"))) == (
        "postgresql", "postgresql", "convex", "sqlite")
    assert set(OPENERS) >= {"sqlite", "postgresql", "convex"}
    with open_store(EngineConfig(registry_path=tmp_path / "a.sqlite3")) as store:
        assert type(store).__name__ == "SqliteStore"


def test_side_files_go_to_the_state_directory_for_a_server_registry(tmp_path: Path) -> None:
    from engine.convex.connector import payload_dir

    file_config = EngineConfig(registry_path=tmp_path / "reg" / "r.sqlite3")
    assert state_dir(file_config) == tmp_path / "reg"
    assert payload_dir(file_config) == tmp_path / "reg" / "push-payloads"
    url_config = EngineConfig(registry_path=URL)
    assert state_dir(url_config) == Path(".byod")
    assert payload_dir(url_config) == Path(".byod") / "push-payloads"


def test_a_server_registry_counts_as_existing(tmp_path: Path) -> None:
    """Read-only verbs never create a registry file; a server is asked instead."""

    assert Workspace.open(EngineConfig(registry_path=URL)).registry_exists()
    missing = EngineConfig(registry_path=tmp_path / "none.sqlite3")
    assert not Workspace.open(missing).registry_exists()


def test_a_workspace_opens_a_postgresql_registry(pg_database: str) -> None:
    ws = Workspace.open(EngineConfig(registry_path=pg_database))
    try:
        assert type(ws.store).__name__ == "PostgresStore"
        ws.store.upsert_credentials("u1", url_ct="a", key_ct="b")
        assert [u.user_id for u in ws.store.list_users()] == ["u1"]
    finally:
        ws.close()


def _empty(tmp_path: Path) -> Path:
    config = tmp_path / "byod.toml"
    config.write_text("")
    return config
