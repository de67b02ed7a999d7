"""A rollout's deployments as their own rows: saving one outcome writes one row and its
summary count (never the rollout's document), the whole record still loads in the shape it
always had, rows page through an index, listings carry counts instead of rows, the check
finds counts that disagree, and records written before (a version-4 registry, rows inside
the document) still load, list and move their rows out on the first save. The rows' tests
run on every backend; the older files' are SQLite's."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest

from engine.errors import RegistryError
from engine.ports.registry import RolloutRow, RolloutStore
from engine.registry.ddl import MIGRATIONS, SCHEMA_VERSION
from engine.registry.sqlite import SqliteStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture()
def store(make_store: Callable[..., Any]) -> Any:
    """A fresh registry of each backend (``tests/registry/conftest.py``), its clock one
    second further at every call."""

    return make_store(Clock())


def doc_of(rollout_id: str, waves: dict[str, list[str]], *,
           status: dict[str, str] | None = None) -> dict[str, Any]:
    """A rollout document in the shape the fleet runner saves."""

    status = status or {}
    deployments = {}
    for name, members in waves.items():
        for uid in members:
            deployments[uid] = {"user_id": uid, "status": status.get(uid, "pending"),
                                "before": "v1", "wave": name, "action": "migrate"}
    return {"rollout_id": rollout_id, "target": "v3", "status": "running",
            "created_at": 1.0, "max_failures": 1, "resumed": 0, "halted_reason": None,
            "updated_at": 2.0,
            "options": {"canary": 1, "waves": ["100%"], "only": [], "exclude": []},
            "waves": [{"name": n, "deployments": list(m)} for n, m in waves.items()],
            "deployments": deployments}


WAVES = {"canary": ["u7"], "50%": ["u2", "u0"], "100%": ["u9", "u1", "u5"]}
ORDER = ["u7", "u2", "u0", "u9", "u1", "u5"]


def raw(store: SqliteStore, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    return store._read(sql, params)


@pytest.mark.usefixtures("sql_only")
def test_a_record_is_a_header_plus_rows_and_loads_whole(store: SqliteStore) -> None:
    doc = doc_of("r-1", WAVES, status={"u7": "succeeded"})
    store.save_rollout("r-1", doc)
    assert store.load_rollout("r-1") == doc
    [header] = raw(store, "SELECT data, layout FROM rollouts WHERE rollout_id = 'r-1'")
    stored = json.loads(header["data"])
    assert header["layout"] == "rows" and "deployments" not in stored
    assert stored["waves"] == [{"name": "canary", "size": 1}, {"name": "50%", "size": 2},
                               {"name": "100%", "size": 3}]
    rows = raw(store, "SELECT user_id, position, status, data FROM rollout_deployments "
                      "ORDER BY position")
    assert [r["user_id"] for r in rows] == ORDER and [r["position"] for r in rows] == \
        list(range(6))
    assert "user_id" not in json.loads(rows[0]["data"])  # held in its column
    assert store.rollout_counts("r-1") == {"pending": 5, "succeeded": 1}
    # saving the whole record again replaces its rows: one left out is gone
    smaller = doc_of("r-1", {"canary": ["u7"], "100%": ["u1"]})
    store.save_rollout("r-1", smaller)
    assert store.load_rollout("r-1") == smaller
    assert store.rollout_counts("r-1") == {"pending": 2}


@pytest.mark.usefixtures("sql_only")
def test_saving_an_outcome_writes_its_row_and_count_only(store: SqliteStore) -> None:
    store.save_rollout("r-1", doc_of("r-1", WAVES))
    before = raw(store, "SELECT data, updated_at FROM rollouts")[0]
    others = {r["user_id"]: r["updated_at"] for r in raw(
        store, "SELECT user_id, updated_at FROM rollout_deployments")}
    store.save_deployment_row("r-1", "u0", "failed", {
        "user_id": "u0", "status": "failed", "wave": "50%", "before": "v1",
        "action": "migrate", "error": "boom"})
    after = raw(store, "SELECT data, updated_at FROM rollouts")[0]
    assert (after["data"], after["updated_at"]) == (before["data"], before["updated_at"])
    changed = {r["user_id"] for r in raw(
        store, "SELECT user_id, updated_at FROM rollout_deployments")
        if others[r["user_id"]] != r["updated_at"]}
    assert changed == {"u0"}
    row = store.rollout_row("r-1", "u0")
    assert row == RolloutRow("r-1", "u0", 2, "failed", {
        "wave": "50%", "before": "v1", "action": "migrate", "error": "boom"}, row.updated_at)
    assert store.rollout_counts("r-1") == {"failed": 1, "pending": 5}
    loaded = store.load_rollout("r-1")
    assert loaded["deployments"]["u0"]["error"] == "boom"
    assert loaded["updated_at"] == row.updated_at  # the last activity, not the header's
    assert [w["deployments"] for w in loaded["waves"]] == list(WAVES.values())


@pytest.mark.usefixtures("sql_only")
def test_counts_follow_every_transition(store: SqliteStore) -> None:
    store.save_rollout("r-1", doc_of("r-1", WAVES))
    steps = [("u7", "succeeded"), ("u2", "failed"), ("u2", "failed"), ("u2", "succeeded"),
             ("u0", "skipped"), ("u0", "already"), ("u9", "failed")]
    for uid, status in steps:
        store.save_deployment_row("r-1", uid, status, {"wave": "x"})
    actual = {r["status"]: r["n"] for r in raw(
        store, "SELECT status, count(*) AS n FROM rollout_deployments GROUP BY status")}
    assert store.rollout_counts("r-1") == actual == {
        "already": 1, "failed": 1, "pending": 2, "succeeded": 2}
    assert store.verify() == []


def test_a_row_the_record_does_not_hold_is_appended(store: SqliteStore) -> None:
    with pytest.raises(RegistryError, match="no rollout 'r-none'"):
        store.save_deployment_row("r-none", "u1", "succeeded", {})
    store.save_rollout("r-1", doc_of("r-1", WAVES))
    store.save_deployment_row("r-1", "late", "succeeded", {"wave": "rest"})
    assert store.rollout_row("r-1", "late").position == 6
    assert list(store.load_rollout("r-1")["deployments"])[-1] == "late"
    assert store.rollout_counts("r-1") == {"pending": 6, "succeeded": 1}


def test_rows_page_in_rollout_order(store: SqliteStore) -> None:
    status = {"u2": "failed", "u9": "failed", "u5": "failed", "u7": "succeeded"}
    store.save_rollout("r-1", doc_of("r-1", WAVES, status=status))
    assert [r.user_id for r in store.rollout_rows("r-1")] == ORDER
    pages, after = [], -1
    while page := store.rollout_rows("r-1", statuses=["failed"], after=after, limit=2):
        pages.append([r.user_id for r in page])
        after = page[-1].position
    assert pages == [["u2", "u9"], ["u5"]]
    assert [r.user_id for r in store.rollout_rows("r-1", statuses=["pending", "succeeded"],
                                                  limit=2)] == ["u7", "u0"]
    assert store.rollout_rows("r-1", statuses=[]) == []
    assert store.rollout_rows("r-other") == [] and store.rollout_counts("r-other") == {}
    assert store.rollout_row("r-1", "nobody") is None


def test_a_header_save_keeps_the_rows(store: SqliteStore) -> None:
    doc = doc_of("r-1", WAVES)
    store.save_rollout("r-1", doc)
    store.save_deployment_row("r-1", "u7", "succeeded", {"wave": "canary"})
    header = {k: v for k, v in doc.items() if k != "deployments"}
    store.save_rollout_header("r-1", {**header, "status": "completed"})
    loaded = store.load_rollout("r-1")
    assert loaded["status"] == "completed" and loaded["waves"] == doc["waves"]
    assert loaded["deployments"]["u7"]["status"] == "succeeded"
    assert len(loaded["deployments"]) == 6
    with pytest.raises(RegistryError, match="a header has no deployments"):
        store.save_rollout_header("r-1", doc)


def test_listing_carries_counts_not_rows(store: SqliteStore) -> None:
    store.save_rollout("r-a", doc_of("r-a", WAVES))
    store.save_rollout("r-b", doc_of("r-b", {"100%": ["x1", "x2"]}))
    store.save_rollout("plain", {"status": "completed"})  # a document without rows
    store.save_deployment_row("r-a", "u1", "succeeded", {})  # r-a was active last
    listed = store.list_rollouts(limit=10)
    assert [d["rollout_id"] for d in listed] == ["r-a", "plain", "r-b"]
    by_id = {d["rollout_id"]: d for d in listed}
    assert all("deployments" not in d for d in listed)
    assert by_id["r-a"]["counts"] == {"pending": 5, "succeeded": 1}
    assert by_id["r-a"]["waves"][0] == {"name": "canary", "size": 1}
    assert by_id["r-b"]["counts"] == {"pending": 2}
    assert by_id["plain"] == {"rollout_id": "plain", "status": "completed"}
    assert [d["rollout_id"] for d in store.list_rollouts(limit=1)] == ["r-a"]


@pytest.mark.usefixtures("sql_only")
def test_the_check_finds_counts_that_disagree_with_rows(store: SqliteStore) -> None:
    store.save_rollout("r-1", doc_of("r-1", WAVES))
    assert store.verify() == []
    with store._write() as conn:
        conn.execute("UPDATE rollout_counts SET n = n + 2 WHERE status = 'pending'")
        conn.execute("INSERT INTO rollout_deployments (rollout_id, user_id, position, status, data, "
                     "updated_at) VALUES ('r-gone', 'u1', 0, 'failed', "
                     "'{}', 1.0)")
        conn.execute("INSERT INTO rollout_deployments (rollout_id, user_id, position, status, data, "
                     "updated_at) VALUES ('r-1', 'ux', 99, 'odd', "
                     "'[1]', 1.0)")
    problems = store.verify()
    assert "rollout_deployments r-1 ux: data is not a JSON object" in problems
    assert "rollout r-1: its summary counts 8 pending deployment(s), its rows 6" in problems
    assert "rollout r-1: its summary counts 0 odd deployment(s), its rows 1" in problems
    assert any(p.startswith("rollout r-gone: 1 deployment row(s) without a rollout record")
               for p in problems)


def test_saving_an_outcome_costs_the_same_in_a_small_and_a_large_rollout(
        tmp_path: Path) -> None:
    """The statements one outcome save runs do not depend on the rollout's size, and none
    of them writes the rollout's document (which is what made saves grow with the fleet)."""

    seen: dict[int, list[str]] = {}
    for n in (10, 3000):
        with SqliteStore(tmp_path / f"r{n}.sqlite3", clock=Clock()) as s:
            s.save_rollout("r", doc_of("r", {"100%": [f"u{i:05d}" for i in range(n)]}))
            statements: list[str] = []
            s._connection().set_trace_callback(statements.append)
            s.save_deployment_row("r", "u00005", "succeeded", {"wave": "100%", "deploys": 2})
            s._connection().set_trace_callback(None)
            seen[n] = statements
            assert s.rollout_counts("r") == {"pending": n - 1, "succeeded": 1}
    assert seen[10] == seen[3000]
    assert any(s.startswith("UPDATE rollout_deployments SET") for s in seen[10])
    assert not [s for s in seen[10] if s.startswith(("INSERT INTO rollouts ", "UPDATE rollouts "))]


# -- records written before rows were kept apart ------------------------------------------

def _version_4_file(path: Path, rollouts: dict[str, Any]) -> None:
    """A registry as the previous engine left it: the version-4 DDL, each rollout one
    document with its rows inside."""

    conn = sqlite3.connect(path, isolation_level=None)
    for version in range(1, 5):
        for statement in MIGRATIONS[version - 1].split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("CREATE TABLE schema_migrations "
                 "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    conn.executemany("INSERT INTO schema_migrations VALUES (?, 1.0)",
                     [(v,) for v in range(1, 5)])
    conn.execute("PRAGMA user_version = 4")
    for i, (rollout_id, doc) in enumerate(rollouts.items()):
        conn.execute("INSERT INTO rollouts VALUES (?, ?, ?, ?)",
                     (rollout_id, json.dumps(doc, sort_keys=True), 10.0 + i, 20.0 + i))
    conn.close()


def test_a_version_4_record_loads_lists_and_moves_its_rows_out(tmp_path: Path) -> None:
    assert SCHEMA_VERSION >= 5
    path = tmp_path / "old.sqlite3"
    old = doc_of("r-old", WAVES, status={"u7": "succeeded", "u2": "failed"})
    _version_4_file(path, {"r-old": old, "r-odd": {"rollout_id": "r-odd", "tables": {}}})
    with SqliteStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION and store.verify() == []
        assert raw(store, "SELECT layout FROM rollouts WHERE rollout_id = 'r-old'")[0][0] \
            == "document"
        assert store.load_rollout("r-old") == old  # read as it is
        [listed] = [d for d in store.list_rollouts() if d["rollout_id"] == "r-old"]
        assert "deployments" not in listed
        assert listed["counts"] == {"failed": 1, "pending": 4, "succeeded": 1}
        assert store.rollout_counts("r-old") == listed["counts"]
        assert [r.user_id for r in store.rollout_rows("r-old", statuses=["failed"])] == ["u2"]
        assert store.rollout_row("r-old", "u2").status == "failed"
        assert store.rollout_row("r-odd", "u2") is None
        # the first outcome saved moves the rows out, in the same transaction
        store.save_deployment_row("r-old", "u2", "succeeded", {
            **old["deployments"]["u2"], "status": "succeeded"})
        [header] = raw(store, "SELECT data, layout FROM rollouts WHERE rollout_id = 'r-old'")
        assert header["layout"] == "rows" and "deployments" not in json.loads(header["data"])
        loaded = store.load_rollout("r-old")
        assert loaded["deployments"]["u2"]["status"] == "succeeded"
        assert {k: v for k, v in loaded.items() if k not in ("deployments", "updated_at")} \
            == {k: v for k, v in old.items() if k not in ("deployments", "updated_at")}
        assert loaded["deployments"] == {**old["deployments"], "u2": {
            **old["deployments"]["u2"], "status": "succeeded"}}
        assert store.rollout_counts("r-old") == {"pending": 4, "succeeded": 2}
        assert store.verify() == []


def test_a_version_4_record_moves_its_rows_out_on_a_header_save(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = doc_of("r-old", WAVES, status={"u7": "succeeded"})
    _version_4_file(path, {"r-old": old})
    with SqliteStore(path) as store:
        header = {k: v for k, v in old.items() if k != "deployments"}
        store.save_rollout_header("r-old", {**header, "status": "halted", "resumed": 1})
        loaded = store.load_rollout("r-old")
        assert loaded["deployments"] == old["deployments"]
        assert loaded["waves"] == old["waves"]
        assert (loaded["status"], loaded["resumed"]) == ("halted", 1)
        assert store.rollout_counts("r-old") == {"pending": 5, "succeeded": 1}


def test_the_sqlite_store_is_a_rollout_store(store: SqliteStore) -> None:
    assert isinstance(store, RolloutStore)
