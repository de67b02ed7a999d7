"""``reconcile`` over in-memory deployments that keep their own record, with the real
SQLite registry and vault: what differs is named, what is trustworthy is rebuilt, drift
and unreadable deployments are left alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from ops_fakes import ADMIN_KEY_SECRET, table, version

from engine.bundle.compiler import compile_version
from engine.config import EngineConfig
from engine.fleet.artifacts import PlanKit, plan_id_of
from engine.fleet.reconcile import reconcile
from engine.plan.graph import VersionGraph
from engine.ports.registry import JournalEntry
from engine.schema.models import MigrationOp

from .fakes import RecordingDeployment, RecordingFleet

V1 = version("v1", 1, table("notes", title="string"))
V2 = version("v2", 2, table("notes", title="string", pinned="optional(boolean)"),
             parents=("v1",))
V3 = version("v3", 3, table("notes", title="string", pinned="boolean"),
             parents=("v2",)).model_copy(update={"migrations": (
                 MigrationOp(op="backfill", table="notes", field="pinned", value=False),)})
GRAPH = VersionGraph([V1, V2, V3])
CONFIG = EngineConfig()
KIT = PlanKit(GRAPH, CONFIG)
FP = {v.id: compile_version(v, CONFIG).fingerprint for v in (V1, V2, V3)}


@pytest.fixture
def fleet(tmp_path: Path) -> RecordingFleet:
    return RecordingFleet(tmp_path)


def run(fleet: RecordingFleet, users: Any = "all", **kw: Any):  # type: ignore[no-untyped-def]
    kw.setdefault("timeout", 0.5)
    return reconcile(users, store=fleet.store, vault=fleet.vault, config=CONFIG, graph=GRAPH,
                     connector=fleet, **kw)


def add(fleet: RecordingFleet, uid: str, vid: str = "v1", **kw: Any) -> RecordingDeployment:
    return fleet.add(uid, version=vid, fingerprint=FP[vid], **kw)


def journal_plan(fleet: RecordingFleet, uid: str, source: str, target: str,
                 statuses: dict[str, str]) -> tuple[str, Any]:
    """The runner's journal rows for the real plan source -> target (status by step id,
    default completed)."""

    plan = KIT.plan(source, target)
    pid = plan_id_of(plan)
    fleet.store.journal_plan([
        JournalEntry(user_id=uid, plan_id=pid, step_id=str(s.id), seq=i, kind=s.kind,
                     status=statuses.get(str(s.id), "completed"),  # type: ignore[arg-type]
                     version=plan.target, fingerprint=KIT.step_fingerprint(plan, s),
                     created_at=time.time() - 60)
        for i, s in enumerate(plan.steps)])
    return pid, plan


def reconcile_audits(fleet: RecordingFleet, uid: str) -> list[dict[str, Any]]:
    return [a.detail for a in fleet.store.audit_log(uid) if a.event == "reconcile"]


def test_in_sync_reports_nothing_and_changes_nothing(fleet: RecordingFleet) -> None:
    add(fleet, "a")
    add(fleet, "b", "v2")
    before = {u.user_id: u for u in fleet.store.list_users()}
    report = run(fleet, apply=True)
    assert report.ok and report.counts == {"in_sync": 2}
    assert all(not r.findings for r in report.results)
    assert {u.user_id: u for u in fleet.store.list_users()} == before
    assert not reconcile_audits(fleet, "a") and not reconcile_audits(fleet, "b")
    assert fleet.store.current_lease("a") is None  # the apply lease is released


def test_lost_version_is_reported_then_rebuilt_with_apply(fleet: RecordingFleet) -> None:
    add(fleet, "a", "v2")
    add(fleet, "b")
    fleet.sql("UPDATE users SET schema_version = NULL, schema_fingerprint = NULL, "
              "deployment_status = 'not_started' WHERE user_id = 'a'")
    report = run(fleet)
    assert not report.ok
    res = report.result("a")
    assert res.state == "differs"
    got = {f.field: (f.registry, f.deployment, f.fixable) for f in res.findings}
    assert got == {"schema_version": (None, "v2", True),
                   "schema_fingerprint": (None, FP["v2"], True),
                   "deployment_status": ("not_started", "deployed", True)}
    assert fleet.store.get_user("a").schema_version is None  # read-only by default
    assert report.result("b").state == "in_sync"

    fixed = run(fleet, apply=True)
    assert fixed.ok and fixed.result("a").state == "fixed"
    assert all(f.fixed for f in fixed.result("a").findings)
    user = fleet.store.get_user("a")
    assert (user.schema_version, user.schema_fingerprint, user.deployment_status) == (
        "v2", FP["v2"], "deployed")
    audits = reconcile_audits(fleet, "a")
    assert {a["field"] for a in audits} == {"schema_version", "schema_fingerprint",
                                            "deployment_status"}
    assert {"field": "schema_version", "registry": None, "deployment": "v2"}.items() <= \
        next(a for a in audits if a["field"] == "schema_version").items()
    again = run(fleet)
    assert again.ok and again.counts == {"in_sync": 2}


def test_registry_behind_a_recorded_rollout_is_brought_forward(fleet: RecordingFleet) -> None:
    # The rollout deployed v2 and recorded it on the deployment, then crashed before its
    # registry write: the registry still says v1, deploying, record step running.
    dep = add(fleet, "a")
    pid, _plan = journal_plan(fleet, "a", "v1", "v2", {"record:v2": "running"})
    fleet.store.set_deployment("a", status="deploying")
    dep.version, dep.fingerprint = "v2", FP["v2"]
    dep.record_version("v2", FP["v2"], plan_id=pid)
    report = run(fleet)
    got = {(f.field, f.step_id): (f.registry, f.deployment) for f in report.result("a").findings}
    assert got == {("schema_version", None): ("v1", "v2"),
                   ("schema_fingerprint", None): (FP["v1"], FP["v2"]),
                   ("deployment_status", None): ("deploying", "deployed"),
                   ("journal", "record:v2"): ("running", "completed")}
    fixed = run(fleet, apply=True)
    assert fixed.ok and fixed.result("a").state == "fixed"
    user = fleet.store.get_user("a")
    assert (user.schema_version, user.schema_fingerprint, user.deployment_status) == (
        "v2", FP["v2"], "deployed")
    assert {e.step_id: e.status for e in fleet.store.journal("a", pid)}["record:v2"] == \
        "completed"
    assert run(fleet).ok


@pytest.mark.parametrize("what", ["fingerprint", "version", "widened"])
def test_unknown_bundle_is_drift_and_left_untouched(fleet: RecordingFleet, what: str) -> None:
    dep = add(fleet, "a")
    if what == "fingerprint":
        dep.fingerprint = "f" * 64  # its own record still says v1 with the compiled one
        fleet.sql("UPDATE users SET schema_fingerprint = ? WHERE user_id = 'a'", "e" * 64)
    elif what == "version":
        dep.version, dep.fingerprint = "v9", "9" * 64
        dep.record_version("v9", "9" * 64)
    else:
        dep.kind, dep.version, dep.fingerprint = "widen", "v1__v3__widen", "w" * 64
    before = fleet.store.get_user("a")
    audits = len(fleet.store.audit_log("a"))
    report = run(fleet, apply=True)
    res = report.result("a")
    assert res.state == "drifted" and not report.ok
    assert res.findings and not any(f.fixable or f.fixed for f in res.findings)
    assert all("drift" in f.reason for f in res.findings)
    assert fleet.store.get_user("a") == before
    assert len(fleet.store.audit_log("a")) == audits
    if what == "fingerprint":
        f = next(f for f in res.findings if f.field == "schema_fingerprint")
        assert (f.registry, f.deployment) == ("e" * 64, "f" * 64)
    if what == "version":
        f = next(f for f in res.findings if f.field == "schema_version")
        assert (f.registry, f.deployment) == ("v1", "v9")
        assert "not in the version graph" in f.reason


def test_stale_bundle_the_deployment_recorded_is_trusted(fleet: RecordingFleet) -> None:
    # A config change since: v1 compiles differently now, but the deployment runs exactly
    # what it recorded. The registry lost the row's version: rebuilt from the record.
    dep = add(fleet, "a")
    dep.fingerprint = "0" * 64
    dep.record_version("v1", "0" * 64)
    fleet.sql("UPDATE users SET schema_version = NULL, schema_fingerprint = NULL "
              "WHERE user_id = 'a'")
    report = run(fleet, apply=True)
    res = report.result("a")
    assert res.state == "fixed", res.findings
    assert any("stale" in n for n in res.notes)
    user = fleet.store.get_user("a")
    assert (user.schema_version, user.schema_fingerprint) == ("v1", "0" * 64)


def test_completed_data_step_running_in_the_registry_is_fixed(fleet: RecordingFleet) -> None:
    # Left on v2 -> v3's widened bundle: the data step finished on the deployment, the
    # runner died before its journal write. The registry keeps the version under it (v2).
    dep = add(fleet, "a", "v2")
    pid, plan = journal_plan(fleet, "a", "v2", "v3", {
        "backfill_notes_pinned_1159cf4e": "running", "deploy_target:v3": "pending",
        "verify:v3": "pending", "record:v3": "pending"})
    widen = KIT.step_bundle(plan, plan.steps[0])
    dep.kind, dep.version, dep.fingerprint = "widen", widen.version_id, widen.fingerprint
    dep.record_step("backfill_notes_pinned_1159cf4e", "v3", processed=7)
    fleet.store.set_deployment("a", status="deploying")
    report = run(fleet, apply=True)
    res = report.result("a")
    assert [(f.field, f.step_id, f.registry, f.deployment, f.fixed) for f in res.findings] == [
        ("journal", "backfill_notes_pinned_1159cf4e", "running", "completed", True)]
    assert res.state == "fixed" and report.ok
    assert any("migrating" in n and "v2 -> v3" in n for n in res.notes)
    steps = {e.step_id: e.status for e in fleet.store.journal("a", pid)}
    assert steps["backfill_notes_pinned_1159cf4e"] == "completed"
    assert steps["deploy_target:v3"] == "pending"  # the rollout still has to finish
    user = fleet.store.get_user("a")
    assert (user.schema_version, user.deployment_status) == ("v2", "deploying")
    assert [a["step"] for a in reconcile_audits(fleet, "a")] == [
        "backfill_notes_pinned_1159cf4e"]


def test_widened_bundle_after_a_registry_restore(fleet: RecordingFleet) -> None:
    # Restored from a backup taken before the rollout: no journal, status "deployed".
    dep = add(fleet, "a", "v2")
    plan = KIT.plan("v2", "v3")
    widen = KIT.step_bundle(plan, plan.steps[0])
    dep.kind, dep.version, dep.fingerprint = "widen", widen.version_id, widen.fingerprint
    res = run(fleet, apply=True).result("a")
    got = {f.field: (f.registry, f.deployment, f.fixed) for f in res.findings}
    assert got == {"deployment_status": ("deployed", "deploying", True)}
    user = fleet.store.get_user("a")
    assert (user.schema_version, user.schema_fingerprint) == ("v2", FP["v2"])


def test_a_completed_registry_step_the_deployment_never_finished(fleet: RecordingFleet) -> None:
    dep = add(fleet, "a", "v2")
    pid, _plan = journal_plan(fleet, "a", "v2", "v3", {})
    dep.version, dep.fingerprint = "v3", FP["v3"]
    dep.record_version("v3", FP["v3"], plan_id=pid)
    dep.record_step("backfill_notes_pinned_1159cf4e", "v3", status="running", processed=3)
    fleet.store.set_deployment("a", version="v3", fingerprint=FP["v3"])
    report = run(fleet, apply=True)
    res = report.result("a")
    assert [(f.field, f.step_id, f.registry, f.deployment, f.fixable) for f in res.findings] \
        == [("journal", "backfill_notes_pinned_1159cf4e", "completed", "running", False)]
    assert res.state == "differs" and not report.ok


def test_a_step_completed_before_this_plan_existed_is_not_this_plans(
        fleet: RecordingFleet) -> None:
    dep = add(fleet, "a", "v2")
    journal_plan(fleet, "a", "v2", "v3", {"backfill_notes_pinned_1159cf4e": "pending"})
    dep.record_step("backfill_notes_pinned_1159cf4e", "v3", at=time.time() - 86_400)
    assert run(fleet).result("a").state == "in_sync"


def test_unreachable_revoked_and_unconnected_users_are_skipped(fleet: RecordingFleet) -> None:
    add(fleet, "down").fault = "down"
    add(fleet, "revoked").fault = "revoked"
    add(fleet, "gone", status="disconnected")
    fleet.store.set_entitled("nocreds", True)
    for uid in ("down", "revoked"):
        fleet.sql("UPDATE users SET schema_version = NULL WHERE user_id = ?", uid)
    before = {u.user_id: u for u in fleet.store.list_users()}
    report = run(fleet, apply=True)
    states = {r.user_id: r.state for r in report.results}
    assert states == {"down": "unreachable", "revoked": "unauthorized", "gone": "skipped",
                      "nocreds": "skipped"}
    assert not report.ok and not report.remaining
    assert {u.user_id: u for u in fleet.store.list_users()} == before
    assert all(not reconcile_audits(fleet, uid) for uid in states)
    assert "nothing changed" in (report.result("down").reason or "")


def test_a_user_being_worked_is_left_to_its_runner(fleet: RecordingFleet) -> None:
    add(fleet, "a")
    fleet.sql("UPDATE users SET schema_version = NULL WHERE user_id = 'a'")
    fleet.store.acquire_lease("a", "rollout-123", 60)
    for apply in (False, True):
        res = run(fleet, apply=apply).result("a")
        assert res.state == "busy" and "rollout-123" in (res.reason or "")
    assert fleet.store.get_user("a").schema_version is None


def test_no_secret_reaches_the_report(fleet: RecordingFleet) -> None:
    import json

    dep = add(fleet, "a")
    dep.fault = "down"
    leaky = add(fleet, "b")

    def leak(path: str, args: dict[str, Any]) -> None:
        from engine.errors import DeploymentUnreachable

        raise DeploymentUnreachable(f"cannot reach {leaky.url}?adminKey={leaky.key}",
                                    deployment="b")

    leaky.before_call = leak
    add(fleet, "c", "v2").fingerprint = "f" * 64
    text = json.dumps(run(fleet, apply=True).to_dict(), default=str)
    for secret in (ADMIN_KEY_SECRET, leaky.url, dep.url, leaky.key):
        assert secret not in text
    assert "unreachable" in text
