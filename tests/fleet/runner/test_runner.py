"""The plan runner against in-memory deployments and a real SQLite registry: the happy
path, journal/resume semantics at every crash point, adaptive batches, reconcile and
drift, failures that stay retryable, leases, and redaction."""

from __future__ import annotations

import pytest

from engine.errors import FunctionError
from engine.events import (
    BatchResized,
    DeploymentDone,
    DeploymentFailed,
    DeploymentReconciled,
    DeploymentSkipped,
    EventLog,
    PageDone,
    StepCompleted,
    StepSkipped,
    StepStarted,
)
from engine.fleet.runner import run_plan

from .conftest import add_user
from .fakes import Crash, FakeAdapter


def _run(store, kit, dep, target="v3", *, holder="h1", log=None, plan=None, secrets=()):
    return run_plan(plan, user_id=dep.name, target=target, adapter=FakeAdapter(dep),
                    store=store, kit=kit, holder=holder, emit=log or EventLog(),
                    secrets=secrets, lease_ttl_s=5.0)


def _assert_on_v3(dep, kit, n):
    assert len(dep.docs) == n
    assert sorted(dep.docs) == [f"{dep.name}-{i:05d}" for i in range(n)]
    assert dep.valid_under(kit.graph.get("v3").schema) == []
    for i, doc in dep.docs.items():
        assert doc["headline"] == f"note {int(i.rsplit('-', 1)[1])}"
        assert "title" not in doc


def test_happy_path_two_deploys_and_every_document_migrated(store, kit, book):
    dep = add_user(store, kit, book, "alice", docs=25)
    log = EventLog()
    out = _run(store, kit, dep, log=log)
    assert out.status == "succeeded", out.error
    assert (out.before, out.source, out.after, out.deploys) == ("v1", "v1", "v3", 2)
    _assert_on_v3(dep, kit, 25)
    # v1 notes without a body got the default; the others kept theirs
    assert dep.docs["alice-00001"]["body"] == "" and dep.docs["alice-00003"]["body"] == "text 3"
    assert out.changed == 16 + 25  # backfill on the 16 without a body, then rename all
    user = store.get_user("alice")
    target = kit.version_bundle("v3")
    assert (user.schema_version, user.schema_fingerprint, user.deployment_status) == (
        "v3", target.fingerprint, "deployed")
    assert dep.records[-1] == {"version": "v3", "fingerprint": target.fingerprint}
    assert all(e.status == "completed" for e in store.journal("alice"))
    kinds = [e.kind for e in log.of(StepStarted)]
    assert kinds == ["deploy_widened", "run_data_step", "run_data_step", "deploy_target",
                     "verify", "record"]
    assert len(log.of(StepCompleted)) == 6 and len(log.of(DeploymentDone)) == 1
    # both data steps fit one page: one call ran them and journaled them on the deployment
    assert [(s["stepId"], s["status"], s["processed"]) for s in dep.steps] == [
        (e.data_step.id, "completed", 25) for e in _data_plan_steps(kit)]
    assert [c.path for c in dep.history if c.path.startswith("byodMigrations:")] == [
        "byodMigrations:runSteps"]


def test_already_at_target_does_nothing(store, kit, book):
    dep = add_user(store, kit, book, "bob", version="v3", docs=5)
    out = _run(store, kit, dep)
    assert out.status == "already" and out.deploys == 0 and dep.deploys == 0
    assert dep.mutations == 0


def _crash_at(dep, k, where):
    """Arrange for the process to 'die' at the k-th mutation or deploy."""

    count = {"n": 0}

    def tick(*_a):
        count["n"] += 1
        if count["n"] == k:
            raise Crash(f"killed at {where} #{k}")

    if where == "mutation":
        dep.hook = tick  # after the mutation applied, before the runner saw the result
    else:
        dep.before_deploy = tick
    return count


@pytest.mark.parametrize("where", ["mutation", "deploy"])
def test_crash_at_every_point_then_resume(store, kit, book, where):
    """Kill the runner after the k-th mutation (applied, unacknowledged) or before the
    k-th deploy, for every k until a run completes; the resumed run always finishes
    with every document present once and valid, and the journal fully completed."""

    k = 1
    while True:
        uid = f"u-{where}-{k}"
        dep = add_user(store, kit, book, uid, docs=23)
        kit_batch = kit.batch_size  # force several pages per step
        kit.batch_size = lambda plan, ds: 5  # type: ignore[method-assign]
        try:
            _crash_at(dep, k, where)
            try:
                out = _run(store, kit, dep)
            except Crash:
                pass
            else:
                assert out.status == "succeeded"
                break
            dep.hook = dep.before_deploy = None
            before = [e for e in store.journal(uid)]
            log = EventLog()
            out = _run(store, kit, dep, holder="h2", log=log)  # a new process, new holder
            # "already": the crash came after the deployment recorded the target
            assert out.status in ("succeeded", "already"), (k, out.error)
            _assert_on_v3(dep, kit, 23)
            # completed steps were not redone; a data step resumed at its journaled cursor
            done_before = {e.step_id for e in before if e.status == "completed"}
            if out.status == "succeeded":
                assert {e.step_id for e in log.of(StepSkipped)} == done_before
            first_pages = {}
            for ev in log.of(PageDone):
                first_pages.setdefault(ev.step_id, ev)
            for e in before:
                if e.kind == "run_data_step" and e.status == "running" and e.cursor:
                    ev = first_pages[e.step_id]
                    assert ev.total_processed == e.processed + ev.processed
            assert all(e.status == "completed" for e in store.journal(uid)), k
        finally:
            kit.batch_size = kit_batch  # type: ignore[method-assign]
        k += 1
    assert k > (10 if where == "mutation" else 2)  # it really crashed at every point


def test_lease_taken_over_after_crash_only_when_expired(store, kit, book):
    dep = add_user(store, kit, book, "carol")
    store.acquire_lease("carol", "dead-runner", 60.0)
    log = EventLog()
    out = _run(store, kit, dep, log=log)
    assert out.status == "skipped" and "dead-runner" in (out.error or "")
    assert dep.deploys == 0 and log.of(DeploymentSkipped)
    assert store.get_user("carol").schema_version == "v1"


def test_transaction_limit_halves_batch_and_still_migrates_everything(store, kit, book):
    dep = add_user(store, kit, book, "dave", docs=40)
    dep.tx_limit = 7
    log = EventLog()
    out = _run(store, kit, dep, log=log)
    assert out.status == "succeeded", out.error
    _assert_on_v3(dep, kit, 40)
    shrinks = [e for e in log.of(BatchResized) if e.reason.startswith("transaction limit")]
    assert shrinks and all(e.new <= e.old // 2 + 1 for e in shrinks)
    assert all(e.batch_size <= 7 for e in log.of(PageDone))


def test_registry_behind_is_reconciled_from_the_deployment(store, kit, book):
    dep = add_user(store, kit, book, "erin", version="v2", docs=10)
    store.set_deployment("erin", version="v1")  # the registry is stale
    log = EventLog()
    out = _run(store, kit, dep, log=log)
    assert out.status == "succeeded", out.error
    assert (out.before, out.source) == ("v1", "v2")
    assert log.of(DeploymentReconciled)[0].actual_version == "v2"
    ran = [e.step_id for e in log.of(StepStarted) if e.kind == "run_data_step"]
    assert len(ran) == 1 and "rename" in ran[0]  # only v2 -> v3
    _assert_on_v3(dep, kit, 10)


@pytest.mark.parametrize("tamper", ["fingerprint", "version"])
def test_drift_is_reported_not_guessed(store, kit, book, tamper):
    dep = add_user(store, kit, book, "fred")
    b = dep.deployed
    import dataclasses
    if tamper == "fingerprint":
        dep.deployed = dataclasses.replace(b, fingerprint="0" * 64)
    else:
        dep.deployed = dataclasses.replace(b, version_id="v9")
        dep.records = []
    log = EventLog()
    out = _run(store, kit, dep, log=log)
    assert out.status == "failed" and out.error_type == "DriftDetected"
    assert dep.deploys == 0 and dep.mutations == 0
    assert store.get_user("fred").deployment_status == "failed"


def test_schema_violation_fails_classified_and_is_retryable(store, kit, book):
    dep = add_user(store, kit, book, "gina", docs=8)
    dep.docs["gina-00002"]["userId"] = 42  # violates even the widened schema
    out = _run(store, kit, dep)
    assert out.status == "failed"
    assert (out.error_type, out.error_kind) == ("SchemaValidationFailed", "schema_validation")
    assert "gina-00002" in out.error
    journal = {e.kind: e for e in store.journal("gina")}
    assert journal["deploy_widened"].status == "failed" and journal["deploy_widened"].error
    assert store.get_user("gina").deployment_status == "failed"
    dep.docs["gina-00002"]["userId"] = "gina"  # the owner fixes the document
    out = _run(store, kit, dep)
    assert out.status == "succeeded", out.error
    _assert_on_v3(dep, kit, 8)
    assert journal["deploy_widened"].step_id in {e.step_id for e in store.journal("gina")
                                                 if e.attempts == 2}


@pytest.mark.parametrize("fault,error", [("5xx", "DeploymentServerError"),
                                         ("revoked", "DeploymentUnauthorized"),
                                         ("timeout", "DeploymentTimeout")])
def test_faults_are_classified(store, kit, book, fault, error):
    dep = add_user(store, kit, book, f"f-{fault}")
    dep.fault = fault
    log = EventLog()
    out = _run(store, kit, dep, log=log)
    assert out.status == "failed" and out.error_type == error
    assert log.of(DeploymentFailed)[0].error_type == error


def test_no_secret_in_outcome_journal_or_events(store, kit, book):
    secret = "convex-self-hosted|0123456789abcdef0123456789abcdef"
    dep = add_user(store, kit, book, "hank")

    def leak(bundle):
        raise RuntimeError(f"push to http://127.0.0.1:1/?adminKey={secret} failed ({secret})")

    dep.before_deploy = leak
    log = EventLog()
    out = _run(store, kit, dep, log=log, secrets=(secret, "http://127.0.0.1:1"))
    assert out.status == "failed" and out.error_type == "RuntimeError"
    texts = [out.error or ""] + [str(e.to_dict()) for e in log.events]
    texts += [str(e) for e in store.journal("hank")] + [str(store.get_user("hank"))]
    texts += [str(a.detail) for a in store.audit_log("hank")]
    assert not any("0123456789abcdef" in t for t in texts)


def test_same_plan_again_on_a_replaced_deployment_runs_every_step(store, kit, book):
    """A finished journal belongs to an earlier run: when the user's deployment is
    replaced by a fresh one at the source version, the same plan runs again in full
    (a new journal generation) instead of skipping every step as already done."""

    first = add_user(store, kit, book, "erin", docs=10)
    assert _run(store, kit, first).status == "succeeded"
    replacement = add_user(store, kit, book, "erin", docs=10)  # back at v1, fresh data
    again = _run(store, kit, replacement)
    assert again.status == "succeeded", again.error
    assert again.deploys == 2 and replacement.deploys == 2
    _assert_on_v3(replacement, kit, 10)
    plans = {e.plan_id for e in store.journal("erin")}
    assert len(plans) == 2 and again.plan_id in plans
    assert all(e.status == "completed" for e in store.journal("erin", again.plan_id))


def _data_plan_steps(kit):
    return [s for s in kit.plan("v1", "v3").steps if s.kind == "run_data_step"]


def test_a_widened_bundle_without_run_steps_runs_each_step_as_an_earlier_engine_did(
        store, kit, book):
    """A rollout an earlier engine left on its widened bundle (no ``runSteps``) and resumed
    now: each step through its own mutation, journaled on the deployment by recordStep."""

    dep = add_user(store, kit, book, "old", docs=25)
    kit.batch_size = lambda plan, ds: 10  # type: ignore[method-assign]

    def missing(*_a, **_k):
        raise FunctionError("Could not find public function for 'byodMigrations:runSteps'",
                            deployment="old", function="byodMigrations:runSteps")

    dep._fn_byodMigrations_runSteps = missing  # type: ignore[method-assign]
    out = _run(store, kit, dep)
    assert out.status == "succeeded", out.error
    _assert_on_v3(dep, kit, 25)
    pages = [c.path for c in dep.history if c.path.startswith("byodMigrations:")]
    assert pages.count("byodMigrations:runSteps") == 1  # asked once, then as before
    assert len(pages) == 1 + 3 + 3  # 25 documents in pages of 10, for each step
    recorded = [c.args for c in dep.history if c.path == "byod:recordStep"]
    assert [r["status"] for r in recorded] == ["running", "completed"] * 2
    assert all(e.status == "completed" for e in store.journal("old"))


def test_verify_continues_across_calls_when_a_table_outgrows_its_read_budget(
        store, kit, book, monkeypatch):
    from engine.testing import functions

    monkeypatch.setattr(functions, "VERIFY_DOCS", 10)  # 25 notes: read in three calls
    dep = add_user(store, kit, book, "big", docs=25)
    out = _run(store, kit, dep)
    assert out.status == "succeeded", out.error
    verifies = [c.args for c in dep.history if c.path == "byod:verify"]
    assert verifies[0] == {} and all(v["from"]["table"] == "notes" for v in verifies[1:])
    assert len(verifies) == 4  # notes counted from the start, then 10, 10 and the rest
