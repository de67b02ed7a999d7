"""The registry's roles on every backend (``BACKENDS`` of ``tests/registry/conftest.py``:
SQLite and PostgreSQL): users and their transitions, journal, leases, audit, rollouts, copy
progress, and one contract test per registry role. Each test gets a fresh registry."""

from __future__ import annotations

import itertools
from typing import Any, Callable

import pytest

from engine.errors import InvalidTransition, LeaseHeld, RegistryError, UnknownUser
from engine.ports.registry import (
    CONNECTION_TRANSITIONS,
    JOURNAL_TRANSITIONS,
    AuditLog,
    JournalEntry,
    JournalStore,
    LeaseStore,
    ProgressStore,
    RegistryStore,
    RolloutStore,
    UserStore,
)

from .conftest import Clock


def _user(store: Any, uid: str = "u1") -> None:
    store.upsert_credentials(uid, url_ct="v1.x.y.z", key_ct="v1.x.y.w")


ROLES = (UserStore, JournalStore, LeaseStore, AuditLog, RolloutStore, ProgressStore)


def _methods(protocol: type) -> set[str]:
    return {n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")}


def test_journal_rows_need_their_user(store: Any) -> None:
    with pytest.raises(UnknownUser):
        store.journal_plan([JournalEntry("ghost", "p", "s", 0, "deploy")])


def test_implements_the_protocol(store: Any) -> None:
    assert isinstance(store, RegistryStore)
    for role in ROLES:
        assert isinstance(store, role), role.__name__


def test_registry_store_is_exactly_its_roles() -> None:
    """Every method belongs to one role (roles do not overlap) and the combined protocol
    adds nothing but ``close``."""

    seen: set[str] = set()
    for role in ROLES:
        methods = _methods(role)
        assert methods and not methods & seen, role.__name__
        seen |= methods
    assert all(issubclass(RegistryStore, role) for role in ROLES)
    combined = {n for n in dir(RegistryStore) if not n.startswith("_")}
    assert combined == seen | {"close"}


def test_user_lifecycle_and_reconnect_updates_in_place(store: Any) -> None:
    with pytest.raises(UnknownUser, match="u1"):
        store.get_user("u1")
    assert store.find_user("u1") is None
    u = store.upsert_credentials("u1", url_ct="a", key_ct="b")
    assert (u.connection_status, u.deployment_status) == ("pending", "not_started")
    store.set_connection_status("u1", "connected")
    u2 = store.upsert_credentials("u1", url_ct="c", key_ct="d")
    assert (u2.url_ct, u2.key_ct, u2.connection_status) == ("c", "d", "connected")
    assert u2.created_at == u.created_at
    assert [x.user_id for x in store.list_users()] == ["u1"]


def test_public_dict_and_repr_carry_no_ciphertext(store: Any) -> None:
    u = store.upsert_credentials("u1", url_ct="URLCIPHER", key_ct="KEYCIPHER")
    text = repr(u) + str(u.public_dict())
    assert "URLCIPHER" not in text and "KEYCIPHER" not in text


@pytest.mark.parametrize("current, requested",
                         list(itertools.product(CONNECTION_TRANSITIONS, repeat=2)))
def test_connection_transitions(store: Any, current: str, requested: str) -> None:
    _user(store)
    path = {"pending": [], "connected": ["connected"], "error": ["error"],
            "disconnected": ["disconnected"]}[current]
    for step in path:
        store.set_connection_status("u1", step)  # type: ignore[arg-type]
    if requested in CONNECTION_TRANSITIONS[current]:
        assert store.set_connection_status("u1", requested).connection_status == requested  # type: ignore[arg-type]
    else:
        with pytest.raises(InvalidTransition) as err:
            store.set_connection_status("u1", requested)  # type: ignore[arg-type]
        assert (err.value.current, err.value.requested) == (current, requested)
        assert store.get_user("u1").connection_status == current


def test_connection_error_is_sanitized_and_cleared(store: Any) -> None:
    _user(store)
    leaked = "auth failed for prod:my-dep-123|" + "ab" * 20 + " at https://x?adminKey=zzzz"
    u = store.set_connection_status("u1", "error", error=leaked, tested_at=5.0)
    assert "ab" * 20 not in u.connection_error and "zzzz" not in u.connection_error
    assert u.last_connection_test == 5.0
    assert store.set_connection_status("u1", "connected").connection_error is None
    events = [e for e in store.audit_log("u1") if e.event == "connection_status"]
    assert [(e.detail["from"], e.detail["to"]) for e in events] == [
        ("pending", "error"), ("error", "connected")]
    assert all("ab" * 20 not in str(e.detail) for e in events)


def test_unknown_status_values_refused(store: Any) -> None:
    _user(store)
    with pytest.raises(RegistryError):
        store.set_connection_status("u1", "happy")  # type: ignore[arg-type]
    with pytest.raises(RegistryError):
        store.set_deployment("u1", status="exploded")  # type: ignore[arg-type]


def test_set_deployment_records_progress_version_fingerprint(store: Any) -> None:
    _user(store)
    store.set_deployment("u1", status="deploying", progress="testing")
    u = store.set_deployment("u1", status="deployed", progress="done", version="0003",
                             fingerprint="abc123")
    assert (u.deployment_status, u.deployment_progress, u.schema_version,
            u.schema_fingerprint) == ("deployed", "done", "0003", "abc123")
    with pytest.raises(UnknownUser):
        store.set_deployment("nobody", status="deploying")


def test_entitlement_can_precede_connection(store: Any) -> None:
    u = store.set_entitled("u9", True)
    assert u.entitled and u.url_ct == "" and u.connection_status == "pending"
    store.upsert_credentials("u9", url_ct="a", key_ct="b")
    assert store.get_user("u9").entitled
    assert not store.set_entitled("u9", False).entitled


def test_list_users_by_status(store: Any) -> None:
    for uid in ("a", "b", "c"):
        _user(store, uid)
    store.set_connection_status("b", "connected")
    store.set_connection_status("c", "error", error="down")
    assert [u.user_id for u in store.list_users(connection_status=["connected", "error"])] == ["b", "c"]
    assert store.list_users(connection_status=[]) == []


def test_replace_ciphertexts_is_compare_and_swap(store: Any) -> None:
    store.upsert_credentials("u1", url_ct="a", key_ct="b")
    assert not store.replace_ciphertexts("u1", url_ct="x", key_ct="y",
                                         expect_url_ct="a", expect_key_ct="STALE")
    assert store.replace_ciphertexts("u1", url_ct="x", key_ct="y",
                                     expect_url_ct="a", expect_key_ct="b")
    assert (store.get_user("u1").url_ct, store.get_user("u1").key_ct) == ("x", "y")


def _plan(uid: str = "u1", plan: str = "p1") -> list[JournalEntry]:
    return [JournalEntry(uid, plan, f"s{i}", i, kind, version="0002")
            for i, kind in enumerate(("widen", "backfill", "narrow"))]


def test_journal_plan_is_idempotent_and_ordered(make_store: Callable[..., Any]) -> None:
    clock = Clock()
    store = make_store(clock)
    _user(store)
    store.journal_plan(_plan())
    store.journal_update("u1", "p1", "s0", status="running")
    store.journal_plan(_plan())  # re-planning does not reset progress
    entries = store.journal("u1", "p1")
    assert [e.step_id for e in entries] == ["s0", "s1", "s2"]
    assert entries[0].status == "running" and entries[1].status == "pending"
    clock.now += 10
    store.journal_plan(_plan(plan="p2"))
    assert [e.plan_id for e in store.journal("u1")] == ["p1"] * 3 + ["p2"] * 3


def test_journal_updates_cursor_attempts_times(make_store: Callable[..., Any]) -> None:
    clock = Clock()
    store = make_store(clock)
    _user(store)
    store.journal_plan(_plan())
    clock.now = 2000.0
    e = store.journal_update("u1", "p1", "s1", status="running", bump_attempts=True)
    assert (e.status, e.attempts, e.started_at, e.completed_at) == ("running", 1, 2000.0, None)
    e = store.journal_update("u1", "p1", "s1", cursor="c1", processed=100)
    assert (e.cursor, e.processed, e.status) == ("c1", 100, "running")
    clock.now = 2010.0
    e = store.journal_update("u1", "p1", "s1", status="failed",
                             error="doc k123 bad; key prod:d|" + "cd" * 20)
    assert e.completed_at == 2010.0 and "k123" in e.error and "cd" * 20 not in e.error
    clock.now = 2020.0
    e = store.journal_update("u1", "p1", "s1", status="running", bump_attempts=True)
    assert (e.attempts, e.started_at, e.completed_at, e.cursor) == (2, 2020.0, None, "c1")
    e = store.journal_update("u1", "p1", "s1", status="completed")
    assert e.error is None and e.completed_at == 2020.0
    with pytest.raises(RegistryError, match="no journal step"):
        store.journal_update("u1", "p1", "nope", status="running")
    events = [(a.detail["from"], a.detail["to"]) for a in store.audit_log("u1")
              if a.event == "journal"]
    assert events == [("pending", "running"), ("running", "failed"), ("failed", "running"),
                      ("running", "completed")]


_REACH = {"pending": [], "running": ["running"], "failed": ["running", "failed"],
          "completed": ["running", "completed"], "skipped": ["skipped"]}


@pytest.mark.parametrize("current, requested",
                         list(itertools.product(JOURNAL_TRANSITIONS, repeat=2)))
def test_journal_transitions(store: Any, current: str, requested: str) -> None:
    _user(store)
    store.journal_plan(_plan())
    for step in _REACH[current]:
        store.journal_update("u1", "p1", "s0", status=step)  # type: ignore[arg-type]
    if requested in JOURNAL_TRANSITIONS[current]:
        assert store.journal_update("u1", "p1", "s0", status=requested).status == requested  # type: ignore[arg-type]
    else:
        with pytest.raises(InvalidTransition):
            store.journal_update("u1", "p1", "s0", status=requested)  # type: ignore[arg-type]
        assert store.journal("u1", "p1")[0].status == current


def test_leases_in_one_process(make_store: Callable[..., Any]) -> None:
    clock = Clock()
    store = make_store(clock)
    lease = store.acquire_lease("dep", "a", 30)
    assert lease.expires_at == clock.now + 30
    store.acquire_lease("dep", "a", 30)  # re-entrant for the same holder
    with pytest.raises(LeaseHeld) as err:
        store.acquire_lease("dep", "b", 30)
    assert (err.value.deployment, err.value.holder) == ("dep", "a")
    assert store.current_lease("dep").holder == "a"
    clock.now += 10
    assert store.renew_lease("dep", "a", 30).expires_at == clock.now + 30
    with pytest.raises(LeaseHeld):
        store.renew_lease("dep", "b", 30)
    clock.now += 31  # a expired (crashed): b takes over, a has lost it
    assert store.acquire_lease("dep", "b", 30).holder == "b"
    with pytest.raises(LeaseHeld):
        store.renew_lease("dep", "a", 30)
    store.release_lease("dep", "a")  # not the holder: no effect
    assert store.current_lease("dep").holder == "b"
    store.release_lease("dep", "b")
    assert store.current_lease("dep") is None
    store.acquire_lease("dep", "c", 30)
    assert [e.detail["from"] for e in store.audit_log("dep") if e.event == "lease_taken_over"] == ["a"]
    with pytest.raises(RegistryError):
        store.acquire_lease("dep2", "a", 0)


def test_audit_log_order_limit_and_redaction(store: Any) -> None:
    for i in range(5):
        store.audit("u1", "custom", {"i": i, "note": "prod:d|" + "ef" * 20})
    log = store.audit_log("u1", limit=3)
    assert [e.detail["i"] for e in log] == [2, 3, 4]
    assert all("ef" * 20 not in str(e.detail) for e in log)


def test_rollouts_round_trip(make_store: Callable[..., Any]) -> None:
    clock = Clock()
    store = make_store(clock)
    assert store.load_rollout("r1") is None
    store.save_rollout("r1", {"target": "0003", "done": ["a"]})
    clock.now += 1
    store.save_rollout("r2", {"target": "0004"})
    clock.now += 1
    store.save_rollout("r1", {"target": "0003", "done": ["a", "b"]})
    assert store.load_rollout("r1") == {"target": "0003", "done": ["a", "b"]}
    assert [r["rollout_id"] for r in store.list_rollouts()] == ["r1", "r2"]
    assert len(store.list_rollouts(limit=1)) == 1


# -- one contract per role: each drives the store through that role's methods only ---------

def _user_contract(users: UserStore) -> None:
    assert users.find_user("c1") is None
    with pytest.raises(UnknownUser):
        users.get_user("c1")
    first = users.upsert_credentials("c1", url_ct="u1", key_ct="k1")
    assert first.connection_status == "pending" and first.deployment_status == "not_started"
    users.upsert_credentials("c1", url_ct="u2", key_ct="k2")
    assert users.get_user("c1").url_ct == "u2"
    users.set_connection_status("c1", "connected", tested_at=5.0)
    users.upsert_credentials("c3", url_ct="u", key_ct="k")
    users.set_connection_status("c3", "disconnected")
    with pytest.raises(InvalidTransition):
        users.set_connection_status("c3", "connected")
    users.set_deployment("c1", status="deployed", version="0002", fingerprint="f")
    users.set_entitled("c2", True)
    assert [u.user_id for u in users.list_users(connection_status=["connected"])] == ["c1"]
    assert {u.user_id for u in users.list_users()} == {"c1", "c2", "c3"}
    assert not users.replace_ciphertexts("c1", url_ct="x", key_ct="y",
                                         expect_url_ct="u1", expect_key_ct="k1")
    assert users.replace_ciphertexts("c1", url_ct="x", key_ct="y",
                                     expect_url_ct="u2", expect_key_ct="k2")
    got = users.get_user("c1")
    assert (got.url_ct, got.schema_version, got.last_connection_test) == ("x", "0002", 5.0)


def _journal_contract(journal: JournalStore) -> None:
    steps = [JournalEntry("c1", "p", f"s{i}", i, "backfill") for i in range(2)]
    journal.journal_plan(steps)
    journal.journal_plan(steps)  # idempotent
    assert [e.step_id for e in journal.journal("c1", "p")] == ["s0", "s1"]
    journal.journal_update("c1", "p", "s0", status="running", cursor="c", processed=3,
                           bump_attempts=True)
    done = journal.journal_update("c1", "p", "s0", status="completed")
    assert (done.status, done.cursor, done.processed, done.attempts) == ("completed", "c", 3, 1)


def _lease_contract(leases: LeaseStore) -> None:
    leases.acquire_lease("d", "a", 30)
    with pytest.raises(LeaseHeld):
        leases.acquire_lease("d", "b", 30)
    leases.renew_lease("d", "a", 30)
    leases.release_lease("d", "a")
    assert leases.acquire_lease("d", "b", 30).holder == "b"


def _audit_contract(audit: AuditLog) -> None:
    audit.audit("c9", "one", {"n": 1})
    audit.audit("c9", "two")
    assert [(e.event, e.detail) for e in audit.audit_log("c9")] == [("one", {"n": 1}),
                                                                     ("two", {})]


def _rollout_contract(rollouts: RolloutStore) -> None:
    assert rollouts.load_rollout("r-1") is None
    rollouts.save_rollout("r-1", {"status": "running"})
    rollouts.save_rollout("r-1", {"status": "completed"})
    assert rollouts.load_rollout("r-1") == {"status": "completed"}
    assert [r["rollout_id"] for r in rollouts.list_rollouts()] == ["r-1"]
    # a record with deployments: its rows are saved one at a time, counted, paged
    rollouts.save_rollout("r-2", {"status": "running", "waves": [
        {"name": "100%", "deployments": ["a", "b"]}], "deployments": {
        "a": {"status": "pending", "wave": "100%"}, "b": {"status": "pending", "wave": "100%"}}})
    rollouts.save_deployment_row("r-2", "b", "succeeded", {"wave": "100%", "deploys": 2})
    assert rollouts.rollout_counts("r-2") == {"pending": 1, "succeeded": 1}
    assert [r.user_id for r in rollouts.rollout_rows("r-2", statuses=["succeeded"])] == ["b"]
    assert rollouts.rollout_row("r-2", "b").to_dict() == {
        "user_id": "b", "status": "succeeded", "wave": "100%", "deploys": 2}
    rollouts.save_rollout_header("r-2", {"status": "completed", "waves": [
        {"name": "100%", "size": 2}]})
    assert rollouts.load_rollout("r-2") == {
        "status": "completed", "waves": [{"name": "100%", "deployments": ["a", "b"]}],
        "deployments": {"a": {"user_id": "a", "status": "pending", "wave": "100%"},
                        "b": {"user_id": "b", "status": "succeeded", "wave": "100%",
                              "deploys": 2}},
        "updated_at": rollouts.rollout_row("r-2", "b").updated_at}
    assert "deployments" not in rollouts.list_rollouts()[0]


def _progress_contract(progress: ProgressStore) -> None:
    assert progress.load_progress("disconnect", "c1") is None
    progress.save_progress("disconnect", "c1", {"state": "running", "tables": {"a": 1}})
    progress.save_progress("copy_from_main", "c1", {"state": "done"})
    progress.save_progress("disconnect", "c1", {"state": "done", "tables": {"a": 2}})
    assert progress.load_progress("disconnect", "c1") == {"state": "done", "tables": {"a": 2}}
    assert progress.load_progress("copy_from_main", "c1") == {"state": "done"}
    assert progress.load_progress("copy_from_main", "c2") is None


CONTRACTS = {UserStore: _user_contract, JournalStore: _journal_contract,
             LeaseStore: _lease_contract, AuditLog: _audit_contract,
             RolloutStore: _rollout_contract, ProgressStore: _progress_contract}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.__name__)
def test_role_contract(store: Any, role: type) -> None:
    assert set(CONTRACTS) == set(ROLES)
    if role is JournalStore:  # journal rows belong to a user
        store.upsert_credentials("c1", url_ct="u", key_ct="k")
    CONTRACTS[role](store)


def test_progress_is_kept_apart_from_rollouts(store: Any) -> None:
    store.save_rollout("r-1", {"status": "running", "deployments": {}})
    store.save_progress("disconnect", "u1", {"kind": "disconnect", "state": "running"})
    store.save_progress("copy_from_main", "u1", {"kind": "connect-copy", "state": "running"})
    assert [r["rollout_id"] for r in store.list_rollouts(limit=50)] == ["r-1"]
    for old_id in ("u1", "disconnect:u1", "connect-copy:u1"):
        assert store.load_rollout(old_id) is None
    store.save_rollout("u1", {"status": "completed"})  # same key, other store: no clash
    assert store.load_progress("disconnect", "u1") == {"kind": "disconnect",
                                                       "state": "running"}
    with pytest.raises(RegistryError, match="unknown progress kind"):
        store.save_progress("rollout", "u1", {})  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="unknown progress kind"):
        store.load_progress("connect-copy", "u1")  # type: ignore[arg-type]
