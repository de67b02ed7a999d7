"""The registry's stores, one fixture for all: ``store`` (and ``make_store``) run a test on
every backend of ``BACKENDS``. A backend is a name in ``BACKENDS`` plus its entry in
``LOCATIONS`` (a fresh, empty registry location for one test) — ``open_store`` opens any.

SQLite needs nothing; PostgreSQL uses the session's throwaway cluster (``pg_database``: a
new database per test, so tests never see each other's rows); convex-main keeps the
registry on a local main deployment (``convex_main/backend.py``: a fresh one per test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .convex_main import backend as convex_main

BACKENDS = ["sqlite", "postgresql", "convex-main"]
# marks of a backend's tests (convex-main runs on local deployments: `local`, `toolchain`)
BACKEND_MARKS: dict[str, tuple[Any, ...]] = {"convex-main": convex_main.MARKS}


class Clock:
    """A settable clock (``clock.now``)."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "reg" / "registry.sqlite3")


def _postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(request.getfixturevalue("pg_database"))


# backend -> a fresh location for one test
LOCATIONS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
    "convex-main": convex_main.location,
}


@pytest.fixture(scope="session")
def convex_main_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local fleet for the session's convex-main tests (a fresh main per test)."""

    yield from convex_main.main_fleet(tmp_path_factory)


def open_at(location: str, clock: Callable[[], float] | None = None) -> Any:
    """A store at ``location`` with ``clock`` (the store's own when None)."""

    from engine.config import is_registry_url
    from engine.registry.open import open_store

    if location == convex_main.LOCATION:
        return convex_main.open_store(clock)
    if clock is None:
        return open_store(location)
    if location.startswith(("postgresql://", "postgres://")):
        from engine.registry.postgres import PostgresStore

        return PostgresStore(location, clock=clock)
    if is_registry_url(location):
        pytest.skip(f"{location} stores take no clock")
    from engine.registry.sqlite import SqliteStore

    return SqliteStore(location, clock=clock)


@pytest.fixture(params=[pytest.param(b, marks=BACKEND_MARKS.get(b, ())) for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# backends whose store is SQL (``SqlCore``): tests that read or write its tables directly
SQL_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture()
def sql_only(backend: str) -> None:
    """Use (``@pytest.mark.usefixtures("sql_only")``) in a test that reads the SQL tables."""

    if backend not in SQL_BACKENDS:
        pytest.skip(f"reads the registry's SQL tables; {backend} has none")


@pytest.fixture()
def registry_location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty registry location of the test's backend."""

    return LOCATIONS[backend](request, tmp_path)


@pytest.fixture()
def make_store(registry_location: str) -> Iterator[Callable[..., Any]]:
    """``make_store(clock=None)``: a store at this test's location (another call: another
    store on the same registry, as a second process would have); all closed afterwards."""

    stores: list[Any] = []

    def make(clock: Callable[[], float] | None = None) -> Any:
        store = open_at(registry_location, clock)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture()
def store(make_store: Callable[..., Any]) -> Any:
    return make_store()
