"""The fleet rollout over in-memory deployments, a real SQLite registry and a real vault:
waves, the failure budget and resume, canary halts, two rollouts at once, dry runs, a
crash mid-rollout, and secrets kept out of reports."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from engine.errors import DeploymentUnauthorized, RolloutError
from engine.events import (
    BudgetExhausted,
    DeploymentFailed,
    EventLog,
    RolloutFinished,
    WaveStarted,
)
from engine.fleet.rollout import (
    RolloutOptions,
    parse_budget,
    parse_waves,
    plan_waves,
    rollout,
    rollout_async,
)
from engine.ports.deployment import DeploymentTarget
from engine.registry.sqlite import SqliteStore
from engine.vault import Vault, generate_key
from fleet.runner.fakes import (
    Crash,
    FakeAdapter,
    FakeDeployment,
    RecordingKit,
    SchemaBook,
)

SECRET_KEY = "convex-self-hosted|" + "ab" * 24
RUN_ARGS = ("resume", "emit", "connector")  # the rest of a run's keywords are options


class FakeConnector:
    """A connector over in-memory deployments: ``async_deployer`` is the test's function
    (no functions client: the fake adapters run functions themselves)."""

    def __init__(self, make):
        self.make = make

    def async_deployer(self, target: DeploymentTarget):
        return self.make(target)


class Fleet:
    """A registry, a vault and in-memory deployments, wired like the real thing."""

    def __init__(self, tmp_path: Path):
        self.path = tmp_path / "registry.sqlite3"
        self.store = SqliteStore(self.path)
        self.vault = Vault.from_hex(generate_key())
        self.book = SchemaBook()
        self.kit = RecordingKit(self.book)
        self.deps: dict[str, FakeDeployment] = {}

    def add(self, uid: str, version: str = "v1", docs: int = 12) -> FakeDeployment:
        url_ct, key_ct = self.vault.encrypt_credentials(
            uid, f"http://127.0.0.1:9/{uid}", SECRET_KEY)
        self.store.upsert_credentials(uid, url_ct=url_ct, key_ct=key_ct)
        self.store.set_connection_status(uid, "connected")
        bundle = self.kit.version_bundle(version)
        self.store.set_deployment(uid, status="deployed", version=version,
                                  fingerprint=bundle.fingerprint)
        dep = FakeDeployment(uid, self.book)
        dep.seed(docs, bundle)
        self.deps[uid] = dep
        return dep

    def adapters(self, target: DeploymentTarget):
        assert target.admin_key == SECRET_KEY  # decrypted by the vault, for the adapter only
        return FakeAdapter(self.deps[target.label]), None

    def run(self, target="v3", **kw):
        """A rollout over this fleet: ``resume``, ``emit`` and ``connector`` as given, every
        other keyword a ``RolloutOptions`` field."""

        run = {k: kw.pop(k) for k in RUN_ARGS if k in kw}
        run.setdefault("emit", EventLog())
        run.setdefault("connector", FakeConnector(self.adapters))
        kw.setdefault("lease_ttl_s", 5.0)
        return rollout(target, store=self.store, vault=self.vault, config=self.kit.config,
                       versions=self.kit, options=RolloutOptions(**kw), **run)

    def on_v3(self, uid: str) -> bool:
        dep = self.deps[uid]
        return (dep.deployed.version_id == "v3"
                and dep.valid_under(self.kit.graph.get("v3").schema) == []
                and self.store.get_user(uid).schema_version == "v3")


@pytest.fixture()
def fleet(tmp_path):
    f = Fleet(tmp_path)
    yield f
    f.store.close()


def test_budget_and_wave_parsing():
    assert parse_budget("10%", 25) == 2 and parse_budget("3", 10) == 3 and parse_budget(0, 5) == 0
    for bad in ("-1", "x", "120%"):
        with pytest.raises(RolloutError):
            parse_budget(bad, 10)
    assert parse_waves("10%, 50%,100%") == ("10%", "50%", "100%")
    with pytest.raises(RolloutError):
        parse_waves("10%,abc")
    waves = plan_waves([f"u{i:02d}" for i in range(20)], canary=2, waves=("10%", "50%", "100%"),
                       canary_first=["u07"])
    assert [(n, len(us)) for n, us in waves] == [("canary", 2), ("50%", 8), ("100%", 10)]
    assert waves[0][1] == ["u07", "u00"]
    assert sorted(u for _, us in waves for u in us) == [f"u{i:02d}" for i in range(20)]


def test_rollout_brings_mixed_fleet_to_target(fleet):
    for i in range(4):
        fleet.add(f"a{i}", "v1")
    for i in range(3):
        fleet.add(f"b{i}", "v2")
    fleet.add("c0", "v3")  # already there: not selected
    log = EventLog()
    report = fleet.run(emit=log, canary=1, waves=("50%", "100%"), concurrency=3)
    assert report.status == "completed" and report.ok
    assert report.counts == {"succeeded": 7}
    assert all(fleet.on_v3(u) for u in fleet.deps)
    assert fleet.deps["c0"].deploys == 0
    assert [w.wave for w in log.of(WaveStarted)] == ["canary", "50%", "100%"]
    assert set(report.plans) == {"v1", "v2"}
    nodes = {n["id"]: n for n in report.graph["nodes"]}
    assert (nodes["v1"]["before"], nodes["v3"]["after"]) == (4, 7)
    doc = fleet.store.load_rollout(report.rollout_id)
    assert doc["status"] == "completed"
    assert all(r["status"] == "succeeded" for r in doc["deployments"].values())
    # each deployment: exactly two deploys (widen + target), whatever its path length
    assert {fleet.deps[u].deploys for u in fleet.deps if u != "c0"} == {2}


def test_budget_halts_leaves_rest_untouched_and_resume_finishes(fleet):
    for i in range(8):
        fleet.add(f"u{i}")
    for bad in ("u2", "u3", "u4"):
        fleet.deps[bad].docs[f"{bad}-00001"]["userId"] = 7  # violates every schema
    log = EventLog()
    report = fleet.run(emit=log, canary=1, waves=("100%",), concurrency=1, max_failures="1")
    assert report.status == "halted" and not report.ok
    # canary u0, then u1 ok, u2 fails (within budget), u3 fails (over it): halt
    assert report.counts == {"failed": 2, "pending": 4, "succeeded": 2}
    assert log.of(BudgetExhausted)[0].untouched == 4
    for uid in ("u4", "u5", "u6", "u7"):  # untouched: never contacted
        assert fleet.deps[uid].deploys == 0 and fleet.deps[uid].mutations == 0
    failed = {r["user_id"]: r for r in report.rows if r["status"] == "failed"}
    assert set(failed) == {"u2", "u3"}
    assert {r["error_type"] for r in failed.values()} == {"SchemaValidationFailed"}
    assert fleet.store.get_user("u2").deployment_status == "failed"
    for bad in ("u2", "u3", "u4"):
        fleet.deps[bad].docs[f"{bad}-00001"]["userId"] = bad
    again = fleet.run(resume=report.rollout_id, concurrency=4)
    assert again.rollout_id == report.rollout_id and again.status == "completed"
    assert again.counts == {"succeeded": 8}
    assert all(fleet.on_v3(u) for u in fleet.deps)
    for uid in ("u0", "u1"):  # finished the first time: not redone
        assert fleet.deps[uid].deploys == 2


def test_canary_failure_halts_before_any_wave(fleet):
    for i in range(5):
        fleet.add(f"u{i}")
    fleet.deps["u0"].fault = "revoked"
    report = fleet.run(canary=1, max_failures="100%")
    assert report.status == "halted" and "canary" in report.halted_reason
    assert report.counts == {"failed": 1, "pending": 4}
    row = next(r for r in report.rows if r["status"] == "failed")
    assert (row["user_id"], row["error_type"], row["error_kind"]) == (
        "u0", "DeploymentUnauthorized", "auth")


def test_two_rollouts_at_once_never_work_the_same_deployment(fleet, tmp_path):
    for i in range(6):
        dep = fleet.add(f"u{i}")
        dep.before_deploy = lambda b: time.sleep(0.05)
    second = SqliteStore(fleet.path)  # a second process would open its own connection

    async def both():
        common = dict(vault=fleet.vault, config=fleet.kit.config, versions=fleet.kit,
                      connector=FakeConnector(fleet.adapters),
                      options=RolloutOptions(lease_ttl_s=5.0, canary=0, waves=("100%",),
                                             concurrency=6))
        return await asyncio.gather(
            rollout_async("v3", store=fleet.store, **common),
            rollout_async("v3", store=second, **common))

    r1, r2 = asyncio.run(both())
    second.close()
    for uid, dep in fleet.deps.items():
        assert dep.deploys == 2, uid  # worked once: one widen, one target
        statuses = sorted(r["status"] for r in r1.rows + r2.rows if r["user_id"] == uid)
        assert statuses.count("succeeded") == 1
        assert set(statuses) <= {"succeeded", "skipped", "already"}
        assert fleet.on_v3(uid)


def test_dry_run_changes_nothing(fleet):
    for i in range(3):
        fleet.add(f"u{i}", "v1" if i else "v2")
    fleet.store.close()
    before = fleet.path.read_bytes()
    fleet.store = SqliteStore(fleet.path)
    snapshot = {u: json.dumps(d.docs, sort_keys=True) for u, d in fleet.deps.items()}
    log = EventLog()
    report = fleet.run(dry_run=True, emit=log)
    assert report.status == "dry_run" and report.counts == {"planned": 3}
    assert {r["deploys"] for r in report.rows} == {2}
    assert all(r["steps"] for r in report.rows)
    assert all(d.deploys == 0 and d.mutations == 0 for d in fleet.deps.values())
    assert {u: json.dumps(d.docs, sort_keys=True) for u, d in fleet.deps.items()} == snapshot
    assert fleet.store.list_rollouts() == []
    fleet.store.close()
    assert fleet.path.read_bytes() == before
    fleet.store = SqliteStore(fleet.path)
    assert log.of(RolloutFinished)[0].status == "dry_run"


def test_crash_mid_rollout_then_resume(fleet):
    for i in range(5):
        fleet.add(f"u{i}", docs=30)
    fleet.kit.batch_size = lambda plan, ds: 4  # type: ignore[method-assign]
    calls = {"n": 0}

    def die(path, args):
        calls["n"] += 1
        if calls["n"] == 9:
            raise Crash("SIGKILL")

    fleet.deps["u2"].hook = die
    with pytest.raises(Crash):
        fleet.run(canary=0, waves=("100%",), concurrency=5)
    rid = fleet.store.list_rollouts()[0]["rollout_id"]
    assert fleet.store.load_rollout(rid)["status"] == "running"
    fleet.deps["u2"].hook = None
    report = fleet.run(resume=rid)
    assert report.status == "completed"
    assert {r["status"] for r in report.rows} <= {"succeeded", "already"}
    for uid, dep in fleet.deps.items():
        assert fleet.on_v3(uid)
        assert sorted(dep.docs) == [f"{uid}-{i:05d}" for i in range(30)]
        assert all(e.status in ("completed", "skipped") for e in fleet.store.journal(uid)) or \
            any(e.status == "failed" and "superseded" in (e.error or "")
                for e in fleet.store.journal(uid))


def test_no_secret_in_report_or_events(fleet):
    fleet.add("u0")

    def adapters(target):
        class Leaky(FakeAdapter):
            def read_version(self):
                raise DeploymentUnauthorized(f"key {target.admin_key} rejected at {target.url}")
        return Leaky(fleet.deps[target.label]), None

    log = EventLog()
    report = rollout("v3", store=fleet.store, vault=fleet.vault, config=fleet.kit.config,
                     versions=fleet.kit, connector=FakeConnector(adapters), emit=log,
                     options=RolloutOptions(canary=0))
    text = json.dumps(report.to_dict()) + json.dumps([e.to_dict() for e in log.events])
    text += json.dumps(fleet.store.load_rollout(report.rollout_id))
    assert "ab" * 24 not in text and "127.0.0.1:9" not in text
    assert log.of(DeploymentFailed)[0].error_type == "DeploymentUnauthorized"
