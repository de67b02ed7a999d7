"""The health monitor inside the service: checks the fleet every
``ServeSettings.monitor_interval_s`` (five minutes by default), least recently checked
first and at most ``batch_size`` deployments per tick, through the engine's own health
check (``engine.lifecycle.health.check_async``: status moves, the audit, alerts stored and
delivered by webhook and email until acknowledged).

Exactly one process runs it, however many service replicas share the registry: the
monitor holds the registry lease ``monitor`` (``engine.lifecycle.monitor_lease``) and the
others stand by, trying to take it every half lease TTL; a holder that dies stops
renewing, so a standby takes over within the TTL (at once on the same host, where a dead
holder is provable). A tick runs in a worker thread with its own event loop, so the
check's registry writes never stall the API's event loop.

``ServiceMonitor(service)`` is started and stopped by the app's lifespan
(``engine.serve.app.create_app``); ``notice_for(user_id)`` is the per-user notice the app
can show ("your database could not be reached since …").
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from engine.errors import ByodError, VaultKeyMismatch
from engine.lifecycle.email_alerts import EmailSettings
from engine.lifecycle.health import HealthReport, check_async
from engine.lifecycle.monitor_lease import MONITOR_LEASE, MonitorLeadership
from engine.ports.registry import UserConfig
from engine.registry.heartbeat import HEARTBEAT_TTL_S

if TYPE_CHECKING:
    from engine.serve.service import Service

__all__ = ["DEFAULT_BATCH", "MONITOR_LEASE", "ServiceMonitor", "email_of"]

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1000  # deployments per tick; the rest come first on the next tick
_BLOCKED_EVENTS = ("health_unhealthy", "routing_blocked")


def _iso(at: float | None) -> str | None:
    return None if at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def email_of(service: "Service") -> EmailSettings | None:
    """The email channel of the service's settings (None: no SMTP host). ``ConfigError``
    for settings that cannot work (a host without recipients too), so the service refuses
    to start instead of failing every tick."""

    smtp = getattr(service.settings, "smtp", None)
    if smtp is None or not smtp.host:
        return None
    password = smtp.password.get_secret_value() if smtp.password is not None else None
    return EmailSettings(host=str(smtp.host), port=smtp.port, sender=smtp.from_address,
                         recipients=tuple(smtp.to_addresses), username=smtp.username or None,
                         password=password or None, starttls=smtp.starttls,
                         timeout_s=smtp.timeout_s)


def _staleness(user: UserConfig) -> tuple[bool, float, str]:
    tested = user.last_connection_test
    return (tested is not None, tested or 0.0, user.user_id)


class ServiceMonitor:
    """Runs the periodic health check while the service runs (see the module docstring).

    ``interval_s`` (default: the settings'), ``batch_size``, ``lease_ttl_s``, ``timeout_s``
    (per deployment) and ``email_tls`` (the STARTTLS trust, default the system's) exist for
    operators and tests; ``holder`` names this process in ``byod leases``."""

    def __init__(self, service: "Service", *, interval_s: float | None = None,
                 batch_size: int = DEFAULT_BATCH, lease_ttl_s: float = HEARTBEAT_TTL_S,
                 timeout_s: float | None = None, concurrency: int = 16,
                 holder: str | None = None, email_tls: ssl.SSLContext | None = None):
        interval = float(interval_s if interval_s is not None
                         else service.settings.monitor_interval_s)
        if interval <= 0:
            raise ValueError("the monitor interval must be positive")
        if batch_size < 1:
            raise ValueError("the monitor batch size must be at least 1")
        self.service = service
        self.interval_s = interval
        self.batch_size = batch_size
        self.lease_ttl_s = lease_ttl_s
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self._leadership = MonitorLeadership(service.store, holder, ttl_s=lease_ttl_s)
        self.holder = self._leadership.holder
        self.email = email_of(service)
        self.email_tls = email_tls
        self.runs = 0
        self.last_report: HealthReport | None = None
        self.last_run_at: float | None = None
        self.last_error: str | None = None
        self._alerted: frozenset[str] = frozenset()
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self._tick_lock = threading.Lock()
        self._tick_loop: asyncio.AbstractEventLoop | None = None
        self._tick_task: asyncio.Task[Any] | None = None

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Begin the periodic checks (returns at once; the loop runs as a task)."""

        if self._task is not None and not self._task.done():
            return
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="byod-monitor")

    async def stop(self) -> None:
        """Stop the loop, cancel a check in flight (each user's status move is atomic, so
        nothing is half-applied) and give the lease up for a standby to take."""

        if self._stopping is not None:
            self._stopping.set()
        loop, task = self._tick_loop, self._tick_task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # the tick just ended
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=15.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None
        await asyncio.to_thread(self._let_go)

    @property
    def leader(self) -> bool:
        """Whether this process holds the monitor lease (runs the checks)."""

        return self._leadership.leader

    def state(self) -> dict[str, Any]:
        """For the dashboard and ``/metrics``: who runs the monitor and how it went."""

        report = self.last_report
        return {"leader": self.leader, "holder": self.holder, "interval_s": self.interval_s,
                "batch_size": self.batch_size, "runs": self.runs,
                "last_run_at": _iso(self.last_run_at), "last_error": self.last_error,
                "email": self.email is not None,
                "last_report": None if report is None else {
                    "selected": report.selected, "checked": report.checked,
                    "counts": report.counts, "transitions": len(report.transitions),
                    "pending_alerts": report.pending_summary()["count"]}}

    # -- leadership (engine.lifecycle.monitor_lease) ----------------------------------------
    def _lead(self) -> bool:
        """Hold the lease, or take it when free (its holder let go, expired or died)."""

        was_leader = self._leadership.leader
        leading = self._leadership.lead()
        if leading and not was_leader:
            log.info("monitor: this process runs the health monitor (every %.0f s)",
                     self.interval_s)
        return leading

    def _let_go(self) -> None:
        self._leadership.let_go()

    async def _loop(self) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                leading = await asyncio.to_thread(self._lead)
            except ByodError as exc:  # a busy or unreadable registry: try again later
                log.warning("monitor: could not take the lease: %s", exc)
                leading = False
            if leading:
                await self.run_once()
                wait = self.interval_s - (time.monotonic() - started)
            else:  # standing by: look at the lease often enough for a prompt failover
                wait = min(self.interval_s, self.lease_ttl_s / 2)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=max(0.01, wait))
            except TimeoutError:
                pass

    # -- one tick -----------------------------------------------------------------------
    def batch(self) -> list[str]:
        """This tick's users: connected or blocked, least recently checked first, at most
        ``batch_size`` of them."""

        users = self.service.store.list_users(connection_status=["connected", "error"])
        return [u.user_id for u in sorted(users, key=_staleness)[:self.batch_size]]

    async def run_once(self) -> HealthReport | None:
        """One check of this tick's batch and one delivery round of the pending alerts,
        in a worker thread. Never raises for a deployment, alert or registry problem: it is
        logged and kept in ``last_error``."""

        try:
            report = await asyncio.to_thread(self._tick)
        except asyncio.CancelledError:
            raise
        except VaultKeyMismatch as exc:  # the operator's problem: logged, alerted, kept
            partial: HealthReport | None = getattr(exc, "report", None)
            self._record(partial, str(exc))
            log.error("monitor: %s", exc)
            return partial
        except Exception as exc:  # noqa: BLE001 - the monitor outlives one bad tick
            self._record(None, f"{type(exc).__name__}: {exc}")
            log.exception("monitor: the health check failed")
            return None
        self._record(report, None)
        return report

    def _record(self, report: HealthReport | None, error: str | None) -> None:
        self.runs += 1
        self.last_run_at = time.time()
        self.last_error = error
        if report is not None:
            self.last_report = report
            self._alerted = frozenset(r.user_id for r in report.vault_errors)

    def _tick(self) -> HealthReport:
        with self._tick_lock:
            ws = self.service.ws
            users = self.batch()

            async def run() -> HealthReport:
                self._tick_task = asyncio.current_task()
                return await check_async(
                    users, store=ws.store, vault=ws.vault, graph=ws.graph, config=ws.config,
                    connector=ws.connector, concurrency=self.concurrency,
                    timeout=self.timeout_s, budget_s=self.interval_s,
                    alerted_vault_errors=self._alerted, email=self.email,
                    email_tls=self.email_tls)

            loop = asyncio.new_event_loop()
            self._tick_loop = loop
            try:
                report = loop.run_until_complete(run())
            finally:
                self._tick_loop, self._tick_task = None, None
                try:  # the email channel's worker thread, as asyncio.run would
                    loop.run_until_complete(loop.shutdown_default_executor())
                finally:
                    loop.close()
            if report.transitions:
                log.info("monitor: %d deployment(s) checked, %d moved (%s)", report.checked,
                         len(report.transitions),
                         ", ".join(f"{t['user_id']} {t['event']}" for t in report.transitions))
            return report

    # -- the per-user notice ------------------------------------------------------------
    def notice_for(self, user_id: str) -> dict[str, Any] | None:
        """What the app can show a blocked user: since when their database could not be
        reached (or refused the key), when it was last checked and when the next check
        is due; None for a user who is not blocked. Never a URL or a key."""

        store = self.service.store
        user = store.find_user(user_id)
        if user is None or user.connection_status != "error":
            return None
        since, state = user.updated_at, None
        for entry in reversed(store.audit_log(user_id, limit=50)):  # newest first
            if entry.event in _BLOCKED_EVENTS:
                since, state = entry.at, entry.detail.get("state")
                break
            if entry.event in ("health_recovered", "connected", "credentials_saved"):
                break
        checked = user.last_connection_test
        when = _iso(since)
        if state == "unauthorized":
            message = (f"Your database has refused the app's deploy key since {when}: "
                       "update your credentials to get your content back.")
        else:
            message = (f"Your database could not be reached since {when}, so your content "
                       "is unavailable until it answers again.")
        next_check = None if checked is None else checked + self.interval_s
        return {"level": "error", "code": "blocked",
                "cause": "unauthorized" if state == "unauthorized" else "unreachable",
                "message": message, "since": when,
                "state": state, "reason": user.connection_error,
                "last_checked": _iso(checked), "next_check_by": _iso(next_check)}
