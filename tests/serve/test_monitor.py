"""The health monitor inside the service: ticks every interval over an in-memory fleet
(blocking the unreachable, alerting, a per-user notice), covers the fleet least recently
checked first in bounded batches, runs in exactly one of two replicas sharing a registry,
and fails over to the standby when the holder process is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lifecycle.health.test_health import FP1, GRAPH
from lifecycle.health.webhook import Receiver
from ops_fakes import ADMIN_KEY_SECRET, Fleet
from pydantic import SecretStr

from engine.commands.workspace import Workspace
from engine.config import EngineConfig
from engine.registry.sqlite import SqliteStore
from engine.serve.monitor import MONITOR_LEASE, ServiceMonitor
from engine.serve.service import Service
from engine.serve.settings import ServeSettings
from engine.vault import Vault, generate_key

ROOT = Path(__file__).resolve().parents[2]
SECRET = "monitor-test-signing-secret-" + "y" * 24


def service_of(fleet: Fleet | None, *, store: SqliteStore | None = None,
               vault: Vault | None = None, config: EngineConfig | None = None,
               interval: float = 300.0) -> Service:
    ws = Workspace.open(config or EngineConfig(), store=store or fleet.store,  # type: ignore[union-attr]
                        vault=vault or fleet.vault, graph=GRAPH,  # type: ignore[union-attr]
                        connector=fleet)
    settings = ServeSettings(secret=SecretStr(SECRET), monitor_interval_s=interval)
    return Service(ws, settings)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the monitor")
        time.sleep(0.02)


async def await_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the monitor")
        await asyncio.sleep(0.02)


def test_the_monitor_ticks_blocks_the_unreachable_alerts_and_gives_a_notice(
        tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.add("u1", version="v1", fingerprint=FP1).fault = "down"
    fleet.add("u2", version="v1", fingerprint=FP1)
    with Receiver() as hook:
        service = service_of(fleet, config=EngineConfig(webhook_url=hook.url))
        monitor = ServiceMonitor(service, interval_s=0.2, timeout_s=0.5, lease_ttl_s=2.0)

        async def scenario() -> None:
            await monitor.start()
            await await_for(lambda: monitor.runs >= 3)
            await monitor.stop()

        asyncio.run(scenario())
    assert monitor.last_error is None
    assert fleet.store.get_user("u1").connection_status == "error"
    assert fleet.store.get_user("u2").connection_status == "connected"
    assert [b["event"] for b in hook.bodies] == ["unhealthy"]  # on the transition only
    notice = monitor.notice_for("u1")
    assert notice is not None and notice["code"] == "blocked" and notice["cause"] == "unreachable"
    assert notice["message"].startswith("Your database could not be reached since 20")
    assert notice["since"] and notice["last_checked"] and notice["next_check_by"]
    assert ADMIN_KEY_SECRET not in str(notice) and "convex.cloud" not in str(notice)
    assert monitor.notice_for("u2") is None and monitor.notice_for("nobody") is None
    state = monitor.state()
    assert state["runs"] >= 3 and state["last_report"]["selected"] == 2
    assert not monitor.leader  # stopped: the lease was given up
    lease = {le.deployment: le for le in fleet.store.list_leases()}.get(MONITOR_LEASE)
    assert lease is None or lease.expires_at <= time.time()
    service.close()


def test_a_revoked_key_gets_its_own_notice(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.add("u1", version="v1", fingerprint=FP1).fault = "revoked"
    monitor = ServiceMonitor(service_of(fleet), timeout_s=0.5)
    asyncio.run(monitor.run_once())
    notice = monitor.notice_for("u1")
    assert notice is not None and notice["code"] == "blocked" and notice["cause"] == "unauthorized"
    assert "refused the app's deploy key since" in notice["message"]


def test_each_tick_takes_a_bounded_batch_least_recently_checked_first(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    for n in range(5):
        fleet.add(f"u{n}", version="v1", fingerprint=FP1)
    monitor = ServiceMonitor(service_of(fleet), batch_size=2, timeout_s=0.5)
    seen: list[list[str]] = []
    for _ in range(4):
        batch = monitor.batch()
        report = asyncio.run(monitor.run_once())
        assert report is not None and [r.user_id for r in report.results] == batch
        seen.append(batch)
        time.sleep(0.01)  # the next check's time is later
    assert seen[:3] == [["u0", "u1"], ["u2", "u3"], ["u4", "u0"]]
    assert seen[3] == ["u1", "u2"]


def test_two_replicas_over_one_registry_run_the_monitor_once(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.add("u1", version="v1", fingerprint=FP1)
    # the second replica: its own connection to the same registry file
    other = SqliteStore(fleet.store.path)
    a = ServiceMonitor(service_of(fleet), interval_s=0.1, timeout_s=0.5, lease_ttl_s=1.5,
                       holder="replica-a")
    b = ServiceMonitor(service_of(fleet, store=other), interval_s=0.1, timeout_s=0.5,
                       lease_ttl_s=1.5, holder="replica-b")

    async def scenario() -> tuple[int, int]:
        await a.start()
        await await_for(lambda: a.runs >= 1)
        await b.start()
        await asyncio.sleep(1.0)
        assert a.leader and not b.leader
        runs = (a.runs, b.runs)
        await a.stop()  # a clean stop lets go at once: the standby takes over
        await await_for(lambda: b.runs >= 1, timeout=5.0)
        assert b.leader
        await b.stop()
        return runs

    runs_a, runs_b = asyncio.run(scenario())
    assert runs_a >= 3 and runs_b == 0
    other.close()


def test_killing_the_holder_hands_the_monitor_to_the_standby(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    key = generate_key()
    store = SqliteStore(path)
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        from pydantic import SecretStr
        from engine.commands.workspace import Workspace
        from engine.config import EngineConfig
        from engine.registry.sqlite import SqliteStore
        from engine.serve.monitor import ServiceMonitor
        from engine.serve.service import Service
        from engine.serve.settings import ServeSettings
        from engine.vault import Vault
        from lifecycle.health.test_health import GRAPH

        ws = Workspace.open(EngineConfig(), store=SqliteStore({str(path)!r}),
                            vault=Vault.from_hex({key!r}), graph=GRAPH)
        service = Service(ws, ServeSettings(secret=SecretStr("s" * 40)))
        monitor = ServiceMonitor(service, interval_s=0.1, lease_ttl_s=30.0,
                                 holder="doomed")

        async def main():
            await monitor.start()
            while monitor.runs < 1:
                await asyncio.sleep(0.02)
            print("leading", flush=True)
            await asyncio.sleep(120)

        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "leading", proc.stderr.read() if proc.stderr else ""
        standby = ServiceMonitor(service_of(None, store=store, vault=Vault.from_hex(key)),
                                 interval_s=0.1, lease_ttl_s=30.0, holder="standby")

        async def scenario() -> float:
            await standby.start()
            await asyncio.sleep(0.5)
            assert not standby.leader and standby.runs == 0  # the holder is alive
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            killed = time.monotonic()
            await await_for(lambda: standby.runs >= 1, timeout=10.0)
            took = time.monotonic() - killed
            await standby.stop()
            return took

        took = asyncio.run(scenario())
        assert took < 10.0  # well inside the 30 s TTL: a dead holder is provable
        audit = [e for e in store.audit_log(MONITOR_LEASE) if e.event == "lease_taken_over"]
        assert audit and audit[0].detail["from"] == "doomed"
        assert audit[0].detail["reason"] == "holder process is dead"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        store.close()


def test_a_bad_smtp_setting_stops_the_service_from_starting_with_a_clear_error(
        tmp_path: Path) -> None:
    from engine.errors import ConfigError
    from engine.serve.settings import SmtpSettings

    fleet = Fleet(tmp_path)
    service = service_of(fleet)
    service.settings = service.settings.model_copy(update={"smtp": SmtpSettings(
        host="smtp.example.com", username="ops", to_addresses=("ops@example.com",))})
    with pytest.raises(ConfigError, match="set BYOD_SMTP_PASSWORD"):
        ServiceMonitor(service)




def test_the_service_monitor_emails_through_the_services_smtp_settings(tmp_path: Path) -> None:
    from lifecycle.test_email_alerts import Inbox, Smtp

    from engine.serve.settings import SmtpSettings

    inbox = Inbox()
    server = Smtp(inbox).start()
    try:
        fleet = Fleet(tmp_path)
        fleet.add("u1", version="v1", fingerprint=FP1).fault = "down"
        service = service_of(fleet)
        service.settings = service.settings.model_copy(update={"smtp": SmtpSettings(
            host="127.0.0.1", port=server.port, starttls=False,
            from_address="byod@example.com", to_addresses=("ops@example.com",))})
        monitor = ServiceMonitor(service, timeout_s=0.5)
        assert monitor.state()["email"] is True
        report = asyncio.run(monitor.run_once())
        assert report is not None
        assert [(a.channel, a.delivered) for a in report.alerts] == [("email", True)]
        assert [m["Subject"] for m in inbox.messages] == ["[byod] 1 deployment unhealthy"]
        assert ADMIN_KEY_SECRET not in inbox.raw[0] and SECRET not in inbox.raw[0]
    finally:
        server.stop()


def test_an_smtp_host_without_recipients_is_refused_at_start(tmp_path: Path) -> None:
    from engine.errors import ConfigError
    from engine.serve.settings import SmtpSettings

    service = service_of(Fleet(tmp_path))
    service.settings = service.settings.model_copy(update={"smtp": SmtpSettings(
        host="smtp.example.com")})
    with pytest.raises(ConfigError, match="no recipient address"):
        ServiceMonitor(service)
