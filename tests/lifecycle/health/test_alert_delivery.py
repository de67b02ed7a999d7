"""Alerts are never lost: one detected while the webhook is down is stored and delivered
by a later run — exactly once, in order with the recovery that follows, after the process
restarted in between — and the queue backs off boundedly while the receiver stays down."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from ops_fakes import Fleet

from engine.cli.ops import _pending_note
from engine.config import EngineConfig
from engine.lifecycle.alerts import deliver_pending, retry_delay
from engine.lifecycle.health import check
from engine.registry.sqlite import SqliteStore

from .test_health import CONFIG, FP1, GRAPH
from .webhook import Receiver

ROOT = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def _run(fleet: Fleet, hook: Receiver, clock: Clock, **kw):  # type: ignore[no-untyped-def]
    config = EngineConfig(webhook_url=hook.url)
    return check("all", store=fleet.store, vault=fleet.vault, config=config, graph=GRAPH,
                 connector=fleet, timeout=0.5, budget_s=1.5, clock=clock, **kw)


def _down(hook: Receiver) -> None:
    hook.fail_first = hook.attempts + 10_000


def _up(hook: Receiver) -> None:
    hook.fail_first = 0


def test_an_outage_detected_while_the_webhook_is_down_is_delivered_later_exactly_once(
        fleet: Fleet) -> None:
    dep = fleet.add("u1", version="v1", fingerprint=FP1)
    fleet.add("u2", version="v1", fingerprint=FP1)
    clock = Clock()
    with Receiver() as hook:
        _down(hook)
        dep.fault = "down"
        first = _run(fleet, hook, clock)
        assert [t["user_id"] for t in first.transitions] == ["u1"]
        assert [a.delivered for a in first.alerts] == [False] and hook.bodies == []
        assert first.to_dict()["pending_alerts"]["count"] == 1
        assert _pending_note(first).startswith("1 alert(s) waiting for the webhook since ")

        _up(hook)
        clock.t += 60  # the next monitor run: still down, so no new transition
        second = _run(fleet, hook, clock)
        assert second.transitions == []
        assert [a.delivered for a in second.alerts] == [True]
        assert [b["event"] for b in hook.bodies] == ["unhealthy"]
        body = hook.bodies[0]
        assert body["deployments"][0]["user_id"] == "u1"
        assert body["alert_id"] == first.alerts[0].alert_id
        assert second.to_dict()["pending_alerts"] == {"count": 0, "oldest_at": None,
                                                      "next_at": None}
        assert _pending_note(second) == ""
        for _ in range(3):
            clock.t += 60
            assert _run(fleet, hook, clock).alerts == []
        assert len(hook.bodies) == 1  # exactly once
        assert "webhook-secret-token" not in json.dumps(second.to_dict())


def test_a_recovery_is_delivered_too_and_after_its_outage(fleet: Fleet) -> None:
    dep = fleet.add("u1", version="v1", fingerprint=FP1)
    clock = Clock()
    with Receiver() as hook:
        _down(hook)
        dep.fault = "down"
        _run(fleet, hook, clock)  # unhealthy: not delivered
        dep.fault = None
        clock.t += 10  # before the queue's next try: stored, not sent
        second = _run(fleet, hook, clock)
        assert [t["event"] for t in second.transitions] == ["recovered"]
        assert second.alerts == []
        assert second.to_dict()["pending_alerts"]["count"] == 2
        _up(hook)
        clock.t += 600
        third = _run(fleet, hook, clock)
    assert [a.delivered for a in third.alerts] == [True, True]
    assert [b["event"] for b in hook.bodies] == ["unhealthy", "recovered"]
    assert third.pending_alerts == []


def test_pending_alerts_survive_a_restart_and_a_new_process_delivers_them(
        fleet: Fleet, tmp_path: Path) -> None:
    dep = fleet.add("u1", version="v1", fingerprint=FP1)
    clock = Clock()
    with Receiver() as hook:
        _down(hook)
        dep.fault = "down"
        _run(fleet, hook, clock)
        path = fleet.store.path
        fleet.store.close()  # the monitor process ends here
        _up(hook)
        script = textwrap.dedent(f"""
            import asyncio
            from engine.lifecycle.alerts import deliver_pending
            from engine.registry.sqlite import SqliteStore
            store = SqliteStore({str(path)!r})
            results = asyncio.run(deliver_pending(store, {hook.url!r},
                                                  now={clock.t + 3600!r}, budget_s=10))
            print([r.delivered for r in results], len(store.pending_alerts()))
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split("\n")[0] == "[True] 0"
    assert [b["event"] for b in hook.bodies] == ["unhealthy"]
    reopened = SqliteStore(path)
    assert reopened.pending_alerts() == []
    reopened.close()


def test_the_queue_backs_off_boundedly_while_the_receiver_stays_down(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "registry.sqlite3")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["event"])
        return httpx.Response(503)

    async def no_sleep(_s: float) -> None:
        return None

    transport = httpx.MockTransport(handler)
    store.enqueue_alert("unhealthy", {"event": "unhealthy", "count": 1})
    store.enqueue_alert("recovered", {"event": "recovered", "count": 1})
    now, delays = 1_000.0, []
    for _ in range(8):
        results = asyncio.run(deliver_pending(store, "http://127.0.0.1:9/hook", now=now,
                                              transport=transport, sleep=no_sleep))
        assert [r.event for r in results] == ["unhealthy"]  # the head only, in order
        head = store.pending_alerts()[0]
        delays.append(head.next_at - now)
        assert "503" in (head.last_error or "")
        # not due yet: nothing is sent, nothing counted
        before = len(seen)
        assert asyncio.run(deliver_pending(store, "http://127.0.0.1:9/hook",
                                           now=head.next_at - 1, transport=transport,
                                           sleep=no_sleep)) == []
        assert len(seen) == before
        now = head.next_at
    assert delays == [30.0, 60.0, 120.0, 240.0, 480.0, 900.0, 900.0, 900.0]
    assert store.pending_alerts()[0].attempts == 8
    assert len(store.pending_alerts()) == 2
    assert retry_delay(10_000) == 900.0 and retry_delay(1, (5.0, 20.0)) == 5.0
    store.close()


def test_a_store_without_alert_storage_still_sends_once(fleet: Fleet) -> None:
    """A registry backend without the ``AlertStore`` role keeps the one-round delivery."""

    from engine.lifecycle.health import check_async

    class NoOutbox:
        def __init__(self, inner: SqliteStore):
            self._inner = inner

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            if name in ("enqueue_alert", "pending_alerts", "alert_attempted"):
                raise AttributeError(name)
            return getattr(self._inner, name)

    dep = fleet.add("u1", version="v1", fingerprint=FP1)
    dep.fault = "down"
    with Receiver() as hook:
        report = asyncio.run(check_async(
            "all", store=NoOutbox(fleet.store),  # type: ignore[arg-type]
            vault=fleet.vault, config=EngineConfig(webhook_url=hook.url), graph=GRAPH,
            connector=fleet, timeout=0.5))
    assert [a.delivered for a in report.alerts] == [True] and report.pending_alerts == []
    assert report.alerts[0].alert_id is None
    assert fleet.store.pending_alerts() == []
    assert CONFIG.webhook_url is None


def test_two_runs_at_once_never_send_the_same_alert(tmp_path: Path) -> None:
    """A monitor and a manual ``byod health`` deliver concurrently: the second run finds
    the alert taken by the first (in flight) and leaves it alone."""

    first = SqliteStore(tmp_path / "registry.sqlite3")
    second = SqliteStore(tmp_path / "registry.sqlite3")  # another process's connection
    first.enqueue_alert("unhealthy", {"event": "unhealthy", "count": 1})
    sent: list[int] = []
    meanwhile: list[list] = []  # type: ignore[type-arg]

    async def no_sleep(_s: float) -> None:
        return None

    stale = second.pending_alerts()  # the second run read the queue before the claim

    class ReadBeforeTheClaim(SqliteStore):
        def pending_alerts(self, limit: int = 100, channel=None):  # type: ignore[no-untyped-def]
            return stale

    racing = ReadBeforeTheClaim(tmp_path / "registry.sqlite3")

    def second_run() -> list:  # type: ignore[type-arg]
        out = []
        for store in (second, racing):
            out += asyncio.run(deliver_pending(store, "http://127.0.0.1:9/hook", now=1_000.0,
                                               transport=transport, sleep=no_sleep))
        return out

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content)["alert_id"])
        if len(sent) == 1:  # while the first run's POST is in flight, the second tries
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                meanwhile.append(pool.submit(second_run).result(timeout=30))
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    results = asyncio.run(deliver_pending(first, "http://127.0.0.1:9/hook", now=1_000.0,
                                          transport=transport, sleep=no_sleep))
    assert [r.delivered for r in results] == [True]
    assert len(sent) == 1 and meanwhile == [[]]
    assert first.pending_alerts() == []
    # a stale read cannot claim: the attempt count moved on
    alert = first.enqueue_alert("recovered", {"event": "recovered", "count": 1})
    assert first.claim_alert(alert.id, attempts=0, until=2_000.0)
    assert not second.claim_alert(alert.id, attempts=0, until=2_000.0)
    first.close()
    second.close()
    racing.close()
