"""The health states that must not block a user (vault errors, a deployment mid-migration,
a stale bundle after a config change) and test-connection agreeing with health."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from ops_fakes import ADMIN_KEY_SECRET, FakeDeployment, Fleet, table, version

from engine.bundle.compiler import compile_version
from engine.cli.main import cli
from engine.config import AuthConfig, EngineConfig
from engine.errors import KeyConfigError, VaultKeyMismatch
from engine.fleet.artifacts import PlanKit
from engine.lifecycle import connect as conn
from engine.lifecycle.health import check, monitor
from engine.plan.graph import VersionGraph
from engine.ports.registry import JournalEntry
from engine.schema.models import MigrationOp
from engine.vault import Vault, generate_key

from .webhook import Receiver

W1 = version("w1", 1, table("notes", title="string", body="optional(string)"))
W2 = version("w2", 2, table("notes", title="string", body="string"), parents=("w1",)
             ).model_copy(update={"migrations": (
                 MigrationOp(op="backfill", table="notes", field="body", value=""),)})
W3 = version("w3", 3, table("notes", title="string", body="string",
                            pinned="optional(boolean)"), parents=("w2",))
GRAPH = VersionGraph([W1, W2, W3])
CONFIG = EngineConfig()
# byod.toml's auth changed: every bundle compiles to another fingerprint.
CHANGED = EngineConfig(auth=AuthConfig(issuer_domain="https://auth.other.example"))
FP1 = compile_version(W1, CONFIG).fingerprint
FP2 = compile_version(W2, CONFIG).fingerprint
KIT = PlanKit(GRAPH, CONFIG)
PLAN = KIT.plan("w1", "w2")
WIDEN_STEP = next(s for s in PLAN.steps if s.kind == "deploy_widened")
WIDE_NAME = str(WIDEN_STEP.version)
WIDE_FP = KIT.step_bundle(PLAN, WIDEN_STEP).fingerprint


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def run(fleet: Fleet, users="all", config: EngineConfig = CONFIG, vault=None, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("timeout", 0.5)
    return check(users, store=fleet.store, vault=vault or fleet.vault, config=config,
                 graph=GRAPH, connector=fleet, **kw)


def add(fleet: Fleet, uid: str, status: str = "connected"):  # type: ignore[no-untyped-def]
    return fleet.add(uid, status=status, version="w1", fingerprint=FP1)


def widen(dep, name: str = WIDE_NAME, fp: str = WIDE_FP) -> None:  # type: ignore[no-untyped-def]
    dep.kind, dep.version, dep.fingerprint = "widen", name, fp


def status(fleet: Fleet, uid: str) -> str:
    return fleet.store.get_user(uid).connection_status


# -- 1. credentials that do not decrypt ---------------------------------------------------------

def test_wrong_key_blocks_nobody_and_fails_the_run_loudly(fleet: Fleet) -> None:
    add(fleet, "a")
    add(fleet, "b")
    add(fleet, "c", status="error")
    wrong = Vault.from_hex(generate_key())
    with pytest.raises(VaultKeyMismatch) as err:
        run(fleet, vault=wrong)
    message = str(err.value)
    assert isinstance(err.value, KeyConfigError)
    assert "BYOD_ENCRYPTION_KEY" in message and "BYOD_ENCRYPTION_KEYS_OLD" in message
    assert wrong.key_id in message and fleet.vault.key_id in message  # ids, never keys
    assert err.value.key_ids == [fleet.vault.key_id]
    assert sorted(err.value.user_ids) == ["a", "b", "c"]
    report = err.value.report
    assert {r.state for r in report.results} == {"vault_error"} and not report.ok
    assert report.transitions == []
    assert all(f"key id {fleet.vault.key_id}" in r.reason for r in report.results)
    assert (status(fleet, "a"), status(fleet, "b"), status(fleet, "c")) == (
        "connected", "connected", "error")
    assert fleet.store.get_user("c").connection_error == "boom"  # untouched
    assert all(not dep.calls for dep in fleet.deployments.values())  # nothing contacted
    # The right key again: everyone is checked normally, nobody had to recover.
    again = run(fleet)
    assert {r.user_id: r.state for r in again.results} == {"a": "healthy", "b": "healthy",
                                                           "c": "healthy"}
    assert [t["user_id"] for t in again.transitions] == ["c"]  # c was in error before


def test_some_rows_on_an_unconfigured_key_are_reported_not_blocked(fleet: Fleet) -> None:
    add(fleet, "ok")
    dep = add(fleet, "old")
    other = Vault.from_hex(generate_key())  # e.g. a key dropped from KEYS_OLD too early
    url_ct, key_ct = other.encrypt_credentials("old", dep.url, dep.key)
    fleet.store.replace_ciphertexts("old", url_ct=url_ct, key_ct=key_ct,
                                    expect_url_ct=fleet.store.get_user("old").url_ct,
                                    expect_key_ct=fleet.store.get_user("old").key_ct)
    with Receiver() as hook:
        config = EngineConfig(webhook_url=hook.url)
        report = run(fleet, config=config)
        res = report.result("old")
        assert res.state == "vault_error" and res.error_kind == "vault"
        assert other.key_id in res.reason and "not configured" in res.reason
        assert report.result("ok").state == "healthy"
        assert not report.ok and report.counts == {"healthy": 1, "vault_error": 1}
        assert status(fleet, "old") == "connected" and report.transitions == []
        assert [b["event"] for b in hook.bodies] == ["vault_error"]
        assert hook.bodies[0]["deployments"][0]["user_id"] == "old"
        # The monitor alerts a lasting vault error once, not on every run.
        monitor(0.5, max_runs=3, store=fleet.store, vault=fleet.vault, config=config,
                graph=GRAPH, connector=fleet, timeout=0.3)
        assert [b["event"] for b in hook.bodies] == ["vault_error", "vault_error"]
        for text in hook.raw + [json.dumps(report.to_dict())]:
            assert ADMIN_KEY_SECRET not in text and "convex.cloud" not in text
    assert status(fleet, "old") == "connected"


def test_cli_health_with_the_wrong_key_exits_1_and_says_what_to_check(
        fleet: Fleet, tmp_path: Path) -> None:
    add(fleet, "a")
    env = {"BYOD_ENCRYPTION_KEY": generate_key(),
           "BYOD_REGISTRY": str(tmp_path / "registry.sqlite3"),
           "BYOD_VERSIONS_DIR": str(Path(__file__).resolve().parents[3] / "schema_versions"),
           "BYOD_CONFIG": os.devnull}
    result = CliRunner().invoke(cli, ["health", "--all"], env=env)
    assert result.exit_code == 1, result.output
    assert "BYOD_ENCRYPTION_KEY" in result.output and "BYOD_ENCRYPTION_KEYS_OLD" in result.output
    assert ADMIN_KEY_SECRET not in result.output and env["BYOD_ENCRYPTION_KEY"] not in result.output
    assert status(fleet, "a") == "connected"


# -- 2. a deployment mid-migration --------------------------------------------------------------

def test_widened_bundle_is_migrating_not_drift(fleet: Fleet) -> None:
    widen(add(fleet, "mid"))
    widen(add(fleet, "was_blocked", status="error"))
    fleet.store.set_deployment("mid", status="failed")  # the data step failed
    report = run(fleet)
    for uid in ("mid", "was_blocked"):
        res = report.result(uid)
        assert res.state == "migrating" and res.routable and res.drift == ()
        assert f"widened bundle {WIDE_NAME} bridging w1 -> w2" in res.reason
        assert "byod rollout --resume" in res.reason
        assert status(fleet, uid) == "connected"  # a new rollout selects them again
    assert report.ok and report.counts == {"migrating": 2}
    assert [t["user_id"] for t in report.transitions] == ["was_blocked"]


def test_migrating_names_the_plan_and_the_rollout_to_resume(fleet: Fleet) -> None:
    widen(add(fleet, "u"))
    fleet.store.journal_plan([JournalEntry(
        user_id="u", plan_id=PLAN.id, step_id=str(WIDEN_STEP.id), seq=0,
        kind="deploy_widened", version="w2", fingerprint=WIDE_FP)])
    fleet.store.save_rollout("r-older", {"status": "completed", "deployments": {
        "u": {"status": "succeeded"}}})
    fleet.store.save_rollout("r-halted", {"status": "halted", "deployments": {
        "u": {"status": "failed", "plan_id": PLAN.id}}})
    res = run(fleet).result("u")
    assert res.state == "migrating"
    assert f"plan {PLAN.id} to w2" in res.reason
    assert "`byod rollout --resume r-halted` or a new rollout" in res.reason
    # After a config change the widened bundle compiles differently, but the journal says
    # this engine deployed it: still migrating, not drift.
    assert run(fleet, config=CHANGED).result("u").state == "migrating"


def test_widened_bundle_of_a_later_fused_plan_is_known(fleet: Fleet) -> None:
    plan = KIT.plan("w1", "w3")
    step = next(s for s in plan.steps if s.kind == "deploy_widened")
    widen(add(fleet, "u"), str(step.version), KIT.step_bundle(plan, step).fingerprint)
    assert run(fleet).result("u").state == "migrating"


@pytest.mark.parametrize("name, fp", [(WIDE_NAME, "e" * 64), ("w1__w9__widen", WIDE_FP),
                                      ("hand-made", WIDE_FP)])
def test_unknown_widened_bundle_is_drift(fleet: Fleet, name: str, fp: str) -> None:
    widen(add(fleet, "u"), name, fp)
    res = run(fleet).result("u")
    assert res.state == "drifted" and "is not one this engine's plans build" in res.reason
    assert status(fleet, "u") == "error"


# -- 3. a config change: stale, not drift -------------------------------------------------------

def test_config_change_makes_deployments_stale_not_drifted(fleet: Fleet) -> None:
    add(fleet, "a")
    add(fleet, "b", status="error")
    assert compile_version(W1, CHANGED).fingerprint != FP1
    report = run(fleet, config=CHANGED)
    for uid in ("a", "b"):
        res = report.result(uid)
        assert res.state == "stale" and res.routable and res.drift == ()
        assert "redeploy with a rollout to pick up the new bundle" in res.reason
        assert status(fleet, uid) == "connected"
    assert report.ok and report.counts == {"stale": 2}


def test_real_drift_stays_drift_after_a_config_change(fleet: Fleet) -> None:
    add(fleet, "fp").fingerprint = "f" * 64  # not what the registry recorded
    add(fleet, "ver").version = "w2"  # another version than recorded
    add(fleet, "alien").version = "w9"  # a version the graph does not know
    report = run(fleet, config=CHANGED)
    assert {r.user_id: r.state for r in report.results} == {
        "fp": "drifted", "ver": "drifted", "alien": "drifted"}
    assert any(d.startswith("fingerprint: registry says") for d in report.result("fp").drift)
    assert any("registry says w1, deployment has w2" in d for d in report.result("ver").drift)
    assert any("not in the version graph" in d for d in report.result("alien").drift)
    assert all(status(fleet, u) == "error" for u in ("fp", "ver", "alien"))


def test_stale_needs_the_registry_record(fleet: Fleet) -> None:
    # Nothing recorded to compare with: a fingerprint the version does not compile to is
    # drift, as before.
    dep = FakeDeployment("dep-u", version="w1", fingerprint=FP1)
    fleet.deployments[dep.url] = dep
    url_ct, key_ct = fleet.vault.encrypt_credentials("u", dep.url, dep.key)
    fleet.store.upsert_credentials("u", url_ct=url_ct, key_ct=key_ct)
    fleet.store.set_deployment("u", status="deployed", version="w1")  # no fingerprint
    fleet.store.set_connection_status("u", "connected")
    res = run(fleet, config=CHANGED).result("u")
    assert res.state == "drifted" and "compiles to" in res.reason


# -- 4. test-connection classifies like health --------------------------------------------------

def test_connection(fleet: Fleet, uid: str, config: EngineConfig = CONFIG, vault=None):  # type: ignore[no-untyped-def]
    return conn.test_connection(uid, store=fleet.store, vault=vault or fleet.vault,
                                config=config, connector=fleet, versions=GRAPH)


test_connection.__test__ = False  # type: ignore[attr-defined]


def test_test_connection_does_not_unblock_a_drifted_deployment(fleet: Fleet) -> None:
    add(fleet, "u").version = "w2"
    assert run(fleet).result("u").state == "drifted"
    result = test_connection(fleet, "u")
    assert not result.ok and result.state == "drifted" and result.error_kind == "drifted"
    assert "registry says w1, deployment has w2" in result.error
    assert status(fleet, "u") == "error"
    assert run(fleet).transitions == []  # health agrees: nothing flips back and forth


@pytest.mark.parametrize("setup, state, ok, after", [
    ("healthy", "healthy", True, "connected"),
    ("widened", "migrating", True, "connected"),
    ("stale", "stale", True, "connected"),
    ("down", "unreachable", False, "error"),
    ("revoked", "unauthorized", False, "error"),
    ("drift", "drifted", False, "error"),
])
def test_test_connection_and_health_agree(fleet: Fleet, setup: str, state: str, ok: bool,
                                          after: str) -> None:
    config = CHANGED if setup == "stale" else CONFIG
    for uid in ("t", "h"):
        dep = add(fleet, uid, status="error" if ok else "connected")
        if setup == "widened":
            widen(dep)
        elif setup in ("down", "revoked"):
            dep.fault = setup
        elif setup == "drift":
            dep.fingerprint = "d" * 64
    result = test_connection(fleet, "t", config)
    health = run(fleet, ["h"], config=config).result("h")
    assert (result.state, result.ok, result.connection_status) == (state, ok, after)
    assert (health.state, health.status_after) == (state, after)
    if ok:
        assert result.error is None and (state == "healthy") == (result.note is None)
    else:
        assert result.error and ADMIN_KEY_SECRET not in result.error


def test_test_connection_with_the_wrong_key_changes_nothing(fleet: Fleet) -> None:
    add(fleet, "u")
    add(fleet, "e", status="error")
    wrong = Vault.from_hex(generate_key())
    for uid, before in (("u", "connected"), ("e", "error")):
        tested = fleet.store.get_user(uid).last_connection_test
        result = test_connection(fleet, uid, vault=wrong)
        assert not result.ok and result.state == "vault_error"
        assert result.error_kind == "vault" and fleet.vault.key_id in result.error
        user = fleet.store.get_user(uid)
        assert user.connection_status == before and user.last_connection_test == tested
