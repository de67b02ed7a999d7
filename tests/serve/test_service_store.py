"""``byod serve`` keeps its jobs and API tokens in the registry: a registry that cannot
(the main deployment's) is refused before the service starts, naming what to use."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.commands.service import require_service_store
from engine.commands.workspace import Workspace
from engine.config import EngineConfig
from engine.errors import ConfigError
from engine.registry.sqlite import SqliteStore


class EngineRecordsOnly:
    """A store with the engine's roles but no jobs or tokens (as ``convex:main``)."""

    def get_user(self, user_id: str) -> None:
        return None

    def close(self) -> None:
        return None


def test_a_store_without_jobs_and_tokens_is_refused_before_serving() -> None:
    config = EngineConfig(registry_path="convex:main")
    ws = Workspace.open(config, store=EngineRecordsOnly())  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as caught:
        require_service_store(ws)
    message = str(caught.value)
    assert "needs a SQLite or PostgreSQL registry" in message and "convex:main" in message


def test_sqlite_keeps_jobs_and_tokens(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "r.sqlite3") as store:
        require_service_store(Workspace.open(EngineConfig(), store=store))
