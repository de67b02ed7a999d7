"""Stale deployments in the runner: a config change (here ``auth.issuer_domain``) makes
every version compile to another bundle. A deployment running exactly what was recorded
is stale, not drifted: at the target it gets a one-deploy refresh, on an older version
its normal plan. Real drift still stops the run before anything is deployed."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine.config import AuthConfig, EngineConfig
from engine.events import DeploymentDone, DeploymentReconciled, EventLog, StepStarted
from engine.fleet.artifacts import is_refresh
from engine.fleet.context import KitExpectations
from engine.fleet.health_states import classify_answer
from engine.fleet.runner import run_plan

from .conftest import add_user
from .fakes import Crash, FakeAdapter, RecordingKit

CHANGED = EngineConfig(auth=AuthConfig(issuer_domain="https://auth.changed.example"))
CHANGED_AGAIN = EngineConfig(auth=AuthConfig(issuer_domain="https://auth.third.example"))


def _run(store, kit, dep, target="v3", *, log=None, holder="h1"):
    return run_plan(None, user_id=dep.name, target=target, adapter=FakeAdapter(dep),
                    store=store, kit=kit, holder=holder, emit=log if log is not None
                    else EventLog(), lease_ttl_s=5.0)


@pytest.fixture()
def new_kit(book) -> RecordingKit:
    return RecordingKit(book, CHANGED)


def test_health_and_the_runner_agree_it_is_stale(store, kit, book, new_kit):
    dep = add_user(store, kit, book, "ann", version="v3")
    info = FakeAdapter(dep).read_version()
    assert kit.version_bundle("v3").fingerprint != new_kit.version_bundle("v3").fingerprint
    verdict = classify_answer(store.get_user("ann"), info, KitExpectations(new_kit, store))
    assert verdict.state == "stale"
    assert classify_answer(store.get_user("ann"), info,
                           KitExpectations(kit, store)).state == "healthy"


def test_stale_at_the_target_gets_a_one_deploy_refresh(store, kit, book, new_kit):
    dep = add_user(store, kit, book, "sara", version="v3", docs=9)
    docs = json.dumps(dep.docs, sort_keys=True)
    log = EventLog()
    out = _run(store, new_kit, dep, log=log)
    assert out.status == "succeeded", out.error
    assert out.refresh and (out.source, out.after, out.deploys, out.pages) == ("v3", "v3", 1, 0)
    assert [e.kind for e in log.of(StepStarted)] == ["deploy_target", "verify", "record"]
    fresh = new_kit.version_bundle("v3")
    assert (dep.deployed.fingerprint, dep.records[-1]["fingerprint"]) == (fresh.fingerprint,) * 2
    user = store.get_user("sara")
    assert (user.schema_version, user.schema_fingerprint, user.deployment_status) == (
        "v3", fresh.fingerprint, "deployed")
    assert json.dumps(dep.docs, sort_keys=True) == docs  # a refresh touches no data
    plan = new_kit.refresh_plan("v3")
    assert is_refresh(plan) and plan.deploys == 1 and not plan.data_steps
    assert {e.plan_id for e in store.journal("sara")} == {plan.id}
    # healthy now: a second run has nothing to do
    again = _run(store, new_kit, dep)
    assert again.status == "already" and dep.deploys == 1
    # another config change is another refresh, not the first one's completed journal
    third = RecordingKit(book, CHANGED_AGAIN)
    assert third.refresh_plan("v3").id != plan.id
    out = _run(store, third, dep)
    assert out.status == "succeeded" and out.refresh and dep.deploys == 2
    assert dep.deployed.fingerprint == third.version_bundle("v3").fingerprint
    assert len(log.of(DeploymentDone)) == 1


def test_stale_on_an_older_version_gets_its_normal_plan(store, kit, book, new_kit):
    dep = add_user(store, kit, book, "tom", version="v1", docs=12)
    out = _run(store, new_kit, dep)
    assert out.status == "succeeded", out.error
    assert not out.refresh and (out.source, out.deploys) == ("v1", 2)
    assert dep.deployed.fingerprint == new_kit.version_bundle("v3").fingerprint
    assert dep.valid_under(new_kit.graph.get("v3").schema) == [] and len(dep.docs) == 12
    assert store.get_user("tom").schema_fingerprint == new_kit.version_bundle("v3").fingerprint


def test_stale_with_the_registry_behind_trusts_the_deployments_record(store, kit, book,
                                                                      new_kit):
    dep = add_user(store, kit, book, "una", version="v2", docs=6)
    store.set_deployment("una", version="v1", fingerprint=kit.version_bundle("v1").fingerprint)
    log = EventLog()
    out = _run(store, new_kit, dep, log=log)
    assert out.status == "succeeded", out.error
    assert (out.before, out.source) == ("v1", "v2")
    assert log.of(DeploymentReconciled)[0].actual_version == "v2"
    assert store.get_user("una").schema_version == "v3"


def test_a_rollouts_widened_bundle_survives_a_config_change(store, kit, book, new_kit):
    dep = add_user(store, kit, book, "vic", version="v1", docs=10)

    def crash(path, _args):
        if path.startswith("byodMigrations:"):
            raise Crash("killed after the first page")

    dep.hook = crash
    with pytest.raises(Crash):
        _run(store, kit, dep)
    dep.hook = None
    assert dep.deployed.kind == "widen"
    out = _run(store, new_kit, dep, holder="h2")  # another process, after the config change
    assert out.status == "succeeded", out.error
    assert dep.deployed.fingerprint == new_kit.version_bundle("v3").fingerprint
    assert dep.valid_under(new_kit.graph.get("v3").schema) == []


@pytest.mark.parametrize("tamper", ["unrecorded-fingerprint", "other-version", "unknown-version",
                                    "unknown-widened"])
def test_real_drift_still_stops_the_run(store, kit, book, new_kit, tamper):
    dep = add_user(store, kit, book, f"d-{tamper}", version="v2")
    b = dep.deployed
    if tamper == "unrecorded-fingerprint":
        dep.deployed = dataclasses.replace(b, fingerprint="0" * 64)
    elif tamper == "other-version":  # v2 put there outside the engine: v1 is recorded
        v1 = kit.version_bundle("v1").fingerprint
        dep.records = [{"version": "v1", "fingerprint": v1}]
        store.set_deployment(dep.name, version="v1", fingerprint=v1)
    elif tamper == "unknown-version":
        dep.deployed = dataclasses.replace(b, version_id="v9")
        dep.records = []
    else:
        dep.deployed = dataclasses.replace(b, version_id="v2__v3__widen", kind="widen",
                                           fingerprint="e" * 64)
    out = _run(store, new_kit, dep)
    assert out.status == "failed" and out.error_type == "DriftDetected", out.error
    assert not out.refresh
    assert dep.deploys == 0 and dep.mutations == 0
    assert store.get_user(dep.name).deployment_status == "failed"
