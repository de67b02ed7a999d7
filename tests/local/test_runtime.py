"""Local deployments as a runtime: persistence across restarts and crashes, transactions,
transaction limits, admin-key checks and every fault mode."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from engine.errors import LocalFleetError
from engine.local import LocalFleet

from .conftest import Project, call, needs_toolchain, ok

pytestmark = [pytest.mark.local, pytest.mark.toolchain, needs_toolchain, pytest.mark.timeout(300)]


def test_restart_and_crash_keep_documents_and_code(project: Project, tmp_path: Path) -> None:
    data = tmp_path / "fleet"
    with LocalFleet.start(1, data) as fleet:
        dep = fleet.deployments[0]
        assert project.deploy(dep).returncode == 0
        for body in ("one", "two"):
            ok(call(dep, "mutation", "messages:send", {"body": body}))
        before = fleet.documents(dep.name)
        schema = fleet.state(dep.name)["schema"]
    # Graceful restart: same name, port, key, documents and code.
    with LocalFleet.start(1, data) as fleet:
        assert fleet.deployments[0] == dep
        assert fleet.documents(dep.name) == before
        assert fleet.state(dep.name)["schema"] == schema
        ok(call(dep, "mutation", "messages:send", {"body": "three"}))
        acknowledged = fleet.documents(dep.name)
        os.killpg(fleet.pid, signal.SIGKILL)  # crash: no flush
        fleet._wait_exit(5)
    with LocalFleet.start(1, data) as fleet:
        assert fleet.documents(dep.name) == acknowledged
        assert len(ok(call(dep, "query", "messages:list"))) == 3
        # Ids minted after a crash never collide with stored ones.
        new_id = ok(call(dep, "mutation", "messages:send", {"body": "four"}))
        assert new_id not in {d["_id"] for d in acknowledged["messages"]}


def test_second_start_in_same_dir_is_refused(tmp_path: Path) -> None:
    with LocalFleet.start(1, tmp_path / "f") as fleet:
        with pytest.raises(LocalFleetError, match="already running"):
            LocalFleet.start(1, tmp_path / "f")
        attached = LocalFleet.attach(tmp_path / "f")
        assert attached.pid == fleet.pid and attached.deployments == fleet.deployments
    with pytest.raises(LocalFleetError, match="no local fleet"):
        LocalFleet.attach(tmp_path / "f")


def test_throwing_mutation_leaves_no_writes(project: Project, fleet: LocalFleet) -> None:
    dep = fleet.deployments[0]
    assert project.deploy(dep).returncode == 0
    ok(call(dep, "mutation", "messages:send", {"body": "kept"}))
    response = call(dep, "mutation", "messages:failAfterWrite")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "error" and "ConvexError" in body["errorMessage"]
    assert body["errorData"] == {"code": "refused", "detail": 7}
    assert [d["body"] for d in fleet.documents(dep.name)["messages"]] == ["kept"]
    # A write breaking the active schema (a record value here) is refused too.
    bad = call(dep, "mutation", "messages:insertRaw", {"doc": {"body": "b", "tags": {"k": "v"}}}).json()
    assert bad["status"] == "error" and "does not match the schema" in bad["errorMessage"]
    assert len(fleet.documents(dep.name)["messages"]) == 1


def test_write_limit_is_enforced_per_transaction(project: Project, tmp_path: Path) -> None:
    with LocalFleet.start(1, tmp_path / "f", max_writes=5) as fleet:
        dep = fleet.deployments[0]
        assert project.deploy(dep).returncode == 0
        assert ok(call(dep, "mutation", "messages:bulk", {"n": 5})) == 5
        over = call(dep, "mutation", "messages:bulk", {"n": 6}).json()
        assert over["status"] == "error"
        # Convex's text (crates/database/src/writes.rs), not the test runtime's.
        assert over["errorMessage"] == (
            "Uncaught Error: Too many writes in a single function execution (limit: 5)")
        assert len(fleet.documents(dep.name)["messages"]) == 5


def test_admin_key_is_checked(project: Project, fleet: LocalFleet) -> None:
    dep, other = fleet.deployments
    assert project.deploy(dep).returncode == 0
    wrong = call(dep, "query", "messages:list", key=other.admin_key)
    assert wrong.status_code == 401 and wrong.json()["code"] == "BadAdminKey"
    missing = httpx.post(f"{dep.url}/api/get_config_hashes", json={})
    assert missing.status_code == 401 and missing.json()["code"] == "MissingAccessToken"
    assert httpx.get(f"{dep.url}/version").status_code == 200
    assert httpx.get(f"{dep.url}/instance_name").text == dep.name
    assert httpx.post(f"{dep.url}/api/nothing", headers={"Authorization": f"Convex {dep.admin_key}"}).status_code == 400
    result = project.deploy(dep, key=f"{dep.name}|{'0' * 64}")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "BadAdminKey" in output
    assert dep.admin_key not in output


def test_fault_modes(project: Project, fleet: LocalFleet) -> None:
    dep, other = fleet.deployments
    assert project.deploy(dep).returncode == 0

    fleet.set_fault(dep.name, "delay", delay_ms=400)
    started = time.monotonic()
    ok(call(dep, "query", "messages:list"))
    assert time.monotonic() - started >= 0.39

    fleet.set_fault(dep.name, "timeout")
    with pytest.raises(httpx.ReadTimeout):
        call(dep, "query", "messages:list", timeout=0.5)

    fleet.set_fault(dep.name, "error500")
    assert call(dep, "query", "messages:list").status_code == 500

    fleet.set_fault(dep.name, "revoked")
    revoked = call(dep, "query", "messages:list")
    assert revoked.status_code == 401 and revoked.json()["code"] == "BadAdminKey"

    fleet.set_fault(dep.name, "drop")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
        call(dep, "query", "messages:list")

    # Faults are per deployment and switch off at run time.
    assert call(other, "query", "messages:list").json()["status"] == "error"  # no code there
    fleet.set_fault(dep.name, "none")
    assert ok(call(dep, "query", "messages:list")) == []
    with pytest.raises(LocalFleetError, match="fault mode"):
        fleet.set_fault(dep.name, "explode")


def test_add_deployments_at_run_time(tmp_path: Path) -> None:
    with LocalFleet.start(1, tmp_path / "f") as fleet:
        (added,) = fleet.add(1)
        assert added.admin_key.startswith(f"{added.name}|") and len(added.admin_key.split("|")[1]) == 64
        assert httpx.get(f"{added.url}/instance_name").text == added.name
    with LocalFleet.start(1, tmp_path / "f") as fleet:
        assert [d.name for d in fleet.deployments] == ["local-001", "local-002"]
