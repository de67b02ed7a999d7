"""``byod registry copy``: a registry moved to another store arrives whole and unchanged
(users with their vault ciphertexts, journal, audit, rollouts with their rows and counts,
progress, alerts, tokens, jobs), the engine reads the copy as it read the original, and the
verification names any table whose count or checksum differs. Parametrized over the target
backends: SQLite always, PostgreSQL when the test cluster is available."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.commands.registry_file import copy_registry
from engine.commands.workspace import Workspace
from engine.config import EngineConfig, registry_display
from engine.errors import RegistryError
from engine.ports.registry import JournalEntry
from engine.registry import copy as copying
from engine.registry.ddl import SCHEMA_VERSION
from engine.registry.sqlite import SqliteStore
from engine.registry.tables import TABLE_NAMES, TABLES, RegistryTables, checksum, table
from engine.vault import FIELD_URL, Vault, generate_key

BACKENDS = ["sqlite", "postgresql"]
KEY = generate_key()
SECRET_URLS = {f"u{i}": f"https://tenant-{i}.convex.cloud" for i in range(5)}
SECRET_KEYS = {f"u{i}": f"prod:tenant-{i}|{'ab' * 20}{i}" for i in range(5)}


def open_location(location: str) -> Any:
    """A store at any registry location (the engine's own opener)."""

    from engine.registry.open import open_store

    return open_store(location)


# (source, target) backends: every direction once
PAIRS = [("sqlite", "sqlite"), ("sqlite", "postgresql"), ("postgresql", "sqlite"),
         ("postgresql", "postgresql")]


@pytest.fixture
def new_location(request: pytest.FixtureRequest,
                 tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Fresh, empty locations of a backend: a file path, or a new PostgreSQL database
    (dropped afterwards; skipped where the test cluster cannot run)."""

    made: list[tuple[Any, str]] = []
    numbers = itertools.count(1)

    def make(kind: str) -> str:
        if kind == "sqlite":
            return str(tmp_path / f"registry-{next(numbers)}" / "registry.sqlite3")
        server = request.getfixturevalue("pg_server")
        name = server.create_database()
        made.append((server, name))
        return str(server.url(name))

    yield make
    for server, name in made:
        server.drop_database(name)


@pytest.fixture
def target(request: pytest.FixtureRequest, new_location: Callable[[str], str]) -> str:
    """An empty location of the backend the test is parametrized with (default SQLite)."""

    return new_location(getattr(request, "param", "sqlite"))


class PastClock:
    """A day ago, one second further at every call: every row has its own timestamp."""

    def __init__(self) -> None:
        self.now = time.time() - 86_400.0 + 0.123456789

    def __call__(self) -> float:
        self.now += 1.000001
        return self.now


def populate(store: Any, vault: Vault) -> None:
    """A registry the way the engine leaves one: connected users with vault ciphertexts,
    their journals, a rollout in rows with counts, copy progress, alerts, tokens, jobs, an
    expired lease, and the audit trail all of that wrote."""

    for uid in SECRET_URLS:
        url_ct, key_ct = vault.encrypt_credentials(uid, SECRET_URLS[uid], SECRET_KEYS[uid])
        store.upsert_credentials(uid, url_ct=url_ct, key_ct=key_ct)
        store.set_connection_status(uid, "connected", tested_at=store._clock())
        store.set_deployment(uid, status="deployed", version="v2", fingerprint="f" * 64)
        store.journal_plan([JournalEntry(uid, "plan-1", f"s{k}", k, "deploy", version="v2")
                            for k in range(3)])
        store.journal_update(uid, "plan-1", "s0", status="running")
        store.journal_update(uid, "plan-1", "s0", status="completed", processed=12,
                             cursor="c\u00e9\u2603")
    store.set_entitled("u1", True)
    store.set_entitled("zz_entitled_only", True)  # a credential-less pending row
    store.set_connection_status("u3", "error", error="unreachable: timed out")
    store.save_rollout("r-1", {
        "rollout_id": "r-1", "target": "v2", "status": "running", "created_at": 1.5,
        "options": {"canary": 1, "waves": ["100%"]}, "max_failures": 1,
        "waves": [{"name": "canary", "deployments": ["u0"]},
                  {"name": "100%", "deployments": ["u1", "u2", "u3", "u4"]}],
        "deployments": {u: {"user_id": u, "status": "pending", "before": "v1"}
                        for u in SECRET_URLS}})
    store.save_deployment_row("r-1", "u0", "succeeded", {"user_id": "u0", "after": "v2"})
    store.save_deployment_row("r-1", "u3", "failed", {"user_id": "u3", "error": "boom"})
    store.save_rollout("legacy", {"rollout_id": "legacy", "status": "succeeded",
                                  "ratio": 0.1 + 0.2, "n": 3})
    store.save_progress("disconnect", "u4", {"table": "notes", "cursor": "x", "copied": 7})
    store.save_progress("copy_from_main", "u2", {"done": False, "tables": {"a": 1}})
    store.enqueue_alert("deployment_failed", {"user_id": "u3", "error": "boom"})
    store.enqueue_alert("deployment_failed", {"user_id": "u3"}, channel="email")
    [alert] = store.pending_alerts(limit=1)
    store.alert_attempted(alert.id, delivered=False, error="502", next_at=store._clock() + 5)
    store.add_token("tok-1", "app-backend", "h" * 64, ("settings", "data"))
    store.create_job("job-1", "connect", "u0", {"version": "v2"})
    store.create_job("job-2", "disconnect", "u4", {"data": "migrate"})
    job = store.claim_job("service-1", 60.0)
    assert job is not None
    store.job_event(job.job_id, "service-1", "copying", "half way")
    store.finish_job(job.job_id, "service-1", state="succeeded", result={"rows": 3})
    store.acquire_lease("u2", "runner-gone", 30.0)  # expired a day ago
    store.audit("u0", "note", {"why": "a test", "n": 1, "x": 2.5})


@pytest.fixture
def vault() -> Vault:
    return Vault.from_hex(KEY)


@pytest.fixture
def source(request: pytest.FixtureRequest, new_location: Callable[[str], str],
           vault: Vault) -> str:
    """A populated registry of the backend the test is parametrized with (default SQLite)."""

    kind = getattr(request, "param", "sqlite")
    location = new_location(kind)
    if kind == "sqlite":
        store: Any = SqliteStore(location, clock=PastClock())
    else:
        from engine.registry.postgres import PostgresStore

        store = PostgresStore(location, clock=PastClock())
    with store:
        populate(store, vault)
    return location


def workspace(path: Path | str) -> Workspace:
    return Workspace.open(EngineConfig(registry_path=path))


def every_row(store: Any, name: str) -> list[dict[str, Any]]:
    return store.dump_rows(name, after=None, limit=1_000_000)


# -- the copy ------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "target"), PAIRS, indirect=True)
def test_a_copy_holds_every_row_and_the_engine_reads_it(source: str, target: str,
                                                        vault: Vault) -> None:
    with workspace(source) as ws:
        result = copy_registry(ws, target)
    assert result["ok"] and result["mismatches"] == []
    by_table = {t["table"]: t for t in result["tables"]}
    assert list(by_table) == list(TABLE_NAMES)
    for name, check in by_table.items():
        assert check["source_rows"] == check["target_rows"] > 0, name
        assert check["source_checksum"] == check["target_checksum"], name
        assert len(check["source_checksum"]) == 64
    assert result["rows"] == sum(t["source_rows"] for t in result["tables"])

    original, copy = open_location(source), open_location(target)
    try:
        for name in TABLE_NAMES:  # row for row, values and types as they were
            assert every_row(copy, name) == every_row(original, name), name
        for uid in [*SECRET_URLS, "zz_entitled_only"]:
            assert copy.get_user(uid) == original.get_user(uid)
        user = copy.get_user("u2")
        assert vault.decrypt("u2", FIELD_URL, user.url_ct) == SECRET_URLS["u2"]
        assert vault.target_for(user).admin_key == SECRET_KEYS["u2"]
        assert copy.get_user("u1").entitled and not copy.get_user("u0").entitled
        assert copy.journal("u0", "plan-1") == original.journal("u0", "plan-1")
        assert copy.load_rollout("r-1") == original.load_rollout("r-1")
        assert copy.load_rollout("legacy") == original.load_rollout("legacy")
        assert copy.rollout_counts("r-1") == {"pending": 3, "succeeded": 1, "failed": 1}
        assert copy.list_rollouts() == original.list_rollouts()
        assert copy.audit_log(limit=1000) == original.audit_log(limit=1000)
        assert copy.load_progress("disconnect", "u4") == original.load_progress("disconnect",
                                                                                 "u4")
        assert copy.pending_alerts() == original.pending_alerts()
        assert copy.list_tokens() == original.list_tokens()
        assert copy.token_by_hash("h" * 64) == original.token_by_hash("h" * 64)
        assert copy.list_jobs() == original.list_jobs()

        # new entries are numbered after the copied ones (PostgreSQL: the identity moved on)
        last_audit = max(r["id"] for r in every_row(copy, "audit"))
        copy.audit("u0", "after_copy", {})
        assert max(r["id"] for r in every_row(copy, "audit")) == last_audit + 1
        last_alert = max(r["id"] for r in every_row(copy, "alerts"))
        assert copy.enqueue_alert("after_copy", {}).id == last_alert + 1
    finally:
        original.close()
        copy.close()


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_a_target_holding_rows_is_refused_and_force_replaces_it(source: str,
                                                                target: str) -> None:
    with workspace(source) as ws:
        assert copy_registry(ws, target)["ok"]
        with pytest.raises(RegistryError) as refused:
            copy_registry(ws, target)
        message = str(refused.value)
        assert "not empty" in message and "users (6 rows)" in message and "--force" in message
        ws.store.set_entitled("new-user", True)  # the source moved on
        ws.store.audit("new-user", "later", {})
        result = copy_registry(ws, target, force=True)
    assert result["ok"] and result["forced"]
    copy = open_location(target)
    try:
        assert copy.get_user("new-user").entitled
        assert copy.count("users") == 7
    finally:
        copy.close()


@pytest.mark.parametrize("source", BACKENDS, indirect=True)
def test_a_source_in_use_is_refused_unless_forced(source: str, target: str) -> None:
    with workspace(source) as ws:
        ws.store.acquire_lease("rollout:r-1", "host-a:123", 600.0)
        with pytest.raises(RegistryError) as refused:
            copy_registry(ws, target)
        assert "lease 'rollout:r-1' is held by 'host-a:123'" in str(refused.value)
        ws.store.release_lease("rollout:r-1", "host-a:123")
        job = ws.store.claim_job("service-2", 600.0)
        assert job is not None and job.job_id == "job-2"
        with pytest.raises(RegistryError, match="job job-2 \\(disconnect for user 'u4'\\) "
                                                "is running"):
            copy_registry(ws, target)
        untouched = open_location(target)
        assert untouched.count("users") == 0  # nothing was written
        untouched.close()
        assert copy_registry(ws, target, force=True)["ok"]


def test_a_copy_onto_itself_is_refused(source: str, tmp_path: Path) -> None:
    path = Path(source)
    link = tmp_path / "link.sqlite3"
    link.symlink_to(path)
    with workspace(source) as ws:
        for same in (source, str(path.parent / "." / path.name), str(link)):
            with pytest.raises(RegistryError, match="is the configured registry itself"):
                copy_registry(ws, same)


def test_no_source_registry_is_refused(tmp_path: Path) -> None:
    with workspace(tmp_path / "none.sqlite3") as ws:
        with pytest.raises(RegistryError, match="there is no registry at"):
            copy_registry(ws, str(tmp_path / "t.sqlite3"))
    assert not (tmp_path / "t.sqlite3").exists()


def test_a_copy_that_stops_half_way_says_where_and_how_to_finish(source: str,
                                                                 tmp_path: Path) -> None:
    target = SqliteStore(tmp_path / "t.sqlite3")
    real_load = target.load_rows

    def load(name: str, rows: Any) -> None:
        if name == "audit":
            raise RegistryError("the registry is busy: database is locked")
        real_load(name, rows)

    target.load_rows = load  # type: ignore[method-assign,assignment]
    original = open_location(source)
    try:
        with pytest.raises(RegistryError) as stopped:
            copying.copy_tables(original, target, page_size=10)
        assert "the copy stopped in table audit after 0 of its rows" in str(stopped.value)
        assert "--force" in str(stopped.value)
        assert copying.occupied_tables(target) == {"users": 6, "journal": 15, "leases": 1}
    finally:
        original.close()
        target.close()


# -- verification ---------------------------------------------------------------------------

def _tamper(store: Any, sql: str, params: tuple[Any, ...]) -> None:
    with store._write() as conn:
        conn.execute(sql, params)


@pytest.mark.parametrize(("source", "target"), [("sqlite", "postgresql"),
                                                ("postgresql", "sqlite")], indirect=True)
def test_verification_names_a_tampered_table(source: str, target: str) -> None:
    with workspace(source) as ws:
        assert copy_registry(ws, target)["ok"]
    original, copy = open_location(source), open_location(target)
    try:
        ct = copy.get_user("u3").key_ct
        flipped = ct[:-2] + ("A" if ct[-2] != "A" else "B") + ct[-1]
        _tamper(copy, "UPDATE users SET key_ct = ? WHERE user_id = ?", (flipped, "u3"))
        checks = {c.table: c for c in copying.verify_copy(original, copy)}
        assert [n for n, c in checks.items() if not c.ok] == ["users"]
        assert checks["users"].source_rows == checks["users"].target_rows
        assert checks["users"].source_checksum != checks["users"].target_checksum

        _tamper(copy, "DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)", ())
        _tamper(copy, "UPDATE rollout_counts SET updated_at = updated_at + 0.000001", ())
        bad = [c for c in copying.verify_copy(original, copy) if not c.ok]
        assert [c.table for c in bad] == ["users", "audit", "rollout_counts"]
        assert bad[1].target_rows == bad[1].source_rows - 1
    finally:
        original.close()
        copy.close()


def test_keys_are_paged_in_code_point_order_whatever_the_database_locale(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A PostgreSQL database whose default collation is a human one (ICU en-US: "a" <
    "a_b" < "aB" < "B") still pages and checksums its keys in SQLite's order (code points),
    so the checksums of both sides agree and no row is skipped between pages."""

    server = request.getfixturevalue("pg_server")
    name = f"icu_{abs(hash(str(tmp_path))) % 10**8}"
    with server.admin() as conn:
        conn.execute(f"CREATE DATABASE {name} OWNER byod TEMPLATE template0 "
                     "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.utf8'")
    try:
        ids = ["a_b", "aB", "B", "a", "Z", "\u00e9", "\u03a9", "a b", "a-b", "A"]
        path = tmp_path / "s.sqlite3"
        with SqliteStore(path) as src:
            for uid in ids:
                src.set_entitled(uid, True)
                src.save_progress("disconnect", uid, {"n": 1})
        with workspace(path) as ws:
            result = copy_registry(ws, server.url(name), page_size=3)
        assert result["ok"], result["mismatches"]
        copy = open_location(server.url(name))
        try:
            walked: list[str] = []
            while page := copy.dump_rows("users", after=(walked[-1],) if walked else None,
                                         limit=3):
                walked += [r["user_id"] for r in page]
            assert walked == sorted(ids)  # Python's str order is code point order
        finally:
            copy.close()
    finally:
        server.drop_database(name)


# -- the CLI ----------------------------------------------------------------------------------

def _env(source: str, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "byod.toml").write_text("")
    return {"BYOD_REGISTRY": str(source), "BYOD_ENCRYPTION_KEY": KEY,
            "BYOD_CONFIG": str(tmp_path / "byod.toml")}


def _secrets(store: Any, *locations: str) -> list[str]:
    from urllib.parse import urlsplit

    users = store.list_users()
    passwords = [urlsplit(x).password for x in locations if "://" in x]
    return [KEY, *SECRET_URLS.values(), *SECRET_KEYS.values(), *filter(None, passwords),
            *(u.url_ct for u in users if u.url_ct), *(u.key_ct for u in users if u.key_ct)]


@pytest.mark.parametrize(("source", "target"), [("sqlite", "postgresql"),
                                                ("postgresql", "sqlite")], indirect=True)
def test_the_cli_prints_counts_and_checksums_and_no_secret(source: str, target: str,
                                                           tmp_path: Path) -> None:
    env = _env(source, tmp_path)
    shown_target = target
    if target.startswith("postgresql://"):  # log in with a password the output must hide
        from urllib.parse import urlsplit

        parts = urlsplit(target)
        assert parts.password, "the PostgreSQL fixture's URL carries a password"
        shown_target = registry_display(target)
        assert parts.password not in shown_target
    result = CliRunner().invoke(cli, ["registry", "copy", "--to", target], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = result.stdout
    with open_location(source) as original:
        for name in TABLE_NAMES:
            count = original.count(name)
            digest = copying.table_digest(original, name)[1]
            line = next(x for x in text.splitlines() if x.strip().startswith(name + " "))
            assert str(count) in line and digest[:16] in line, line
        secrets = _secrets(original, source, target)
    assert "every table verified" in text and shown_target in text
    for secret in secrets:
        assert secret not in result.output

    again = CliRunner().invoke(cli, ["registry", "copy", "--to", target, "--json"], env=env)
    assert again.exit_code == 1 and "not empty" in again.output
    forced = CliRunner().invoke(cli, ["registry", "copy", "--to", target, "--json",
                                      "--force"], env=env)
    assert forced.exit_code == 0, forced.output
    data = json.loads(forced.stdout)
    assert data["ok"] and data["forced"] and data["target"] == shown_target
    for secret in secrets:
        assert secret not in forced.output


def test_the_cli_exits_1_naming_the_tables_that_differ(source: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = copying.verify_copy

    def lossy(src: RegistryTables, dst: RegistryTables, **kw: Any) -> list[Any]:
        _tamper(dst, "DELETE FROM journal WHERE step_id = 's2'", ())
        return real(src, dst, **kw)

    monkeypatch.setattr(copying, "verify_copy", lossy)
    result = CliRunner().invoke(cli, ["registry", "copy", "--to",
                                      str(tmp_path / "t.sqlite3")], env=_env(source, tmp_path))
    assert result.exit_code == 1
    assert "table journal: 15 rows on the source, 10 on the target" in result.stderr
    assert "the copy does not match the source in: journal" in result.stderr
    assert "MISMATCH" in result.stdout


# -- locations --------------------------------------------------------------------------------

@pytest.mark.parametrize("location", [
    "postgresql://byod:s3cret-pw@db.internal:5433/registry",
    "postgresql://byod@db/registry?sslmode=require&password=s3cret-pw",
    "postgres://:s3cret-pw@127.0.0.1/r",
    "postgresql://u:s3cret-pw@h:notaport/r",
])
def test_a_refusal_never_shows_a_password(location: str, tmp_path: Path) -> None:
    """The same server under another login: refused before anything is opened, and the
    message names the location without the password of either URL."""

    other = location.replace("s3cret-pw", "other-pw-123")
    with workspace(location) as ws:
        with pytest.raises(RegistryError) as refused:
            copy_registry(ws, other)
    assert "is the configured registry itself" in str(refused.value)
    assert "s3cret-pw" not in str(refused.value) and "other-pw-123" not in str(refused.value)


def test_same_location() -> None:
    same = copying.same_location
    assert same("postgresql://a:x@H:5432/db", "postgres://b:y@h/db")
    assert not same("postgresql://h/db1", "postgresql://h/db2")
    assert not same("postgresql://h:5433/db", "postgresql://h/db")
    assert same("convex:main", "convex:main")
    assert not same("convex:main", "convex/main")
    assert same("reg/../reg.sqlite3", "reg.sqlite3")


# -- the table descriptions ----------------------------------------------------------------

def test_the_descriptions_match_the_current_schema(tmp_path: Path) -> None:
    from engine.registry.tables import TABLES_SCHEMA_VERSION

    assert TABLES_SCHEMA_VERSION == SCHEMA_VERSION, "a new schema: update engine/registry/tables"
    with SqliteStore(tmp_path / "r.sqlite3") as store:
        names = {r["name"] for r in store._read(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        assert names - {"schema_migrations", "alembic_version"} == set(TABLE_NAMES)
        affinity = {"text": "TEXT", "json": "TEXT", "int": "INTEGER", "bool": "INTEGER",
                    "real": "REAL"}
        for spec in TABLES:
            info = store._read(f"PRAGMA table_info({spec.name})")
            assert [(r["name"], r["type"]) for r in info] == \
                [(c, affinity[k]) for c, k in spec.columns], spec.name
            assert tuple(r["name"] for r in sorted((r for r in info if r["pk"]),
                                                   key=lambda r: r["pk"])) == spec.key
    with pytest.raises(ValueError, match="'sqlite_master' is not a registry table"):
        table("sqlite_master")


def test_the_same_data_has_the_same_checksum_whatever_the_backend_returned() -> None:
    """SQLite's, PostgreSQL's and Convex's ways of handing back one row agree; a changed
    value does not."""

    spec = table("users")
    sqlite_row = {"user_id": "u1", "url_ct": "v1.a.b.c", "key_ct": "v1.a.b.d",
                  "connection_status": "connected", "deployment_status": "deployed",
                  "deployment_progress": None, "schema_version": "v2",
                  "schema_fingerprint": None, "last_schema_deploy": 1700000000.0,
                  "last_connection_test": 1700000000.25, "connection_error": None,
                  "entitled": 1, "created_at": 5.0, "updated_at": 6.5}
    convex_row = {**sqlite_row, "entitled": True, "created_at": 5, "last_schema_deploy": 1.7e9}
    assert checksum(spec, [sqlite_row]) == checksum(spec, [convex_row])
    assert checksum(spec, [sqlite_row]) != checksum(spec, [{**sqlite_row, "entitled": 0}])
    assert checksum(spec, [sqlite_row]) != checksum(spec, [{**sqlite_row, "updated_at": 6.5001}])
    assert checksum(spec, [sqlite_row]) != checksum(spec, [{**sqlite_row,
                                                             "deployment_progress": ""}])

    audit = table("audit")
    row = {"id": 7, "at": 1.5, "user_id": "u", "event": "e", "detail": '{"a": 1, "b": [2]}'}
    respaced = {**row, "id": 7.0, "detail": '{"b":[2],"a":1}'}
    assert checksum(audit, [row]) == checksum(audit, [respaced])
    assert checksum(audit, [row]) != checksum(audit, [{**row, "detail": '{"a": 1}'}])
    assert checksum(audit, [{**row, "detail": "not json"}]) != \
        checksum(audit, [{**row, "detail": '"not json"'}])


def test_rows_out_of_key_order_are_a_problem_not_a_checksum() -> None:
    class Shuffled:
        def table_names(self) -> tuple[str, ...]:
            return ("leases",)

        def dump_rows(self, name: str, *, after: Any, limit: int) -> list[dict[str, Any]]:
            if after is not None:
                return []
            rows = [{"deployment": d, "holder": "h", "acquired_at": 1.0, "expires_at": 2.0,
                     "host": None, "pid": None, "pid_started": None, "pid_namespace": None,
                     "renewed_at": None} for d in ("b", "a")]
            return rows

        def count(self, name: str) -> int:
            return 2

    count, digest, problem = copying.table_digest(Shuffled(), "leases")  # type: ignore[arg-type]
    assert count == 2 and digest == ""
    assert problem == "table leases: rows are not in key order (a key follows a key not " \
        "smaller than it)"


def test_a_new_store_is_copyable(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "r.sqlite3") as store:
        assert isinstance(store, RegistryTables)
        assert copying.occupied_tables(store) == {}


# -- size ---------------------------------------------------------------------------------------

def fill(store: SqliteStore, users: int) -> None:
    """``users`` users with ciphertext-sized credentials, a journal step and an audit entry
    each, and a rollout row each, loaded through the table interface (fast)."""

    now = time.time() - 3600
    page = 2000
    for start in range(0, users, page):
        ids = [f"user-{i:06d}" for i in range(start, min(users, start + page))]
        store.load_rows("users", [{
            "user_id": u, "url_ct": "v1.k." + "n" * 16 + "." + "c" * 80,
            "key_ct": "v1.k." + "n" * 16 + "." + "c" * 120, "connection_status": "connected",
            "deployment_status": "deployed", "deployment_progress": None,
            "schema_version": "v2", "schema_fingerprint": "f" * 64, "last_schema_deploy": now,
            "last_connection_test": now, "connection_error": None, "entitled": 0,
            "created_at": now, "updated_at": now} for u in ids])
        store.load_rows("journal", [{
            "user_id": u, "plan_id": "p", "step_id": "deploy", "seq": 0, "kind": "deploy",
            "status": "completed", "version": "v2", "cursor": None, "processed": 0,
            "attempts": 1, "error": None, "fingerprint": None, "started_at": now,
            "completed_at": now, "created_at": now, "updated_at": now} for u in ids])
        store.load_rows("audit", [{"id": start + k + 1, "at": now, "user_id": u,
                                   "event": "deployment", "detail": '{"version": "v2"}'}
                                  for k, u in enumerate(ids)])
        store.load_rows("rollout_deployments", [{
            "rollout_id": "big", "user_id": u, "position": start + k, "status": "succeeded",
            "data": "{}", "updated_at": now, "wave": 0, "claimed_by": None,
            "claim_expires": None} for k, u in enumerate(ids)])
    store.save_rollout_header("big", {"rollout_id": "big", "status": "succeeded"})


_CHILD = """
import gc, json, resource, sys, time
from pathlib import Path
from engine.commands.registry_file import copy_registry
from engine.commands.workspace import Workspace
from engine.config import EngineConfig

here = Path(sys.argv[1])
ws = Workspace.open(EngineConfig(registry_path=here / "big.sqlite3"))
ws.store.count("users")  # opened, and the modules loaded
gc.collect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started, cpu = time.perf_counter(), time.process_time()
result = copy_registry(ws, str(here / "copy.sqlite3"))
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ws.close()
print(json.dumps({"ok": result["ok"], "rows": result["rows"], "seconds": seconds,
                  "cpu": cpu, "growth_kb": after - before}))
"""


def test_a_large_registry_copies_in_bounded_memory(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """20k users (80k rows) copied and verified in a fresh process: its peak memory grows by
    a few pages' worth, not by the registry's size (the rows held at once would take tens of
    megabytes: the same copy with one page per table grows it by about 48 MB). The time is
    printed, not asserted."""

    import subprocess
    import sys

    users = 20_000
    with SqliteStore(tmp_path / "big.sqlite3") as store:
        fill(store, users)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["rows"] == 4 * users + 1
    assert report["growth_kb"] < 24 * 1024, f"peak memory grew {report['growth_kb']} kB"
    with capsys.disabled():
        print(f"\n[registry copy] {users} users, {report['rows']} rows copied and verified "
              f"in {report['seconds']:.2f} s ({report['cpu']:.2f} s CPU); peak memory "
              f"+{report['growth_kb'] / 1024:.1f} MB")
