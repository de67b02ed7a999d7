"""Fixtures for runner unit tests: a real SQLite registry and in-memory deployments."""

from __future__ import annotations

from typing import Iterator

import pytest

from engine.registry.sqlite import SqliteStore

from .fakes import FakeDeployment, RecordingKit, SchemaBook


@pytest.fixture()
def store(tmp_path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "registry.sqlite3")
    yield s
    s.close()


@pytest.fixture()
def book() -> SchemaBook:
    return SchemaBook()


@pytest.fixture()
def kit(book: SchemaBook) -> RecordingKit:
    return RecordingKit(book)


def add_user(store: SqliteStore, kit: RecordingKit, book: SchemaBook, uid: str, *,
             version: str = "v1", docs: int = 25) -> FakeDeployment:
    """A connected user whose deployment holds ``docs`` notes at ``version``."""

    store.upsert_credentials(uid, url_ct="ct-url", key_ct="ct-key")
    store.set_connection_status(uid, "connected")
    bundle = kit.version_bundle(version)
    store.set_deployment(uid, status="deployed", version=version,
                         fingerprint=bundle.fingerprint)
    dep = FakeDeployment(uid, book)
    dep.seed(docs, bundle)
    return dep
