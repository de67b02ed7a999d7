"""The operator's whole CLI, unchanged, on a PostgreSQL registry: real ``byod`` processes
with ``BYOD_REGISTRY=postgresql://byod:<password>@…`` over real local deployments.

One world per module (a fresh database, a main and four user deployments); the tests run in
order and each checks what its commands did to the registry through ``open_store(url)``:
keys → registry upgrade → main bundle → connect (one with a wrong deploy key: refused,
nothing stored; one behind the premium gate until ``entitle``) → status → graph → a rollout
SIGKILLed mid-run, its dead holder's lease broken, resumed to the head → health (a revoked
key moves a user to error and back) → test-connection → tokens → reconcile → monitor → keys
rotate → registry check / copy to a SQLite file and back to another database → disconnect
(keep, migrate). No output of any command shows the database password, a deploy key or the
encryption key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from local_ops import needs_toolchain

from engine.convex.http import ConvexHttpClient
from engine.ports.deployment import DeploymentTarget
from engine.registry.copy import verify_copy
from engine.registry.open import Store, open_store

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain]

ROOT = Path(__file__).resolve().parents[2]
BYOD = Path(sys.executable).with_name("byod")
HEAD = "0007_reference_indexes"
V1 = "0001_initial"
USERS = ("alice", "bob", "carol", "dave")
WRONG_KEY_SUFFIX = "0" * 8


@dataclass
class World:
    tmp: Path
    fleet: Any
    pg: Any
    url: str
    env: dict[str, str]
    deps: dict[str, Any]  # "main" and each user id -> its local deployment
    secrets: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def byod(self, *args: str, stdin: str | None = None, extra: dict[str, str] | None = None,
             expect: int | None = 0, scan: bool = True,
             timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run the real CLI; assert its exit code (unless ``expect`` is None) and, unless
        ``scan`` is off (a command whose product is a secret), that no secret shows."""

        done = subprocess.run([str(BYOD), *args], input=stdin, capture_output=True, text=True,
                              env={**self.env, **(extra or {})}, cwd=self.tmp, timeout=timeout)
        out = done.stdout + done.stderr
        if scan:
            self.outputs.append(out)
            self.assert_clean(out, " ".join(args[:3]))
        if expect is not None:
            assert done.returncode == expect, (
                f"byod {' '.join(args[:3])} exited {done.returncode}, not {expect}:\n"
                f"{self.redact(out)[-3000:]}")
        return done

    def byod_json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.byod(*args, "--json", **kw).stdout)

    def store(self, url: str | None = None) -> Store:
        return open_store(url or self.url)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<secret>")
        return text

    def assert_clean(self, text: str, what: str) -> None:
        for secret in self.secrets:
            assert secret not in text, f"byod {what} printed a secret: {self.redact(text)[-2000:]}"

    def key_of(self, name: str) -> str:
        return str(self.deps[name].admin_key)


@pytest.fixture(scope="module")
def world(byod_local_fleet: Any, pg_server: Any,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("cli-on-pg")
    url = pg_server.url(pg_server.create_database())
    main, *users = byod_local_fleet.add(1 + len(USERS))
    config = tmp / "byod.toml"
    config.write_text(
        "[byod]\n"
        f'versions_dir = "{ROOT / "schema_versions"}"\n'
        f'functions_dir = "{ROOT / "functions"}"\n'
        "http_timeout_s = 10.0\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYOD_")}
    env.update({"BYOD_CONFIG": str(config), "BYOD_REGISTRY": url,
                "BYOD_MAIN_URL": main.url, "BYOD_MAIN_ADMIN_KEY": main.admin_key})
    deps = {"main": main, **dict(zip(USERS, users))}
    keys = [d.admin_key for d in deps.values()]
    secrets = [pg_server.password, *keys, *(k.split("|", 1)[1] for k in keys)]
    w = World(tmp, byod_local_fleet, pg_server, url, env, deps, secrets)
    try:
        yield w
    finally:
        for dep in deps.values():
            byod_local_fleet.set_fault(dep.name, "none")


# -- set-up: the key, the registry's schema, main ------------------------------------------------

def test_key_schema_and_main(world: World) -> None:
    made = world.byod("keys", "generate", scan=False)
    key = made.stdout.strip()
    assert len(key) == 64 and int(key, 16) >= 0
    world.assert_clean(made.stdout + made.stderr, "keys generate")  # no other secret
    world.secrets.append(key)
    world.env["BYOD_ENCRYPTION_KEY"] = key
    for out in world.outputs:  # nothing printed before it was known
        world.assert_clean(out, "an earlier command")

    behind = world.byod("registry", "upgrade", "--check", expect=1)
    assert "run `byod registry upgrade`" in behind.stdout + behind.stderr
    shown = world.byod_json("registry", "upgrade")
    assert shown["upgraded"] is True and shown["from"] is None and shown["to"] == 7, shown
    assert "@" in shown["registry"] and "postgresql://byod@" in shown["registry"]
    assert world.byod_json("registry", "upgrade", "--check")["up_to_date"] is True

    world.byod("deploy", "head", "--target", "main", "--allow-insecure-local")


# -- connect -------------------------------------------------------------------------------------

def _connect(world: World, user: str, *, key: str | None = None, expect: int = 0,
             extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    dep = world.deps[user if user in world.deps else "dave"]
    return world.byod("connect", "--user", user, "--url", dep.url, "--key-stdin",
                      "--allow-insecure-local", "--version", "1", stdin=key or dep.admin_key,
                      expect=expect, extra=extra)


def test_connect_users_wrong_key_and_premium_gate(world: World) -> None:
    for user in ("alice", "bob", "carol"):
        _connect(world, user)

    wrong = world.key_of("dave")[:-len(WRONG_KEY_SUFFIX)] + WRONG_KEY_SUFFIX
    world.secrets.append(wrong)
    refused = _connect(world, "mallory", key=wrong, expect=1)
    assert "rejected the key" in refused.stderr and "mallory" in refused.stderr, refused.stderr

    premium = {"BYOD_AVAILABILITY": "premium"}
    gated = _connect(world, "dave", expect=1, extra=premium)
    assert "not entitled" in gated.stderr and "dave" in gated.stderr, gated.stderr
    with world.store() as store:
        assert store.find_user("mallory") is None  # a refused key stores nothing
        dave = store.find_user("dave")
        assert dave is None or dave.connection_status != "connected"
    assert world.byod_json("entitle", "--user", "dave", extra=premium)["entitled"] is True
    assert world.byod_json("entitle", "--user", "dave", "--revoke")["entitled"] is False
    with world.store() as store:
        assert not store.get_user("dave").entitled
    world.byod("entitle", "--user", "dave", extra=premium)
    _connect(world, "dave", extra=premium)
    # a retry of a user who saved nothing is refused by name
    retry = world.byod("connect", "--user", "mallory", "--retry", expect=None)
    assert retry.returncode != 0 and "mallory" in retry.stderr, retry.stderr

    with world.store() as store:
        for user in USERS:
            row = store.get_user(user)
            assert (row.connection_status, row.deployment_status, row.schema_version) == \
                ("connected", "deployed", V1), user
            assert row.key_ct and world.key_of(user) not in row.key_ct
        assert store.get_user("dave").entitled
        assert store.find_user("mallory") is None
        events = {e.event for e in store.audit_log("alice")}
        assert "connected" in events, events


def test_status_and_graph(world: World) -> None:
    text = world.byod("status").stdout
    assert "4 user(s): 4 connected" in text and "alice" in text
    data = world.byod_json("status")
    assert sorted(u["user_id"] for u in data["users"]) == sorted(USERS)
    assert {u["schema_version"] for u in data["users"]} == {V1}
    one = world.byod("status", "--user", "alice").stdout
    assert "connected" in one and "fingerprint=" in one
    assert world.byod_json("status", "--user", "alice")["user_id"] == "alice"
    graph = world.byod("graph").stdout
    assert f"{V1}<br/>" in graph and "4 deployment(s)" in graph
    # the registry named on the command line, as a URL (an empty registry elsewhere)
    named = world.byod_json("graph", "--registry", world.url,
                            extra={"BYOD_REGISTRY": str(world.tmp / "none.sqlite3")})
    assert {v["id"]: v["deployments"] for v in named["versions"]}[V1] == 4, named
    assert not (world.tmp / "none.sqlite3").exists()

    # the configuration names the registry without its password
    shown = world.byod("config", "show").stdout
    assert "postgresql://byod@" in shown, shown
    config = json.dumps(world.byod_json("config", "show"))
    assert "postgresql://byod@" in config

    # a wrong password, an unreachable server: a clear error, no password, no traceback
    wrong_pw = "not-the-password-" + "w" * 12
    world.secrets.append(wrong_pw)
    bad = world.url.replace(world.pg.password, wrong_pw)
    refused = world.byod("status", extra={"BYOD_REGISTRY": bad}, expect=1)
    assert "password authentication failed" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    # the password from libpq's PGPASSWORD instead of the URL
    bare = world.url.replace(f":{world.pg.password}@", "@")
    assert bare != world.url
    via_env = world.byod_json("status", extra={"BYOD_REGISTRY": bare,
                                               "PGPASSWORD": world.pg.password})
    assert len(via_env["users"]) == 4
    down = world.url.replace(f":{world.pg.port}/", ":1/")
    unreachable = world.byod("status", extra={"BYOD_REGISTRY": down}, expect=1)
    assert "cannot reach the PostgreSQL registry" in unreachable.stderr, unreachable.stderr


# -- a rollout killed mid-run, then resumed ------------------------------------------------------

def _kill_after_first(world: World, args: list[str]) -> list[str]:
    """Start ``byod`` (its own process group), SIGKILL it once a deployment is done."""

    proc = subprocess.Popen([str(BYOD), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env=world.env, cwd=world.tmp, start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    try:
        while not any(line.startswith("[1/") for line in lines):
            assert proc.poll() is None, f"the rollout ended before the kill: {lines}"
            assert time.monotonic() < deadline, f"no deployment finished in time: {lines}"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        reader.join(10)
    out = "\n".join(lines)
    world.outputs.append(out)
    world.assert_clean(out, "rollout (killed)")
    return lines


def test_rollout_killed_then_resumed(world: World) -> None:
    plan = world.byod_json("rollout", "--to", "head", "--dry-run")
    assert plan["status"] == "dry_run" and len(plan["deployments"]) == 4, plan
    # every user deployment answers slowly, so the kill lands mid-rollout
    for user in USERS:
        world.fleet.set_fault(world.deps[user].name, "delay", delay_ms=250)
    try:
        lines = _kill_after_first(world, ["rollout", "--to", "head", "--canary", "0",
                                          "--waves", "100%", "--concurrency", "1"])
    finally:
        for user in USERS:
            world.fleet.set_fault(world.deps[user].name, "none")
    listed = world.byod_json("rollout", "--list")
    assert len(listed) == 1, listed
    rollout_id = listed[0]["rollout_id"]
    assert rollout_id in "\n".join(lines) and listed[0]["status"] != "completed", listed
    assert rollout_id in world.byod("rollout", "--list").stdout
    with world.store() as store:
        on_head = [u for u in USERS if store.get_user(u).schema_version == HEAD]
        assert 1 <= len(on_head) < 4, on_head
        now = time.time()
        live = {lease.deployment: lease for lease in store.list_leases()
                if lease.expires_at > now}
    assert f"rollout:{rollout_id}" in live, live

    # the dead process's leases: listed as such; one is broken by hand (audited)
    leases = world.byod_json("leases")
    states = {row["id"]: row["state"] for row in leases}
    assert states.get(f"rollout:{rollout_id}") == "holder_dead", leases
    assert world.byod("leases", "list").returncode == 0
    victim = next(uid for uid in live if not uid.startswith("rollout:")) \
        if any(not uid.startswith("rollout:") for uid in live) else f"rollout:{rollout_id}"
    world.byod("leases", "break", victim, expect=3)  # no --yes: refused, nothing changed
    broke = world.byod_json("leases", "break", victim, "--yes", "--reason", "killed in test")
    assert broke["broken"] is True and broke["id"] == victim, broke
    world.byod("leases", "break", "no-such-lease", "--yes", expect=1)
    with world.store() as store:
        assert victim not in {lease.deployment for lease in store.list_leases()}
        broken = [e for e in store.audit_log(limit=50) if e.event == "lease_broken"]
        assert broken and broken[0].detail.get("reason") == "killed in test", broken

    resumed = world.byod("rollout", "--resume", rollout_id)
    assert "completed" in resumed.stdout, resumed.stdout
    # the reports go beside the registry's side files (.byod/ for a server registry)
    [shown] = [line for line in resumed.stdout.splitlines() if line.startswith("reports: ")]
    report, html = (world.tmp / p for p in shown.split()[1:])
    assert report.parent == world.tmp / ".byod" / "reports" and rollout_id in report.name
    assert report.is_file() and html.is_file()
    assert json.loads(report.read_text())["status"] == "completed"
    with world.store() as store:
        for user in USERS:
            row = store.get_user(user)
            assert (row.connection_status, row.deployment_status, row.schema_version) == \
                ("connected", "deployed", HEAD), user
            journal = store.journal(user)
            last = [e for e in journal if e.plan_id == journal[-1].plan_id]
            assert all(e.status == "completed" for e in last), (user, last)
        assert store.rollout_status(rollout_id) == "completed"
        counts = store.rollout_counts(rollout_id)
        # the deployment in flight at the kill may have reached the head before it died
        assert set(counts) <= {"succeeded", "already"} and sum(counts.values()) == 4, counts
        now = time.time()
        assert not [lease for lease in store.list_leases() if lease.expires_at > now]
    assert world.byod_json("rollout", "--list")[0]["status"] == "completed"


# -- health, test-connection, tokens, reconcile, monitor -----------------------------------------

class _Hook(BaseHTTPRequestHandler):
    """A webhook receiver: keeps every body it is sent."""

    bodies: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (the handler's name)
        length = int(self.headers.get("Content-Length") or 0)
        self.bodies.append(self.rfile.read(length).decode("utf-8", "replace"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_health_moves_a_user_to_error_and_back(world: World) -> None:
    assert "alice" in world.byod("health", "--all").stdout
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook_token = "hook-" + "t" * 20
    world.secrets.append(hook_token)
    hook = {"BYOD_WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/{hook_token}"}
    carol = world.deps["carol"].name
    world.fleet.set_fault(carol, "revoked")
    try:
        report = world.byod_json("health", "--all", expect=None, extra=hook)
    finally:
        world.fleet.set_fault(carol, "none")
    by_user = {r["user_id"]: r for r in report["results"]}
    assert by_user["carol"]["status_after"] == "error", by_user["carol"]
    assert by_user["alice"]["status_after"] == "connected"
    with world.store() as store:
        assert store.get_user("carol").connection_status == "error"
        assert store.count("alerts") >= 1  # the alert went through the registry's outbox
        assert not store.pending_alerts()  # and was delivered
    again = world.byod_json("health", "--all", extra=hook)
    server.shutdown()
    server.server_close()
    assert any("unhealthy" in b and "carol" in b for b in _Hook.bodies), _Hook.bodies
    assert any("recovered" in b for b in _Hook.bodies), _Hook.bodies
    for body in _Hook.bodies:
        world.assert_clean(body, "health (its webhook)")
    assert {r["status_after"] for r in again["results"]} == {"connected"}, again
    with world.store() as store:
        assert store.get_user("carol").connection_status == "connected"
    tested = world.byod_json("test-connection", "--user", "alice")
    assert tested["connection_status"] == "connected" or tested.get("ok") is True, tested


def test_tokens_reconcile_and_monitor(world: World) -> None:
    made = world.byod_json("tokens", "create", "--name", "app-backend",
                           "--scope", "settings,data", scan=False)
    world.secrets.append(made["token"])
    listed = world.byod_json("tokens", "list")
    assert [t["token_id"] for t in listed] == [made["token_id"]]
    assert made["token"] not in json.dumps(listed)
    assert "app-backend" in world.byod("tokens", "list").stdout
    world.byod("tokens", "revoke", made["token_id"])
    with world.store() as store:
        [token] = store.list_tokens()
        assert token.revoked_at is not None

    rec = world.byod_json("reconcile")
    assert rec["ok"] is True and {r["state"] for r in rec["results"]} == {"in_sync"}, rec
    applied = world.byod_json("reconcile", "--apply")
    assert applied["ok"] is True and applied["fixed"] == 0, applied

    with world.store() as store:
        before = store.get_user("dave").last_connection_test
    out = world.byod("monitor", "--once", "--interval", "1").stdout
    assert "healthy 4" in out, out
    with world.store() as store:
        after = store.get_user("dave").last_connection_test
    assert before is not None and after is not None and after > before


# -- the key, the registry itself ----------------------------------------------------------------

def test_keys_rotate(world: World) -> None:
    old = world.env["BYOD_ENCRYPTION_KEY"]
    new = world.byod("keys", "generate", scan=False).stdout.strip()
    world.secrets.append(new)
    with world.store() as store:
        before = {u: store.get_user(u).key_ct for u in USERS}
    world.env.update({"BYOD_ENCRYPTION_KEY": new, "BYOD_ENCRYPTION_KEYS_OLD": old})
    out = world.byod("keys", "rotate").stdout
    assert "4 rotated" in out, out
    world.env.pop("BYOD_ENCRYPTION_KEYS_OLD")
    with world.store() as store:
        for user in USERS:
            assert store.get_user(user).key_ct != before[user]
    # the new key alone opens every credential
    assert world.byod_json("test-connection", "--user", "bob")["connection_status"] == \
        "connected"


def test_registry_check_and_copy_there_and_back(world: World) -> None:
    assert "sound" in world.byod("registry", "check").stdout
    checked = world.byod_json("registry", "check")
    assert checked["ok"] is True and checked["schema_version"] == 7, checked

    sqlite = world.tmp / "moved.sqlite3"
    there = world.byod_json("registry", "copy", "--to", str(sqlite))
    assert there["ok"] is True and there["rows"] > 0, there
    back_url = world.pg.url(world.pg.create_database())
    back = world.byod_json("registry", "copy", "--to", back_url,
                           extra={"BYOD_REGISTRY": str(sqlite)})
    assert back["ok"] is True and back["rows"] == there["rows"], back
    assert "postgresql://byod@" in back["target"]
    with world.store() as source, world.store(back_url) as target:
        checks = verify_copy(source, target)
        assert checks and all(c.ok for c in checks), [c.to_dict() for c in checks if not c.ok]
    # the copy is a working registry: the CLI reads it as it read the original
    status = world.byod_json("status", extra={"BYOD_REGISTRY": back_url})
    assert sorted(u["user_id"] for u in status["users"]) == sorted(USERS)
    # and the source is refused as its own target
    world.byod("registry", "copy", "--to", world.url, expect=1)


# -- disconnect ----------------------------------------------------------------------------------

def test_disconnect_keep_and_migrate(world: World) -> None:
    bob = world.deps["bob"]
    target = DeploymentTarget("bob", bob.url, bob.admin_key, True)
    with ConvexHttpClient(target, timeout=30) as client:
        for title in ("one", "two"):
            client.mutation("notes:create", {"userId": "bob", "title": title,
                                             "body": f"{title} body"})

    kept = world.byod_json("disconnect", "--user", "alice", "--data", "keep")
    assert kept["status"] == "disconnected", kept
    moved = world.byod_json("disconnect", "--user", "bob", "--data", "migrate")
    assert moved["status"] == "disconnected" and moved["verified"], moved
    on_main = [d for d in world.fleet.documents(world.deps["main"].name, "notes")["notes"]
               if d.get("userId") == "bob"]
    assert sorted(d["title"] for d in on_main) == ["one", "two"]
    # alice's data stayed where it was
    assert world.fleet.documents(world.deps["alice"].name)

    with world.store() as store:
        for user in ("alice", "bob"):
            assert store.get_user(user).connection_status == "disconnected", user
        assert {u.user_id for u in store.list_users(connection_status=["connected"])} == \
            {"carol", "dave"}
        events = {e.event for e in store.audit_log("bob")}
        assert any("disconnect" in e for e in events), events
    # bob comes back on a new deployment, his content copied from main
    [fresh] = world.fleet.add(1)
    world.deps["bob-new"] = fresh
    world.secrets += [fresh.admin_key, fresh.admin_key.split("|", 1)[1]]
    world.byod("connect", "--user", "bob", "--url", fresh.url, "--key-stdin",
               "--allow-insecure-local", "--copy-from-main", stdin=fresh.admin_key)
    copied = world.fleet.documents(fresh.name, "notes")["notes"]
    assert sorted(d["title"] for d in copied) == ["one", "two"]
    with world.store() as store:
        row = store.get_user("bob")
        assert (row.connection_status, row.schema_version) == ("connected", HEAD)
        assert store.count("progress") >= 1  # the copy's progress was kept in the registry

    world.byod("disconnect", "--user", "dave", "--data", "delete", expect=3)
    with world.store() as store:
        assert store.get_user("dave").connection_status == "connected"
    gone = world.byod_json("disconnect", "--user", "dave", "--data", "delete", "--yes")
    assert gone["status"] == "disconnected", gone
    text = world.byod("status").stdout
    assert "2 connected, 2 disconnected" in text, text


def test_no_secret_in_any_output(world: World) -> None:
    assert len(world.outputs) > 40
    for out in world.outputs:
        world.assert_clean(out, "some command")
