"""Health checks over fake deployments: classification, transitions, alerts, bounds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from ops_fakes import ADMIN_KEY_SECRET, AsyncFake, Fleet, table, version

from engine.bundle.compiler import compile_version
from engine.config import EngineConfig
from engine.lifecycle.health import check, monitor
from engine.plan.graph import VersionGraph

from .webhook import Receiver

V1 = version("v1", 1, table("notes", title="string"))
V2 = version("v2", 2, table("notes", title="string", pinned="optional(boolean)"),
             parents=("v1",))
GRAPH = VersionGraph([V1, V2])
CONFIG = EngineConfig()
FP1 = compile_version(V1, CONFIG).fingerprint
FP2 = compile_version(V2, CONFIG).fingerprint


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def run(fleet: Fleet, users="all", config: EngineConfig = CONFIG, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("timeout", 0.5)
    return check(users, store=fleet.store, vault=fleet.vault, config=config, graph=GRAPH,
                 connector=fleet, **kw)


def add(fleet: Fleet, uid: str, status: str = "connected"):  # type: ignore[no-untyped-def]
    return fleet.add(uid, status=status, version="v1", fingerprint=FP1)


def test_classifies_healthy_slow_down_revoked_drifted(fleet: Fleet) -> None:
    add(fleet, "ok")
    add(fleet, "slow").delay = 5.0
    add(fleet, "down").fault = "down"
    add(fleet, "revoked").fault = "revoked"
    add(fleet, "drift").version = "v2"
    started = time.monotonic()
    report = run(fleet, concurrency=8)
    assert time.monotonic() - started < 3.0  # concurrent, and the slow one timed out
    states = {r.user_id: r.state for r in report.results}
    assert states == {"ok": "healthy", "slow": "slow", "down": "unreachable",
                      "revoked": "unauthorized", "drift": "drifted"}
    drift = report.result("drift")
    assert any("registry says v1, deployment has v2" in d for d in drift.drift)
    assert any("compiles to" in d for d in drift.drift)  # v2's fingerprint is not fp1
    for uid in ("slow", "down", "revoked", "drift"):
        user = fleet.store.get_user(uid)
        assert user.connection_status == "error" and user.connection_error
        assert user.last_connection_test is not None
    assert fleet.store.get_user("ok").connection_status == "connected"
    assert {t["user_id"] for t in report.transitions} == {"slow", "down", "revoked", "drift"}


def test_fingerprint_mismatch_names_what_differs(fleet: Fleet) -> None:
    dep = add(fleet, "u")
    dep.fingerprint = "f" * 64
    res = run(fleet).result("u")
    assert res.state == "drifted"
    assert any(d.startswith("fingerprint: registry says") for d in res.drift)
    assert any(d.startswith("fingerprint: version v1 compiles to") for d in res.drift)


def test_widened_bundle_of_unknown_origin_is_drift(fleet: Fleet) -> None:
    # A bundle calling itself widened that no plan of this engine builds: real drift,
    # whatever the registry's deployment status says (see test_health_states for the rest).
    dep = add(fleet, "u")
    dep.kind, dep.version, dep.fingerprint = "widen", "v2", "w" * 64
    fleet.store.set_deployment("u", status="deploying")
    res = run(fleet).result("u")
    assert res.state == "drifted" and "widened bundle v2" in res.reason
    assert fleet.store.get_user("u").connection_status == "error"


def test_pending_and_disconnected_are_never_touched(fleet: Fleet) -> None:
    add(fleet, "p", status="pending").fault = "down"
    add(fleet, "d", status="connected").fault = "down"
    fleet.store.set_connection_status("d", "disconnected")
    report = run(fleet, ["p", "d"])
    assert fleet.store.get_user("p").connection_status == "pending"
    assert fleet.store.get_user("d").connection_status == "disconnected"
    assert report.result("p").state == "unreachable"  # checked on request, not moved
    assert report.result("d").state == "skipped"
    assert report.transitions == []
    assert [r.user_id for r in run(fleet).results] == []  # "all" = connected + error


def test_recovery_moves_error_back_to_connected(fleet: Fleet) -> None:
    dep = add(fleet, "u")
    dep.fault = "down"
    run(fleet)
    assert fleet.store.get_user("u").connection_status == "error"
    dep.fault = None
    report = run(fleet)
    assert fleet.store.get_user("u").connection_status == "connected"
    assert fleet.store.get_user("u").connection_error is None
    assert report.transitions[0]["event"] == "recovered"


def test_disconnect_in_progress_is_left_alone(fleet: Fleet) -> None:
    add(fleet, "u")
    fleet.store.set_connection_status("u", "error", error="disconnect (migrate) in progress")
    fleet.store.save_progress("disconnect", "u", {"kind": "disconnect", "state": "running"})
    run(fleet)
    user = fleet.store.get_user("u")
    assert user.connection_status == "error" and "disconnect" in user.connection_error


def test_alerts_on_transitions_only_and_without_secrets(fleet: Fleet) -> None:
    dep = add(fleet, "u1")
    add(fleet, "u2")
    with Receiver() as hook:
        config = EngineConfig(webhook_url=hook.url)
        dep.fault = "revoked"
        first = run(fleet, config=config)
        assert [a.delivered for a in first.alerts] == [True]
        run(fleet, config=config)  # still down: no new alert
        assert len(hook.bodies) == 1
        dep.fault = None
        run(fleet, config=config)
        assert [b["event"] for b in hook.bodies] == ["unhealthy", "recovered"]
        body = hook.bodies[0]
        assert body["deployments"][0]["user_id"] == "u1"
        assert body["deployments"][0]["state"] == "unauthorized"
        for text in hook.raw + [json.dumps(first.to_dict())]:
            assert ADMIN_KEY_SECRET not in text
            assert "convex.cloud" not in text
            assert "webhook-secret-token" not in text


def test_alert_retried_with_backoff(fleet: Fleet) -> None:
    add(fleet, "u").fault = "down"
    with Receiver(fail_first=2) as hook:
        report = run(fleet, config=EngineConfig(webhook_url=hook.url))
    assert report.alerts[0].delivered and report.alerts[0].attempts == 3
    assert len(hook.bodies) == 1


def test_alert_failure_is_bounded_and_reported(fleet: Fleet) -> None:
    add(fleet, "u").fault = "down"
    with Receiver(fail_first=100) as hook:
        started = time.monotonic()
        report = run(fleet, config=EngineConfig(webhook_url=hook.url), budget_s=2.0)
        assert time.monotonic() - started < 2.5
    alert = report.alerts[0]
    assert not alert.delivered and "500" in (alert.error or "")
    assert "webhook-secret-token" not in json.dumps(report.to_dict())


def test_monitor_run_never_exceeds_its_interval(fleet: Fleet) -> None:
    add(fleet, "ok")
    add(fleet, "stuck").delay = 30.0
    runs = []
    started = time.monotonic()
    reports = monitor(1.0, max_runs=2, store=fleet.store, vault=fleet.vault, config=CONFIG,
                      graph=GRAPH, connector=fleet, timeout=10.0,
                      on_report=runs.append)
    elapsed = time.monotonic() - started
    assert len(reports) == 2 and runs == reports
    assert elapsed < 2.6
    for report in reports:
        assert report.finished_at - report.started_at <= 1.05
        assert report.result("ok").state == "healthy"
        assert report.result("stuck").state in ("slow", "not_checked")


def test_concurrency_bounds_parallel_checks(fleet: Fleet) -> None:
    for i in range(6):
        add(fleet, f"u{i}").delay = 0.2
    AsyncFake.peak = 0
    started = time.monotonic()
    run(fleet, concurrency=2)
    assert time.monotonic() - started >= 0.55  # 6 checks, 2 at a time, 0.2 s each
    assert AsyncFake.peak == 2
    AsyncFake.peak = 0
    run(fleet, concurrency=6)
    assert AsyncFake.peak == 6
