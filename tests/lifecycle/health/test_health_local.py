"""Health over real local deployments: faults injected by the local fleet."""

from __future__ import annotations

from pathlib import Path

import pytest
from local_ops import connect_all, needs_toolchain, start

from engine.config import EngineConfig
from engine.lifecycle.health import check

from .webhook import Receiver

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain]


def test_faults_transitions_and_alerts_on_real_deployments(tmp_path: Path) -> None:
    env = start(tmp_path, 5, with_main=False)
    try:
        connect_all(env, "0001_initial")
        names = {uid: dep.name for uid, dep in env.users.items()}
        keys = [dep.admin_key for dep in env.users.values()]
        env.fleet.set_fault(names["u2"], "timeout", 5000)
        env.fleet.set_fault(names["u3"], "revoked")
        env.fleet.set_fault(names["u4"], "error500")
        env.store.set_deployment("u5", version="0002_tags")  # the registry and reality differ
        with Receiver() as hook:
            config = EngineConfig(**{**env.config.model_dump(), "webhook_url": hook.url})
            report = check("all", store=env.store, vault=env.vault, config=config,
                           graph=env.graph, timeout=1.0, concurrency=8)
            states = {r.user_id: r.state for r in report.results}
            assert states == {"u1": "healthy", "u2": "slow", "u3": "unauthorized",
                              "u4": "server_error", "u5": "drifted"}
            assert "registry says 0002_tags, deployment has 0001_initial" in \
                report.result("u5").reason
            for uid in ("u2", "u3", "u4", "u5"):
                assert env.store.get_user(uid).connection_status == "error"
            for name in ("u2", "u3", "u4"):
                env.fleet.set_fault(names[name], "none")
            env.store.set_deployment("u5", version="0001_initial")
            again = check("all", store=env.store, vault=env.vault, config=config,
                          graph=env.graph, timeout=2.0)
            assert {r.state for r in again.results} == {"healthy"}
            assert all(u.connection_status == "connected" for u in env.store.list_users())
            assert [b["event"] for b in hook.bodies] == ["unhealthy", "recovered"]
            assert {d["user_id"] for d in hook.bodies[0]["deployments"]} == {"u2", "u3", "u4", "u5"}
            for text in hook.raw:
                for key in keys:
                    assert key not in text and key.split("|")[1] not in text
                assert "127.0.0.1" not in text
    finally:
        env.fleet.stop()


def test_a_deployment_left_on_a_widened_bundle_is_migrating(tmp_path: Path) -> None:
    from engine.convex.connector import HttpConnector
    from engine.fleet.artifacts import PlanKit
    from engine.lifecycle.connect import test_connection

    env = start(tmp_path, 1, with_main=False)
    try:
        connect_all(env, "0001_initial")
        kit = PlanKit(env.graph, env.config)
        plan = kit.plan("0001_initial", "0004_task_priorities")
        step = next(s for s in plan.steps if s.kind == "deploy_widened")
        bundle = kit.step_bundle(plan, step)
        adapter = HttpConnector(env.config).deployer(env.vault.target_for(env.store.get_user("u1")))
        try:
            adapter.deploy(bundle)  # a rollout's first step, then it stopped
            assert adapter.read_version().kind == "widen"
        finally:
            adapter.close()
        report = check("all", store=env.store, vault=env.vault, config=env.config,
                       graph=env.graph, timeout=5.0)
        res = report.result("u1")
        assert res.state == "migrating" and report.ok, res.reason
        assert "bridging 0001_initial -> 0004_task_priorities" in res.reason
        assert env.store.get_user("u1").connection_status == "connected"
        result = test_connection("u1", store=env.store, vault=env.vault, config=env.config,
                                 versions=env.graph)
        assert result.ok and result.state == "migrating"
        assert env.store.get_user("u1").connection_status == "connected"
    finally:
        env.fleet.stop()
