"""The registry's own schema under Alembic (``engine.registry.schema_upgrade``), on SQLite and
PostgreSQL: a new registry is created at the head; a file an older engine built at any
version upgrades in place with its rows; a newer schema is refused before anything is
written; a shared PostgreSQL registry is upgraded only by ``byod registry upgrade``; both
dialects hold the same tables and columns.

"Older" and "newer" on PostgreSQL (whose history starts at schema 7) are made with a future
engine: a copy of the script directory plus a revision ``0008``, and ``HEAD`` raised to 8.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner, Result

from engine.cli.main import cli
from engine.config import registry_display
from engine.errors import RegistryError
from engine.registry import migrations, schema_upgrade
from engine.registry.ddl import MIGRATIONS, SCHEMA_VERSION
from engine.registry.schema_upgrade import current, ensure_current, revision_id, upgrade
from engine.registry.sqlite import SqliteStore

CTX = mp.get_context("fork")
HEAD_ID = revision_id(SCHEMA_VERSION)


# -- helpers -------------------------------------------------------------------------------------

def old_engine_file(path: Path, version: int, *, bookkeeping: bool = True) -> None:
    """A registry as the engine before Alembic left it at ``version``: its DDL loop, run
    with raw sqlite3 (the ``schema_migrations`` table too, unless ``bookkeeping`` is off,
    as some files of the first engines lack it)."""

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    if bookkeeping:
        conn.execute("CREATE TABLE schema_migrations "
                     "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    for v in range(1, version + 1):
        for statement in MIGRATIONS[v - 1].split(";"):
            if statement.strip():
                conn.execute(statement)
        if bookkeeping:
            conn.execute("INSERT INTO schema_migrations VALUES (?, 1.0)", (v,))
        conn.execute(f"PRAGMA user_version = {v}")
    conn.close()


def schema_of(path: Path) -> list[tuple[str, str, str, str]]:
    """Every table, index and trigger of a file with its SQL text, Alembic's own table
    left out."""

    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute(
            "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master "
            "WHERE tbl_name != 'alembic_version'").fetchall())
    finally:
        conn.close()


def raw_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def byod(location: str | Path, *args: str, tmp_path: Path) -> Result:
    config = tmp_path / "byod.toml"
    config.write_text("")
    env = {"BYOD_REGISTRY": str(location), "BYOD_CONFIG": str(config)}
    return CliRunner().invoke(cli, ["registry", *args], env=env)


@pytest.fixture(scope="module")
def built_by_old_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("old") / "v7.sqlite3"
    old_engine_file(path, SCHEMA_VERSION)
    return path


# -- the script directory ------------------------------------------------------------------------

def test_the_revisions_are_one_chain_ending_at_schema_version() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations.DIRECTORY))
    chain = [s.revision for s in script.walk_revisions("base", "heads")]
    assert schema_upgrade.script_heads() == (HEAD_ID,)
    assert list(reversed(chain)) == [revision_id(n) for n in range(1, SCHEMA_VERSION + 1)]
    assert len(MIGRATIONS) == 7 <= SCHEMA_VERSION  # the pre-Alembic DDL is frozen at 7


# -- SQLite ----------------------------------------------------------------------------------------

def test_a_new_file_is_at_head_and_has_the_old_engines_schema(
        tmp_path: Path, built_by_old_engine: Path) -> None:
    path = tmp_path / "new" / "registry.sqlite3"
    with SqliteStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
    assert raw_rows(path, "SELECT version_num FROM alembic_version") == [(HEAD_ID,)]
    assert raw_rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert [r[0] for r in raw_rows(path, "SELECT version FROM schema_migrations ORDER BY 1")] \
        == list(range(1, SCHEMA_VERSION + 1))
    assert schema_of(path) == schema_of(built_by_old_engine)
    assert current(path) == SCHEMA_VERSION
    assert upgrade(path) == (SCHEMA_VERSION, SCHEMA_VERSION)  # nothing to do


def _fill(path: Path, version: int) -> None:
    """Rows every version has, plus version-1 copy progress kept as a prefixed rollout."""

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO users (user_id, url_ct, key_ct, connection_status, entitled, "
                 "created_at, updated_at) VALUES ('alice', 'u-ct', 'k-ct', 'connected', 1, "
                 "10.0, 11.0)")
    conn.execute("INSERT INTO audit (at, user_id, event, detail) VALUES "
                 "(12.0, 'alice', 'hello', '{\"n\": 1}')")
    conn.execute("INSERT INTO leases (deployment, holder, acquired_at, expires_at) VALUES "
                 "('alice', 'old-runner', 1.0, 2.0)")
    conn.execute("INSERT INTO rollouts (rollout_id, data, created_at, updated_at) VALUES "
                 "('r-1', '{\"rollout_id\": \"r-1\"}', 3.0, 4.0)")
    if version == 1:
        conn.execute("INSERT INTO rollouts VALUES ('disconnect:alice', "
                     "'{\"kind\": \"disconnect\", \"state\": \"running\"}', 5.0, 6.0)")
    conn.close()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_a_file_of_an_older_engine_is_adopted_and_upgraded_with_its_rows(
        tmp_path: Path, built_by_old_engine: Path, version: int) -> None:
    path = tmp_path / f"v{version}.sqlite3"
    old_engine_file(path, version)
    _fill(path, version)
    assert current(path) == version
    with SqliteStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION and store.verify() == []
        alice = store.get_user("alice")
        assert (alice.url_ct, alice.key_ct, alice.connection_status, alice.entitled,
                alice.created_at) == ("u-ct", "k-ct", "connected", True, 10.0)
        assert [(e.event, e.detail) for e in store.audit_log("alice")] == [("hello", {"n": 1})]
        assert store.list_leases()[0].holder == "old-runner"
        assert store.load_rollout("r-1") == {"rollout_id": "r-1"}
        if version == 1:
            assert store.load_progress("disconnect", "alice") == {"kind": "disconnect",
                                                                  "state": "running"}
    assert raw_rows(path, "SELECT version_num FROM alembic_version") == [(HEAD_ID,)]
    assert [r[0] for r in raw_rows(path, "SELECT version FROM schema_migrations ORDER BY 1")] \
        == list(range(1, SCHEMA_VERSION + 1))
    assert schema_of(path) == schema_of(built_by_old_engine)


def test_a_file_without_the_bookkeeping_table_is_upgraded(tmp_path: Path,
                                                          built_by_old_engine: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    old_engine_file(path, 2, bookkeeping=False)
    SqliteStore(path).close()
    assert raw_rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert [r[0] for r in raw_rows(path, "SELECT version FROM schema_migrations ORDER BY 1")] \
        == list(range(3, SCHEMA_VERSION + 1))
    assert schema_of(path) == schema_of(built_by_old_engine)


def test_a_failing_revision_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "v5.sqlite3"
    old_engine_file(path, 5)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE api_tokens (x TEXT)")  # revision 6 creates it: it fails
    conn.commit()
    conn.close()
    before = schema_of(path)
    with pytest.raises(sqlite3.OperationalError, match="api_tokens already exists"):
        SqliteStore(path)
    assert schema_of(path) == before  # not even the adoption stamp stayed
    assert raw_rows(path, "PRAGMA user_version") == [(5,)]
    assert not raw_rows(path, "SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'")


def _open_and_write(path: str, barrier: Any, name: str) -> None:
    barrier.wait(timeout=30)
    with SqliteStore(path) as store:
        store.audit("x", "hello", {"by": name})


@pytest.mark.timeout(180)
def test_processes_opening_a_new_file_at_once_create_it_once(tmp_path: Path) -> None:
    path = str(tmp_path / "race" / "r.sqlite3")
    barrier = CTX.Barrier(4)
    procs = [CTX.Process(target=_open_and_write, args=(path, barrier, f"p{i}"))
             for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, f"child exited with {p.exitcode}"
    assert raw_rows(Path(path), "SELECT version_num FROM alembic_version") == [(HEAD_ID,)]
    assert raw_rows(Path(path), "SELECT count(*) FROM schema_migrations") == [(SCHEMA_VERSION,)]
    with SqliteStore(path) as store:
        assert sorted(e.detail["by"] for e in store.audit_log("x")) == ["p0", "p1", "p2", "p3"]


@pytest.mark.parametrize("newer", [
    "UPDATE alembic_version SET version_num = '0008'",
    "UPDATE alembic_version SET version_num = 'f3a9c2d1e0b7'",  # a revision nobody here knows
    f"PRAGMA user_version = {SCHEMA_VERSION + 1}",
    "DROP TABLE alembic_version; PRAGMA user_version = 99",  # an old engine's newer file
])
def test_a_newer_schema_is_refused_without_writing(tmp_path: Path, newer: str) -> None:
    path = tmp_path / "r.sqlite3"
    SqliteStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(newer)
    conn.close()
    digest, schema = file_digest(path), schema_of(path)
    with pytest.raises(RegistryError, match=rf"newer than this engine understands "
                                            rf"\({SCHEMA_VERSION}\); upgrade the engine"):
        SqliteStore(path)
    with pytest.raises(RegistryError, match="newer than this engine"):
        upgrade(path)
    result = byod(path, "upgrade", "--check", tmp_path=tmp_path)
    assert result.exit_code == 1 and "newer than this engine" in result.output
    assert file_digest(path) == digest and schema_of(path) == schema


def test_opening_a_current_file_imports_neither_alembic_nor_sqlalchemy(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    SqliteStore(path).close()
    code = ("import sys; from engine.registry.sqlite import SqliteStore; "
            f"SqliteStore({str(path)!r}).close(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('alembic', 'sqlalchemy', 'mako')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_registry_upgrade_check_then_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "v5.sqlite3"
    old_engine_file(path, 5)
    digest = file_digest(path)

    checked = byod(path, "upgrade", "--check", tmp_path=tmp_path)
    assert checked.exit_code == 1, checked.output
    assert f"schema 5, this engine needs schema {SCHEMA_VERSION}" in checked.output
    assert "byod registry upgrade" in checked.output
    data = json.loads(byod(path, "upgrade", "--check", "--json", tmp_path=tmp_path).output)
    assert data == {"registry": str(path), "check": True, "from": 5, "to": SCHEMA_VERSION,
                    "up_to_date": False, "upgraded": False}
    assert file_digest(path) == digest  # --check writes nothing

    done = byod(path, "upgrade", tmp_path=tmp_path)
    assert done.exit_code == 0, done.output
    assert f"upgraded schema 5 -> {SCHEMA_VERSION}" in done.output
    assert current(path) == SCHEMA_VERSION
    again = byod(path, "upgrade", "--json", tmp_path=tmp_path)
    assert json.loads(again.output) == {
        "registry": str(path), "check": False, "from": SCHEMA_VERSION, "to": SCHEMA_VERSION,
        "up_to_date": True, "upgraded": False}
    ok = byod(path, "upgrade", "--check", tmp_path=tmp_path)
    assert ok.exit_code == 0 and "nothing to do" in ok.output
    checked = byod(path, "check", tmp_path=tmp_path)
    assert checked.exit_code == 0 and f"revision {HEAD_ID}" in checked.output


def test_registry_upgrade_never_creates_a_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "r.sqlite3"
    for args in (("upgrade",), ("upgrade", "--check")):
        result = byod(path, *args, tmp_path=tmp_path)
        assert result.exit_code == 1 and "there is no registry" in result.output
    assert current(path) is None and not path.parent.exists()


def test_registry_upgrade_on_main_says_what_upgrades_it(tmp_path: Path) -> None:
    result = byod("convex:main", "upgrade", "--check", tmp_path=tmp_path)
    assert result.exit_code == 1 and "byod deploy head --target main" in result.output


# -- a future engine: one more revision --------------------------------------------------------

PROBE_REVISION = '''"""A revision of a future engine (tests only)."""

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from alembic import op

    op.get_bind().exec_driver_sql("CREATE TABLE upgrade_probe (id INTEGER PRIMARY KEY)")
'''


@pytest.fixture(scope="module")
def future_scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("future") / "migrations"
    shutil.copytree(migrations.DIRECTORY, target,
                    ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    (target / "versions" / "0008_probe.py").write_text(PROBE_REVISION)
    return target


@pytest.fixture
def future_engine(future_scripts: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This engine, one revision later (schema 8)."""

    with monkeypatch.context() as m:
        m.setattr(migrations, "DIRECTORY", future_scripts)
        m.setattr(schema_upgrade, "HEAD", SCHEMA_VERSION + 1)
        m.setattr(schema_upgrade, "_KNOWN",
                  {revision_id(n): n for n in range(1, SCHEMA_VERSION + 2)})
        yield


def test_a_future_engine_upgrades_sqlite_on_open_and_this_one_then_refuses(
        tmp_path: Path, future_scripts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.sqlite3"
    SqliteStore(path).close()
    with monkeypatch.context() as m:
        m.setattr(migrations, "DIRECTORY", future_scripts)
        m.setattr(schema_upgrade, "HEAD", SCHEMA_VERSION + 1)
        m.setattr(schema_upgrade, "_KNOWN",
                  {revision_id(n): n for n in range(1, SCHEMA_VERSION + 2)})
        assert ensure_current(path, auto=True) == SCHEMA_VERSION + 1
    assert raw_rows(path, "SELECT version_num FROM alembic_version") == [("0008",)]
    assert raw_rows(path, "SELECT count(*) FROM upgrade_probe") == [(0,)]
    with pytest.raises(RegistryError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        SqliteStore(path)


# -- PostgreSQL ------------------------------------------------------------------------------------

def _pg_tables(url: str) -> dict[str, dict[str, bool]]:
    """table -> column -> nullable, of the registry's tables in a PostgreSQL database."""

    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, is_nullable = 'YES' FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name != 'alembic_version'"
        ).fetchall()
    out: dict[str, dict[str, bool]] = {}
    for table, column, nullable in rows:
        out.setdefault(table, {})[column] = nullable
    return out


def _sqlite_tables(path: Path) -> dict[str, dict[str, bool]]:
    """The same of a SQLite file (a primary key column is NOT NULL, as PostgreSQL makes it;
    SQLite's own bookkeeping tables left out)."""

    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN "
            "('alembic_version', 'schema_migrations', 'sqlite_sequence')")]
        return {name: {r[1]: not (r[3] or r[5]) for r in
                       conn.execute(f"PRAGMA table_info({name})")} for name in names}
    finally:
        conn.close()


def _pg_revision(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def _pg_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def test_postgres_empty_database_gets_the_schema_with_sqlites_tables(
        pg_database: str, pg_server: Any, built_by_old_engine: Path, tmp_path: Path) -> None:
    from engine.registry.postgres import PostgresStore

    assert current(pg_database) is None
    with PostgresStore(pg_database) as store:
        assert store.schema_version() == SCHEMA_VERSION
    assert _pg_revision(pg_database) == [HEAD_ID]
    assert current(pg_database) == SCHEMA_VERSION
    assert _pg_tables(pg_database) == _sqlite_tables(built_by_old_engine)
    PostgresStore(pg_database).close()  # reopening changes nothing
    assert _pg_revision(pg_database) == [HEAD_ID]
    assert upgrade(pg_database) == (SCHEMA_VERSION, SCHEMA_VERSION)
    checked = byod(pg_database, "check", "--json", tmp_path=tmp_path)
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["revision"] == HEAD_ID
    assert pg_server.password not in checked.output


def _pg_open(url: str, barrier: Any) -> None:
    from engine.registry.postgres import PostgresStore

    barrier.wait(timeout=30)
    with PostgresStore(url) as store:
        store.audit("x", "hello", {})


@pytest.mark.timeout(180)
def test_postgres_processes_opening_an_empty_database_at_once(pg_database: str) -> None:
    barrier = CTX.Barrier(3)
    procs = [CTX.Process(target=_pg_open, args=(pg_database, barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, f"child exited with {p.exitcode}"
    assert _pg_revision(pg_database) == [HEAD_ID]


def test_postgres_older_schema_is_refused_until_registry_upgrade(
        pg_database: str, pg_server: Any, future_engine: None, tmp_path: Path) -> None:
    from engine.registry.postgres import PostgresStore

    # made by this engine (schema 7), opened by the future one (schema 8)
    ensure_current(pg_database, auto=False)  # an empty database: created at once...
    _pg_execute(pg_database, "UPDATE alembic_version SET version_num = '0007'")
    _pg_execute(pg_database, "DROP TABLE upgrade_probe")  # ...as the older engine left it
    with pytest.raises(RegistryError) as refused:
        PostgresStore(pg_database)
    message = str(refused.value)
    assert f"has schema {SCHEMA_VERSION}, this engine needs {SCHEMA_VERSION + 1}: run " \
           "`byod registry upgrade`" in message
    assert pg_server.password not in message
    assert _pg_revision(pg_database) == [HEAD_ID]  # refused: nothing written

    checked = byod(pg_database, "upgrade", "--check", tmp_path=tmp_path)
    assert checked.exit_code == 1, checked.output
    assert f"schema {SCHEMA_VERSION}, this engine needs schema {SCHEMA_VERSION + 1}" \
        in checked.output
    done = byod(pg_database, "upgrade", "--json", tmp_path=tmp_path)
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert (data["from"], data["to"], data["upgraded"]) == (SCHEMA_VERSION,
                                                           SCHEMA_VERSION + 1, True)
    assert data["registry"] == registry_display(pg_database)
    assert data["registry"].endswith("/" + pg_database.rsplit("/", 1)[1])
    for result in (checked, done):
        assert pg_server.password not in result.output
    assert _pg_revision(pg_database) == ["0008"]
    with PostgresStore(pg_database):  # the future engine opens it now
        pass
    text = byod(pg_database, "upgrade", tmp_path=tmp_path)
    assert text.exit_code == 0 and "nothing to do" in text.output


def test_postgres_newer_schema_is_refused_without_writing(
        pg_database: str, pg_server: Any, future_scripts: Path,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from engine.registry.postgres import PostgresStore

    with monkeypatch.context() as m:  # a future engine made it
        m.setattr(migrations, "DIRECTORY", future_scripts)
        m.setattr(schema_upgrade, "HEAD", SCHEMA_VERSION + 1)
        m.setattr(schema_upgrade, "_KNOWN",
                  {revision_id(n): n for n in range(1, SCHEMA_VERSION + 2)})
        PostgresStore(pg_database).close()
    assert _pg_revision(pg_database) == ["0008"]
    tables = _pg_tables(pg_database)
    with pytest.raises(RegistryError, match=rf"newer than this engine understands "
                                            rf"\({SCHEMA_VERSION}\); upgrade the engine"):
        PostgresStore(pg_database)
    for args in (("upgrade",), ("upgrade", "--check")):
        result = byod(pg_database, *args, tmp_path=tmp_path)
        assert result.exit_code == 1 and "newer than this engine" in result.output
        assert pg_server.password not in result.output
    assert _pg_revision(pg_database) == ["0008"] and _pg_tables(pg_database) == tables


def test_postgres_tables_without_a_revision_are_refused(pg_database: str) -> None:
    _pg_execute(pg_database, "CREATE TABLE users (user_id TEXT PRIMARY KEY)")
    with pytest.raises(RegistryError, match="registry tables but no schema version"):
        ensure_current(pg_database, auto=False)


def test_postgres_unreachable_names_no_password(pg_server: Any) -> None:
    url = f"postgresql://byod:{pg_server.password}@127.0.0.1:1/nothing"
    started = time.monotonic()
    with pytest.raises(RegistryError) as refused:
        upgrade(url, busy_timeout_s=2)
    assert time.monotonic() - started < 30
    assert pg_server.password not in str(refused.value)
    assert "127.0.0.1:1/nothing" in str(refused.value)
