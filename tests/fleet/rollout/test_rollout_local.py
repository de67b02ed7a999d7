"""Rollouts against real local deployments (real `convex deploy`, real HTTP, real data):
SIGKILL at several points then resume, classified faults and the failure budget, two
rollouts at once, and a dry run that changes nothing. Small fleets, bounded runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from local_ops import needs_toolchain

from engine.config import EngineConfig
from engine.convex.http import ConvexHttpClient
from engine.events import EventLog
from engine.fleet.rollout import RolloutOptions, rollout
from engine.lifecycle.connect import connect
from engine.local import LocalFleet
from engine.plan.graph import VersionGraph
from engine.registry.sqlite import SqliteStore
from engine.schema.loader import load_versions
from engine.schema.validate_doc import validate_document
from engine.vault import Vault, generate_key

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain,
              pytest.mark.timeout(900)]

CHILD = Path(__file__).with_name("rollout_child.py")
ROOT = Path(__file__).resolve().parents[3]
DOCS = 90
MAX_WRITES = 40  # the harness refuses bigger pages like Convex's transaction limits

VERSIONS = {
    "0001_base.yaml": """\
description: Notes, the first shape.
parents: []
tables:
  notes:
    location: user
    fields: {userId: string, title: string, 'body?': string, 'priority?': string}
    indexes: {by_user: [userId]}
""",
    "0002_body.yaml": """\
description: Every note has a body; priorities are a closed set.
parents: [0001_base]
tables:
  notes:
    location: user
    fields: {userId: string, title: string, body: string, 'priority?': '"low" | "high"'}
    indexes: {by_user: [userId]}
migrations:
  - {op: backfill, table: notes, field: body, value: ""}
  - {op: map_values, table: notes, field: priority, mapping: {lo: low, hi: high}}
""",
    "0003_headline.yaml": """\
description: Titles become headlines.
parents: [0002_body]
tables:
  notes:
    location: user
    fields: {userId: string, headline: string, body: string, 'priority?': '"low" | "high"'}
    indexes: {by_user: [userId]}
migrations:
  - {op: rename, table: notes, from: title, to: headline}
""",
}
TARGET = "0003_headline"


class Env:
    def __init__(self, root: Path):
        self.root = root
        self.versions_dir = root / "versions"
        self.versions_dir.mkdir(parents=True)
        for name, text in VERSIONS.items():
            (self.versions_dir / name).write_text(text)
        self.key = generate_key()
        self.config = EngineConfig(registry_path=root / "registry.sqlite3",
                                   versions_dir=self.versions_dir, deploy_timeout_s=180,
                                   http_timeout_s=5)
        self.versions = load_versions(self.versions_dir, self.config)
        self.graph = VersionGraph(self.versions)
        self.store = SqliteStore(self.config.registry_path)
        self.vault = Vault.from_hex(self.key)
        self.fleet = LocalFleet.start(0, root / "fleet", max_writes=MAX_WRITES, timeout=90)
        self.seeded: dict[str, list[str]] = {}
        self.names: dict[str, str] = {}  # user id -> local deployment name

    def users(self, prefix: str, n: int, *, extra: Callable[[int], dict] | None = None) -> list[str]:
        """``n`` new deployments, connected at version 1 and seeded with ``DOCS`` notes."""

        v1 = self.graph.resolve(1)
        out = []
        for i, dep in enumerate(self.fleet.add(n)):
            uid = f"{prefix}{i}"
            connect(uid, dep.url, dep.admin_key, store=self.store, vault=self.vault,
                    config=self.config, versions=[v1], allow_insecure_local=True)
            docs = []
            for k in range(DOCS):
                doc: dict[str, Any] = {"userId": uid, "title": f"{uid} note {k}"}
                if k % 2:
                    doc["body"] = f"body {k}"
                if k % 3:
                    doc["priority"] = "lo" if k % 3 == 1 else "hi"
                docs.append(doc)
            if extra:
                docs.append(extra(i))
            with ConvexHttpClient(self.vault.target_for(self.store.get_user(uid))) as c:
                for start in range(0, len(docs), 30):
                    c.mutation("byod:importPage", {"table": "notes",
                                                   "documents": docs[start:start + 30]})
            self.seeded[uid] = sorted(d["title"] for d in docs)
            self.names[uid] = dep.name
            out.append(uid)
        return out

    def notes(self, uid: str) -> list[dict[str, Any]]:
        return self.fleet.documents(self.names[uid], "notes")["notes"]

    def assert_on_target(self, uid: str) -> None:
        user = self.store.get_user(uid)
        assert (user.schema_version, user.deployment_status) == (TARGET, "deployed"), uid
        table = self.graph.get(TARGET).schema.tables["notes"]
        notes = self.notes(uid)
        ids = [d["_id"] for d in notes]
        assert len(ids) == len(set(ids)) == len(self.seeded[uid]), uid  # exactly once
        assert sorted(d["headline"] for d in notes) == self.seeded[uid]
        for d in notes:
            assert validate_document(d, table) == [], (uid, d)
        with ConvexHttpClient(self.vault.target_for(user)) as c:
            info = c.read_version()
        assert (info.version, info.kind) == (TARGET, "version")

    def assert_journal_consistent(self, uid: str) -> None:
        entries = self.store.journal(uid)
        assert not [e for e in entries if e.status in ("running", "pending")], uid
        final = [e for e in entries if e.version == TARGET]
        last_plan = final[-1].plan_id
        assert all(e.status == "completed" for e in final if e.plan_id == last_plan), uid
        for e in entries:
            if e.status == "failed":
                assert "superseded" in (e.error or ""), (uid, e)

    def child(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "BYOD_ENCRYPTION_KEY": self.key, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen(
            [sys.executable, str(CHILD), str(self.config.registry_path),
             str(self.versions_dir), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=True, cwd=self.root)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("rollout-local"))
    try:
        yield e
    finally:
        e.fleet.stop()
        e.store.close()


def _events_until(proc: subprocess.Popen[str], stop: Callable[[dict], bool],
                  timeout: float = 400) -> list[dict]:
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event)
        if stop(event):
            return seen
        assert time.monotonic() < deadline, "child ran too long"
    raise AssertionError(f"the child ended before the kill point: {seen[-3:]} "
                         f"{proc.stderr.read() if proc.stderr else ''}")


def _kill(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the CLI dies with it
    proc.wait(timeout=30)


def _finish(proc: subprocess.Popen[str], timeout: float = 600) -> dict:
    out, err = proc.communicate(timeout=timeout)
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    assert lines and lines[-1]["event"] == "report", err[-2000:]
    return lines[-1]


KILL_POINTS: dict[str, Callable[[dict], bool]] = {
    # after a data page's mutation was journaled: the next page may already be applied
    "mid-data-step": lambda e: e["event"] == "page_done" and e["page"] == 2,
    # while the widened bundle is being pushed (a push takes tens of milliseconds)
    "mid-deploy": lambda e: e["event"] == "step_started" and e["kind"] == "deploy_widened",
    # between the target deploy and the record step
    "before-record": lambda e: e["event"] == "step_started" and e["kind"] == "record",
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_finishes_every_deployment(env: Env, point: str):
    users = env.users(f"k{list(KILL_POINTS).index(point)}-", 2)
    proc = env.child("--to", TARGET, "--concurrency", "2", "--batch", "25")
    events = _events_until(proc, KILL_POINTS[point])
    if point == "mid-deploy":
        time.sleep(0.02)  # into the push's HTTP calls, well before it can finish
    _kill(proc)
    rollout_id = events[0]["rollout_id"]
    assert env.store.load_rollout(rollout_id)["status"] == "running"
    report = _finish(env.child("--resume", rollout_id, "--concurrency", "2", "--batch", "25"))
    assert report["status"] == "completed" and report["ok"], report["deployments"]
    for uid in users:
        env.assert_on_target(uid)
        env.assert_journal_consistent(uid)
        # the deployment's own record of its steps agrees with the registry's journal
        with ConvexHttpClient(env.vault.target_for(env.store.get_user(uid))) as c:
            applied = c.query("byod:appliedSteps", {})
        assert applied, uid


def test_faults_are_classified_budget_halts_and_nothing_leaks(env: Env):
    users = env.users("f", 5, extra=lambda i: {"userId": "f", "title": "odd one",
                                                "priority": "urgent"} if i == 2 else
                      {"userId": "f", "title": "fine", "priority": "lo"})
    names = {u: env.names[u] for u in users}
    env.fleet.set_fault(names["f0"], "error500")
    env.fleet.set_fault(names["f1"], "revoked")
    # f2 holds a priority no mapping covers (schema-violating data for the target)
    env.fleet.set_fault(names["f4"], "delay", delay_ms=300)  # slow but healthy
    before = {u: env.notes(u) for u in ("f3", "f4")}
    log = EventLog()
    report = rollout(TARGET, store=env.store, vault=env.vault, config=env.config,
                     versions=env.versions, emit=log,
                     options=RolloutOptions(canary=0, waves=("100%",), concurrency=1,
                                            max_failures="2", lease_ttl_s=30.0))
    rows = {r["user_id"]: r for r in report.rows}
    assert report.status == "halted"
    assert (rows["f0"]["error_type"], rows["f0"]["error_kind"]) == ("DeploymentServerError", "server")
    assert (rows["f1"]["error_type"], rows["f1"]["error_kind"]) == ("DeploymentUnauthorized", "auth")
    # data the target schema cannot hold: the data step refuses, naming the document,
    # before any narrow deploy is attempted (the deployment keeps the widened schema)
    assert (rows["f2"]["error_type"], rows["f2"]["error_kind"]) == ("FunctionError", "function")
    assert rows["f2"]["step_id"].startswith("map_values_notes_priority")
    assert '"urgent"' in rows["f2"]["error"] and "document " in rows["f2"]["error"]
    assert rows["f3"]["status"] == rows["f4"]["status"] == "pending"  # untouched
    assert {u: env.notes(u) for u in ("f3", "f4")} == before
    assert env.store.get_user("f2").deployment_status == "failed"
    # fix the infrastructure faults; resume: everyone but the bad data reaches the target
    env.fleet.set_fault(names["f0"], "none")
    env.fleet.set_fault(names["f1"], "none")
    again = rollout(None, resume=report.rollout_id, store=env.store, vault=env.vault,
                    config=env.config, versions=env.versions, emit=log,
                    options=RolloutOptions(concurrency=3))  # resumed: the saved ones win
    rows = {r["user_id"]: r for r in again.rows}
    assert {u: r["status"] for u, r in rows.items()} == {
        "f0": "succeeded", "f1": "succeeded", "f2": "failed", "f3": "succeeded",
        "f4": "succeeded"}
    for uid in ("f0", "f1", "f3", "f4"):
        env.assert_on_target(uid)
    env.fleet.set_fault(names["f4"], "none")
    # no secret anywhere: report, events, journal, audit, rollout doc, registry file
    keys = [d.admin_key for d in env.fleet.deployments]
    texts = [json.dumps(report.to_dict()), json.dumps(again.to_dict()),
             json.dumps([e.to_dict() for e in log.events], default=str),
             json.dumps(env.store.load_rollout(report.rollout_id))]
    for uid in users:
        texts += [repr(e) for e in env.store.journal(uid)]
        texts += [json.dumps(a.detail, default=str) for a in env.store.audit_log(uid)]
    # reading the file drops this process's SQLite locks on it (POSIX): close the store first
    env.store.close()
    blob = "\n".join(texts) + env.config.registry_path.read_bytes().decode("latin-1")
    env.store = SqliteStore(env.config.registry_path)
    for key in keys:
        assert key not in blob and key.split("|")[1] not in blob


def test_two_rollouts_at_once_never_work_the_same_deployment(env: Env):
    users = env.users("t", 3)
    pushes = {u: env.fleet.state(env.names[u])["pushes"] for u in users}
    a = env.child("--to", TARGET, "--concurrency", "3")
    b = env.child("--to", TARGET, "--concurrency", "3")
    ra, rb = _finish(a), _finish(b)
    for uid in users:
        statuses = sorted(r["status"] for r in ra["deployments"] + rb["deployments"]
                          if r["user_id"] == uid)
        assert statuses.count("succeeded") == 1, (uid, statuses)
        assert set(statuses) <= {"succeeded", "skipped", "already"}
        env.assert_on_target(uid)
        # exactly one widen and one target push per deployment
        assert env.fleet.state(env.names[uid])["pushes"] - pushes[uid] == 2


@pytest.fixture
def own_env(tmp_path: Path) -> Iterator[Env]:
    """A registry and fleet of the test's own (the module's shared one holds users earlier
    tests left failed on purpose)."""

    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.fleet.stop()
        e.store.close()


def test_resuming_a_rollout_that_still_runs_is_refused(own_env: Env):
    """The second `--resume ID` while the first run is alive is refused at once; the first
    finishes alone and its saved record matches the deployments (no spurious failures)."""

    env = own_env
    users = env.users("live", 4)
    # only this test's users: others the module's earlier tests left behind must not decide
    # how long the first run lasts or whether it succeeds
    only = [arg for uid in users for arg in ("--only", uid)]
    first = env.child("--to", TARGET, "--concurrency", "1", "--batch", "2", *only)  # slow
    events = _events_until(first, lambda e: e["event"] == "page_done")
    rollout_id = events[0]["rollout_id"]
    # hold the first run alive (every call answers after 1 s) until the resume is decided,
    # however slowly the second process starts on a loaded machine
    for uid in users:
        env.fleet.set_fault(env.names[uid], "delay", delay_ms=1000)
    second = env.child("--resume", rollout_id, "--concurrency", "3")
    out, err = second.communicate(timeout=120)
    alive = first.poll() is None
    for uid in users:
        env.fleet.set_fault(env.names[uid], "none")
    assert alive, ("the first run ended before the resume was refused: "
                   f"first exit {first.returncode}, stderr {first.stderr.read()[-2000:]!r}, "
                   f"stdout {first.stdout.read()[-3000:]!r}; "
                   f"second exit {second.returncode}, stderr {err[-2000:]!r}, stdout {out[-2000:]!r}")
    assert second.returncode != 0 and f"rollout {rollout_id} is still running" in err, err
    assert "RolloutRunning" in err and f"process {first.pid} on " in err
    report = _finish(first)
    assert report["status"] == "completed" and report["ok"], report["deployments"]
    saved = env.store.load_rollout(rollout_id)
    assert saved["status"] == "completed"
    assert {r["status"] for r in saved["deployments"].values()} == {"succeeded"}
    for uid in users:
        env.assert_on_target(uid)
        env.assert_journal_consistent(uid)


def test_dry_run_changes_nothing(env: Env):
    users = env.users("d", 2)
    env.store.close()
    registry = env.config.registry_path.read_bytes()
    docs = {u: env.notes(u) for u in users}
    states = {u: env.fleet.state(env.names[u]) for u in users}
    cli = [str(Path(sys.executable).with_name("byod")), "rollout", "--to", "head", "--dry-run"]
    result = subprocess.run(cli, capture_output=True, text=True, timeout=120, cwd=env.root,
                            env={**os.environ, "BYOD_REGISTRY": str(env.config.registry_path),
                                 "BYOD_VERSIONS_DIR": str(env.versions_dir)})
    assert result.returncode == 0, result.stderr
    assert "dry_run" in result.stdout and TARGET in result.stdout
    assert env.config.registry_path.read_bytes() == registry
    assert {u: env.notes(u) for u in users} == docs
    assert {u: env.fleet.state(env.names[u]) for u in users} == states
    env.store = SqliteStore(env.config.registry_path)

