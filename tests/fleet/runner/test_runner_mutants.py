"""The runner's outcome and journal, pinned where mutation testing (scripts/mutation.py)
showed a changed runner would pass: every outcome names its user, version before and
duration; a failure keeps its page count; a lease held elsewhere is ``LeaseHeld``; older
plans are closed (``skipped`` / ``failed … superseded``); errors are redacted with the
run's own secrets; a deployment that drifts between its deploy and the verify step, or
whose tables cannot be read there, fails with the exact error; the widened bundle comes
from the plan being run."""

from __future__ import annotations

from typing import Any

import pytest

from engine.events import EventLog, PageDone
from engine.fleet.artifacts import PlanKit
from engine.fleet.runner import run_plan
from engine.ports.deployment import VersionInfo

from .conftest import add_user  # the store, book and kit fixtures come from there too
from .fakes import Crash, FakeAdapter, RecordingKit


def _run(store, kit, dep, target="v3", *, holder="h1", log=None, adapter=None, secrets=()):
    return run_plan(None, user_id=dep.name, target=target, adapter=adapter or FakeAdapter(dep),
                    store=store, kit=kit, holder=holder, emit=log or EventLog(),
                    secrets=secrets, lease_ttl_s=5.0)


def test_outcomes_name_the_user_the_version_before_and_take_time(store, kit, book):
    dep = add_user(store, kit, book, "ann")
    out = _run(store, kit, dep)
    assert (out.user_id, out.status, out.before, out.after) == ("ann", "succeeded", "v1", "v3")
    assert out.duration_s > 0
    again = _run(store, kit, dep)
    assert (again.user_id, again.status, again.before, again.source) == (
        "ann", "already", "v3", "v3")


def test_a_failure_keeps_the_version_before_and_the_pages_done(store, kit, book):
    dep = add_user(store, kit, book, "bea", docs=30)
    count = {"n": 0}

    def second_mutation(*_a: Any) -> None:  # the data pages, then record
        count["n"] += 1
        if count["n"] == 2:
            raise RuntimeError("broke at the second mutation")

    dep.hook = second_mutation
    log = EventLog()
    out = _run(store, kit, dep, log=log)
    assert (out.user_id, out.status, out.before) == ("bea", "failed", "v1")
    assert out.pages == len(log.of(PageDone)) > 0


def test_a_lease_held_elsewhere_is_skipped_as_lease_held(store, kit, book):
    dep = add_user(store, kit, book, "cid")
    store.acquire_lease("cid", "someone-else", 60.0)
    out = _run(store, kit, dep)
    assert (out.status, out.error_type, out.error_kind) == ("skipped", "LeaseHeld", "lease")
    assert out.before == "v1" and "someone-else" in (out.error or "")


def test_an_older_plan_is_closed_when_another_one_runs(store, kit, book):
    dep = add_user(store, kit, book, "dot", docs=30)
    kit.batch_size = lambda plan, ds: 10  # type: ignore[method-assign] # pages of 10
    count = {"n": 0}

    def crash(*_a: Any) -> None:
        count["n"] += 1
        if count["n"] == 2:
            raise Crash("gone mid data step")

    dep.hook = crash
    with pytest.raises(Crash):  # the process dies: its step stays "running"
        _run(store, kit, dep, target="v2")
    old_plan = store.journal("dot")[-1].plan_id
    assert {e.status for e in store.journal("dot")} >= {"running", "pending"}
    store.release_lease("dot", "h1")
    dep.hook = None
    out = _run(store, kit, dep, target="v3")
    assert out.status == "succeeded", out.error
    old = {e.step_id: e for e in store.journal("dot") if e.plan_id == old_plan}
    statuses = {e.status for e in old.values()}
    assert "skipped" in statuses and "failed" in statuses
    assert statuses <= {"completed", "skipped", "failed"}
    for e in old.values():
        if e.status == "failed":
            assert "superseded" in (e.error or "") and out.plan_id in (e.error or "")


def test_errors_are_redacted_with_the_runs_own_secrets(store, kit, book):
    dep = add_user(store, kit, book, "eve")

    def leak(_bundle: Any) -> None:
        raise RuntimeError("push failed for the-plain-secret-value and more")

    dep.before_deploy = leak
    out = _run(store, kit, dep, secrets=("the-plain-secret-value",))
    assert out.status == "failed"
    assert "the-plain-secret-value" not in (out.error or "") and "[REDACTED]" in (out.error or "")


class _Tampering(FakeAdapter):
    """Answers the verify step's reads with something else than what was deployed."""

    def __init__(self, dep: Any, *, version: Any = None, count: Any = None):
        super().__init__(dep)
        self.version, self.count = version, count

    def _verifying(self) -> bool:
        target = self.dep.deployed
        return target is not None and target.version_id == "v3" and target.kind == "version"

    def read_version(self) -> Any:
        info = super().read_version()
        if self.version is not None and self._verifying() and self.dep.deploys_seen >= 1:
            return self.version(info)
        return info

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        answer = super().query(path, args)
        if path != "byod:verify" or not self._verifying():
            return answer
        if self.count is not None:
            answer = {**answer, "counts": self.count}
        if self.version is not None and self.dep.deploys_seen >= 1:
            info = self.version(VersionInfo(answer["version"], answer["fingerprint"],
                                            answer["kind"]))
            answer = {**answer, "version": info.version, "fingerprint": info.fingerprint,
                      "kind": info.kind}
        return answer

    def deploy(self, bundle: Any) -> Any:
        out = super().deploy(bundle)
        self.dep.deploys_seen = getattr(self.dep, "deploys_seen", 0) + (
            1 if bundle.version_id == "v3" and bundle.kind == "version" else 0)
        return out


def test_a_deployment_that_drifts_before_verify_fails_with_both_sides(store, kit, book):
    import dataclasses

    dep = add_user(store, kit, book, "fay")
    dep.deploys_seen = 0
    reads = {"n": 0}

    def drifted(info: Any) -> Any:
        reads["n"] += 1
        # the target was pushed, then something else replaced it before verify read it
        return dataclasses.replace(info, fingerprint="0" * 64)

    out = _run(store, kit, dep, adapter=_Tampering(dep, version=drifted))
    target = kit.version_bundle("v3").fingerprint[:12]
    assert (out.status, out.error_type, out.step_id and "verify" in out.step_id) == (
        "failed", "DriftDetected", True)
    assert out.error == (f"deployment 'fay' has drifted: expected v3 fingerprint {target}, "
                         "found v3 (version) fingerprint 000000000000")
    assert reads["n"] == 1  # verify's own answer: no read of the version after the push


def test_a_table_the_verify_step_cannot_read_fails_it(store, kit, book):
    dep = add_user(store, kit, book, "gus")
    out = _run(store, kit, dep, adapter=_Tampering(dep, count={"nothing": 1}))
    assert (out.status, out.error_type) == ("failed", "FunctionError")
    assert "table 'notes' is not readable" in (out.error or "")


class _PlanWidenKit(RecordingKit):
    """The engine's own widened bundles (keyed by the plan being run)."""

    def step_bundle(self, plan: Any, step: Any) -> Any:
        bundle = PlanKit.step_bundle(self, plan, step)
        if step.kind == "deploy_widened":
            self.book.note(bundle, step.schema, step.data_steps)
        return bundle


def test_widened_bundles_come_from_the_plan_being_run(store, book):
    kit = _PlanWidenKit(book)
    dep = add_user(store, kit, book, "hal", docs=10)
    out = _run(store, kit, dep)
    assert out.status == "succeeded", out.error
