"""PostgresStore's own: concurrent writers (threads, and separate OS processes) decide on
locked rows — one lease holder per key, rollout counts that stay exact, no lost update —,
errors that name the server but never the password, ``byod registry check`` on a server,
and a forked child that reconnects without ending its parent's session.

The roles themselves run on both backends in ``test_store_contract.py``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.errors import LeaseHeld, RegistryError
from engine.ports.registry import JournalEntry
from engine.registry.ddl import SCHEMA_VERSION
from engine.registry.postgres import FAST_S, PostgresStore, pg_sql

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 3
WAIT_S = 60.0


@pytest.fixture()
def url(pg_database: str) -> str:
    return pg_database


@pytest.fixture()
def pg(url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(url)
    yield store
    store.close()


def _password(url: str) -> str:
    password = urlsplit(url).password
    assert password and len(password) >= 16, "the fixture's role has a real password"
    return password


def _children(code: str, url: str, tmp_path: Path, n: int = PROCESSES) -> list[Any]:
    """Run ``code`` in ``n`` fresh interpreters at once (each waits for a go file, so they
    start together); each prints one JSON document. Returns the documents. No child exits
    before all have run ``code``: a lease whose holder process has died is rightly taken
    over, and an early exit would turn a late contender's loss into a takeover."""

    go = tmp_path / "go"
    script = textwrap.dedent("""
        import json, os, sys, time
        from engine.registry.postgres import PostgresStore
        url, go, me = sys.argv[1], sys.argv[2], int(sys.argv[3])
        store = PostgresStore(url)
        deadline = time.monotonic() + 60
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                raise SystemExit("never told to go")
            time.sleep(0.005)
    """) + textwrap.dedent(code) + textwrap.dedent(f"""
        open(go + f".done{{me}}", "w").close()
        deadline = time.monotonic() + 60
        while sum(os.path.exists(go + f".done{{i}}") for i in range({n})) < {n}:
            if time.monotonic() > deadline:
                raise SystemExit("the others never finished")
            time.sleep(0.005)
        store.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, url, str(go), str(i)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(n)]
    time.sleep(0.3)
    go.write_text("go")
    out = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


# -- the placeholder translation ------------------------------------------------------------

def test_placeholders_become_psycopg_parameters() -> None:
    assert pg_sql("SELECT a FROM t WHERE b = ? AND c LIKE '50%?' AND d = ?") == \
        "SELECT a FROM t WHERE b = %s AND c LIKE '50%%?' AND d = %s"
    assert pg_sql('SELECT "odd?name" FROM t WHERE x = ?') == \
        'SELECT "odd?name" FROM t WHERE x = %s'


def test_text_with_percent_and_question_marks_round_trips(pg: PostgresStore) -> None:
    pg.save_progress("disconnect", "u%1?", {"note": "100% done? yes"})
    assert pg.load_progress("disconnect", "u%1?") == {"note": "100% done? yes"}


# -- concurrent writers ----------------------------------------------------------------------

def test_threads_racing_for_one_lease_leave_one_holder(url: str) -> None:
    stores = [PostgresStore(url) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    won: list[str] = []
    lost: list[str] = []

    def race(i: int) -> None:
        barrier.wait(timeout=WAIT_S)
        for key in range(10):
            try:
                stores[i].acquire_lease(f"dep-{key}", f"t{i}", 60)
                won.append(f"dep-{key}")
            except LeaseHeld:
                lost.append(f"dep-{key}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    try:
        assert sorted(won) == [f"dep-{k}" for k in range(10)]  # one winner per key
        assert len(lost) == 10 * (len(stores) - 1)
        holders = {lease.deployment: lease.holder for lease in stores[0].list_leases()}
        assert len(holders) == 10
    finally:
        for s in stores:
            s.close()


def test_processes_racing_for_leases_leave_one_holder_each(url: str, tmp_path: Path) -> None:
    results = _children("""
        from engine.errors import LeaseHeld
        won = []
        for key in range(25):
            try:
                store.acquire_lease(f"dep-{key}", f"p{me}", 60)
                won.append(key)
            except LeaseHeld:
                pass
        print(json.dumps(won))
    """, url, tmp_path)
    winners: dict[int, int] = {}
    for proc, won in enumerate(results):
        for key in won:
            assert key not in winners, f"dep-{key} won by p{winners[key]} and p{proc}"
            winners[key] = proc
    assert sorted(winners) == list(range(25))
    with PostgresStore(url) as store:
        assert {lease.deployment: lease.holder for lease in store.list_leases()} == {
            f"dep-{k}": f"p{p}" for k, p in winners.items()}
        assert not [e for e in store.audit_log(limit=1000) if e.event == "lease_taken_over"]


def test_processes_saving_rows_at_once_keep_the_counts_exact(url: str,
                                                               tmp_path: Path) -> None:
    users = [f"u{i:02d}" for i in range(20)]
    with PostgresStore(url) as store:
        store.save_rollout("r1", {"status": "running", "waves": [
            {"name": "all", "deployments": users}], "deployments": {
            u: {"status": "pending", "wave": "all"} for u in users}})
    results = _children("""
        import random
        rnd = random.Random(me)
        users = [f"u{i:02d}" for i in range(20)]
        saved = 0
        for n in range(60):
            user = rnd.choice(users)
            store.save_deployment_row("r1", user, rnd.choice(
                ["running", "succeeded", "failed", "pending"]), {"wave": "all", "n": n})
            saved += 1
        for i in range(5):  # rows the record did not hold: appended, one position each
            store.save_deployment_row("r1", f"extra-{i}", "pending", {"by": me})
            store.save_deployment_row("r1", f"new-{me}-{i}", "succeeded", {"by": me})
        print(json.dumps(saved))
    """, url, tmp_path)
    assert results == [60] * PROCESSES
    with PostgresStore(url) as store:
        rows = store.rollout_rows("r1")
        actual: dict[str, int] = {}
        for row in rows:
            actual[row.status] = actual.get(row.status, 0) + 1
        assert store.rollout_counts("r1") == dict(sorted(actual.items()))
        assert len(rows) == 20 + 5 + 5 * PROCESSES
        assert len({r.position for r in rows}) == len(rows)  # no two rows share a place
        assert store.verify() == []


def test_concurrent_updates_of_one_row_are_never_lost(url: str) -> None:
    """A journal step's attempts, and a job's events (read, appended to, written back):
    every writer's change is kept."""

    with PostgresStore(url) as store:
        store.upsert_credentials("u1", url_ct="a", key_ct="b")
        store.journal_plan([JournalEntry("u1", "p", "s0", 0, "backfill")])
        store.journal_update("u1", "p", "s0", status="running")
        store.create_job("j1", "connect", "u1")
        assert store.claim_job("worker", 60) is not None
    stores = [PostgresStore(url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))

    def bump(store: PostgresStore) -> None:
        barrier.wait(timeout=WAIT_S)
        for n in range(10):
            store.journal_update("u1", "p", "s0", bump_attempts=True)
            store.job_event("j1", "worker", "copying", f"event {n}")

    threads = [threading.Thread(target=bump, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    try:
        assert stores[0].journal("u1", "p")[0].attempts == 60
        job = stores[0].get_job("j1")
        assert job is not None
        assert len([e for e in job.progress if e["stage"] == "copying"]) == 60
    finally:
        for s in stores:
            s.close()


def test_a_status_transition_is_decided_on_the_row_as_it_is(url: str) -> None:
    """Many writers move one user pending -> connected at once: the transition is made (and
    audited) once; the others see 'connected' and make the allowed connected -> connected."""

    with PostgresStore(url) as store:
        store.upsert_credentials("u1", url_ct="a", key_ct="b")
    stores = [PostgresStore(url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def connect(store: PostgresStore) -> None:
        barrier.wait(timeout=WAIT_S)
        try:
            store.set_connection_status("u1", "connected")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=connect, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    try:
        assert errors == []
        changes = [e for e in stores[0].audit_log("u1") if e.event == "connection_status"]
        assert [(e.detail["from"], e.detail["to"]) for e in changes] == [
            ("pending", "connected")]
    finally:
        for s in stores:
            s.close()


def test_one_open_job_per_user_even_when_created_at_once(url: str) -> None:
    from engine.ports.serve import JobConflict

    stores = [PostgresStore(url) for _ in range(5)]
    barrier = threading.Barrier(len(stores))
    made: list[str] = []

    def create(i: int) -> None:
        barrier.wait(timeout=WAIT_S)
        try:
            made.append(stores[i].create_job(f"j{i}", "connect", "u1", exclusive=True).job_id)
        except JobConflict:
            pass

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    try:
        assert len(made) == 1
    finally:
        for s in stores:
            s.close()


# -- the connection pool ---------------------------------------------------------------------

def test_threads_of_one_store_write_at_once_on_their_own_connections(url: str) -> None:
    """Four threads are inside a write transaction at the same moment (each waits for the
    others there): one store lends each its own connection instead of queueing them."""

    with PostgresStore(url, pool_size=4) as store:
        inside = threading.Barrier(4)
        backends: list[int] = []
        errors: list[BaseException] = []

        def write(i: int) -> None:
            try:
                with store._write() as conn:
                    backends.append(int(conn.execute("SELECT pg_backend_pid()")
                                        .fetchone()[0]))
                    conn.execute("INSERT INTO progress (kind, user_id, doc, updated_at) "
                                 "VALUES ('disconnect', ?, '{}', 0)", (f"u{i}",))
                    inside.wait(timeout=WAIT_S)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        assert not errors, errors
        assert len(set(backends)) == 4
        assert all(store.load_progress("disconnect", f"u{i}") == {} for i in range(4))


def test_a_read_inside_a_write_sees_that_write(pg: PostgresStore) -> None:
    with pg._write() as conn:
        conn.execute("INSERT INTO progress (kind, user_id, doc, updated_at) VALUES "
                     "('disconnect', 'u1', '{}', 0)")
        # the same transaction, not yet committed
        assert pg.load_progress("disconnect", "u1") == {}
        with pg._write():  # a nested write is a savepoint on the same connection
            pg.save_progress("disconnect", "u2", {"n": 2})
    assert pg.load_progress("disconnect", "u1") == {}
    assert pg.load_progress("disconnect", "u2") == {"n": 2}


def test_a_call_finding_every_pooled_connection_busy_makes_its_own(url: str) -> None:
    """With the pool's one connection held by a write, another thread's call waits about
    ``FAST_S``, then runs on a connection of its own (closed after it), instead of
    failing or waiting out the pool's timeout."""

    with PostgresStore(url, pool_size=1) as store:
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store._write() as conn:
                conn.execute("INSERT INTO progress (kind, user_id, doc, updated_at) "
                             "VALUES ('disconnect', 'held', '{}', 0)")
                held.set()
                release.wait(WAIT_S)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert held.wait(WAIT_S)
            t0 = time.monotonic()
            store.save_progress("disconnect", "u1", {"n": 1})
            assert time.monotonic() - t0 >= FAST_S * 0.9
            assert store.load_progress("disconnect", "held") is None  # not committed yet
        finally:
            release.set()
            holder.join(WAIT_S)
        assert store.load_progress("disconnect", "u1") == {"n": 1}
        assert store.load_progress("disconnect", "held") == {}


def test_after_an_outage_the_pool_is_renewed_at_once(url: str, pg_server: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The server ends every session and refuses logins for a while (the pool's own
    attempts fail, backing off); calls meanwhile fail at once, naming the server and the
    reason; once logins work again the next call succeeds at once, on a new pool, without
    waiting for the old pool's next attempt (held back here for a minute)."""

    from psycopg_pool.base import AttemptWithBackoff

    monkeypatch.setattr(AttemptWithBackoff, "INITIAL_DELAY", 60.0)
    PostgresStore(url).close()  # the schema, owned by byod (the role below is dropped)

    database = url.rsplit("/", 1)[1]
    parts = urlsplit(url)
    with pg_server.member_role("byod_outage") as (role, password), \
            pg_server.admin() as admin:
        mine = f"postgresql://{role}:{password}@{parts.hostname}:{parts.port}/{database}"
        with PostgresStore(mine) as store:
            store.save_progress("disconnect", "before", {})
            first = store._pool
            admin.execute(f"ALTER ROLE {role} NOLOGIN")
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                          "usename = %s", (role,))
            failures = []
            for _ in range(3):
                t0 = time.monotonic()
                with pytest.raises(RegistryError) as caught:
                    store.save_progress("disconnect", "during", {})
                failures.append((time.monotonic() - t0, str(caught.value)))
            assert all(took < FAST_S + 5 for took, _ in failures), failures
            assert "not permitted to log in" in failures[-1][1], failures
            assert all(password not in text for _, text in failures)
            admin.execute(f"ALTER ROLE {role} LOGIN")
            t0 = time.monotonic()
            store.save_progress("disconnect", "after", {"ok": True})
            assert time.monotonic() - t0 < FAST_S + 5
            assert store._pool is not first
            assert store.load_progress("disconnect", "after") == {"ok": True}


def test_a_closed_store_reopens_on_its_next_call(url: str) -> None:
    store = PostgresStore(url)
    store.upsert_credentials("u1", url_ct="a", key_ct="b")
    store.close()
    try:
        assert store.find_user("u1") is not None
    finally:
        store.close()


def test_a_store_dropped_without_close_closes_its_connections(url: str,
                                                               pg_server: Any) -> None:
    import gc

    database = url.rsplit("/", 1)[1]
    for _ in range(5):
        store = PostgresStore(url)
        store.find_user("nobody")
        del store
    gc.collect()
    with pg_server.admin() as admin:
        deadline = time.monotonic() + 10
        while True:
            left = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                 "AND application_name = 'byod'", (database,)).fetchone()[0]
            if left == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert left == 0


def test_a_forked_child_reconnects_and_leaves_the_parents_session(pg: PostgresStore) -> None:
    pg.upsert_credentials("u1", url_ct="a", key_ct="b")
    pid = os.fork()
    if pid == 0:  # the child: its own connection, then exit without touching the parent's
        code = 1
        try:
            pg.set_entitled("u1", True)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pg.get_user("u1").entitled  # the parent's connection still works
    pg.set_entitled("u1", False)
    assert not pg.get_user("u1").entitled


# -- the schema and the check ------------------------------------------------------------

def test_an_empty_database_gets_the_schema_once(url: str) -> None:
    with PostgresStore(url) as first:
        assert first.schema_version() == SCHEMA_VERSION
        first.upsert_credentials("u1", url_ct="a", key_ct="b")
    with PostgresStore(url) as again:  # reopening changes nothing
        assert again.find_user("u1") is not None
        cols = {(r["column_name"], r["data_type"]) for r in again._read(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'leases'")}
        assert ("expires_at", "double precision") in cols  # never the 4-byte real


def test_verify_finds_damaged_documents_and_wrong_counts(pg: PostgresStore) -> None:
    assert pg.verify() == []
    pg.save_rollout("r1", {"status": "running", "deployments": {"a": {"status": "pending"}}})
    pg.save_progress("disconnect", "u1", {"state": "running"})
    with pg._write() as conn:
        conn.execute("UPDATE progress SET doc = 'not json' WHERE user_id = 'u1'")
        conn.execute("UPDATE rollout_counts SET n = 5 WHERE rollout_id = 'r1'")
    problems = pg.verify()
    assert any("progress disconnect:u1: doc is not JSON" in p for p in problems), problems
    assert any("rollout r1: its summary counts 5 pending" in p for p in problems), problems


def test_registry_check_on_a_server_names_it_without_the_password(url: str,
                                                                   tmp_path: Path) -> None:
    PostgresStore(url).close()
    config = tmp_path / "byod.toml"
    config.write_text("")
    env = {"BYOD_REGISTRY": url, "BYOD_CONFIG": str(config)}
    result = CliRunner().invoke(cli, ["registry", "check", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and data["schema_version"] == SCHEMA_VERSION
    assert _password(url) not in result.output
    shown = CliRunner().invoke(cli, ["config", "show", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert _password(url) not in shown.output and "127.0.0.1" in shown.output


# -- secrets and errors --------------------------------------------------------------------

def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_named_without_the_password() -> None:
    port = _closed_port()
    secret = "pw-unreachable-secret-1234"
    started = time.monotonic()
    with pytest.raises(RegistryError) as err:
        PostgresStore(f"postgresql://byod:{secret}@127.0.0.1:{port}/fleetdb",
                      connect_timeout_s=3)
    assert time.monotonic() - started < 15
    text = str(err.value)
    assert f"cannot reach the PostgreSQL registry at 127.0.0.1:{port}/fleetdb" in text
    assert secret not in text and secret not in repr(err.value)


def test_registry_check_on_an_unreachable_server_gives_a_server_hint(tmp_path: Path) -> None:
    secret = "pw-check-unreachable-4321"
    config = tmp_path / "byod.toml"
    config.write_text("")
    env = {"BYOD_REGISTRY": f"postgresql://byod:{secret}@127.0.0.1:{_closed_port()}/fleetdb",
           "BYOD_CONFIG": str(config)}
    result = CliRunner().invoke(cli, ["registry", "check"], env=env)
    assert result.exit_code == 1
    assert "cannot reach the PostgreSQL registry" in result.output
    assert "check the server and the credentials" in result.output
    assert "move the file aside" not in result.output  # a server has no file to set aside
    assert secret not in result.output


def test_a_wrong_password_is_refused_without_echoing_either(url: str) -> None:
    wrong = "pw-wrong-password-98765"
    bad = url.replace(f":{_password(url)}@", f":{wrong}@")
    with pytest.raises(RegistryError) as err:
        PostgresStore(bad, connect_timeout_s=5)
    text = str(err.value)
    assert "127.0.0.1" in text and urlsplit(url).path.lstrip("/") in text
    assert wrong not in text and _password(url) not in text


def test_the_password_never_appears_in_reprs_errors_or_logs(
        url: str, caplog: pytest.LogCaptureFixture) -> None:
    password = _password(url)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with PostgresStore(url) as store:
        texts.append(repr(store))
        store.add_token("t1", "app", "hash-1", ("read",))
        with pytest.raises(RegistryError) as err:  # a constraint the server refuses
            store.add_token("t2", "app", "hash-1", ("read",))
        texts += [str(err.value), repr(err.value)]
        assert "127.0.0.1" in str(err.value)
        with pytest.raises(RegistryError) as bad_sql:
            store._read("SELECT no_such_column FROM users")
        texts.append(str(bad_sql.value))
    from engine.config import EngineConfig, registry_display

    config = EngineConfig(registry_path=url)
    texts += [repr(config), str(config), registry_display(config)]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert password not in text, text
