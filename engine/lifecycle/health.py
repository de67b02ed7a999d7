"""Health checks and the monitor loop.

Each check asks every deployment, concurrently and with a timeout, for its version
(``byod:version``) and classifies the answer with ``engine.fleet.health_states`` (the same rules
``byod test-connection`` uses for one user):

* ``healthy``      — answered, and it runs what the registry says it runs;
* ``migrating``    — on a widened bundle this engine built (a rollout deployed it and has
                     not finished): the app keeps working, a rollout has to finish it;
* ``stale``        — runs exactly what the registry recorded, but that version now compiles
                     to another fingerprint (a byod.toml change): redeploy with a rollout;
* ``drifted``      — answered, but the version or fingerprint differs from the registry, or
                     the version or widened bundle is unknown (``drift`` names what differs);
* ``slow``         — no answer within the timeout;
* ``unreachable``  — connection refused, dropped, or a 5xx (``server_error``);
* ``unauthorized`` — the key was rejected (revoked);
* ``broken``       — anything else (no byod bundle deployed, a malformed answer);
* ``vault_error``  — the stored credentials do not decrypt with the configured keys.

Then it moves connection status ``connected`` → ``error`` (with a sanitized reason and the
time) for blocking states and ``error`` → ``connected`` for routable ones (healthy,
migrating, stale). A ``vault_error`` is the operator's problem, not the user's: it never
changes a status, it is logged and alerted, and when no checked deployment decrypts the run
fails with ``VaultKeyMismatch``. It never touches ``pending`` or ``disconnected`` users, nor
a user whose disconnect is in progress. An alert goes to ``config.webhook_url`` and, with
SMTP settings, by email on transitions (and on new vault errors) only. With a registry
that keeps alerts (``AlertStore``) each alert is stored first and delivered on this or a
later run until the webhook (the SMTP server) acknowledges it
(``engine.lifecycle.alerts.deliver_queue``), so an outage detected while the webhook is
down is still alerted, recoveries too, across restarts; each channel (webhook, email) is
its own queue; the report says how many wait (``pending_alerts``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from engine.config import EngineConfig
from engine.convex.connector import HttpConnector
from engine.errors import ByodError, InvalidTransition, VaultKeyMismatch
from engine.fleet.health_states import (
    BLOCKING,
    ROUTABLE,
    STATES,
    UNHEALTHY,
    Expectations,
    Verdict,
    classify_answer,
    classify_failure,
    target_status,
)
from engine.lifecycle.alerts import (
    ALERT_BACKOFF_S,
    AlertResult,
    build_alert,
    deliver_pending,
    send_alert,
)
from engine.lifecycle.email_alerts import (
    EmailSettings,
    deliver_pending_email,
    email_settings,
    send_email,
)
from engine.lifecycle.monitor_lease import MonitorLeadership
from engine.lifecycle.progress import disconnect_in_progress
from engine.plan.versions import Versions
from engine.ports.deployment import (
    Connector,
    DeploymentTarget,
    VersionInfo,
    aclose_quietly,
)
from engine.ports.registry import (
    AlertStore,
    LeaseStore,
    PendingAlert,
    RegistryStore,
    UserConfig,
)
from engine.redact import redact
from engine.vault import ENV_KEY, ENV_OLD_KEYS, Vault, envelope_key_id

__all__ = ["BLOCKING", "ROUTABLE", "UNHEALTHY", "DeploymentHealth", "HealthReport", "check",
           "check_async", "check_one", "monitor", "probe_sync"]

log = logging.getLogger(__name__)

ReadVersion = Callable[[DeploymentTarget], VersionInfo]

_NOT_CHECKED = frozenset({"not_checked", "skipped"})


@dataclass(frozen=True)
class DeploymentHealth:
    """One deployment's result. ``reason`` is sanitized; ``status_*`` are the registry's
    connection status before and after this check."""

    user_id: str
    state: str
    reason: str | None = None
    latency_ms: float | None = None
    version: str | None = None
    fingerprint: str | None = None
    expected_version: str | None = None
    drift: tuple[str, ...] = ()
    status_before: str = ""
    status_after: str = ""
    error_kind: str | None = None

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"

    @property
    def routable(self) -> bool:
        """The user's app works (healthy, migrating or stale)."""

        return self.state in ROUTABLE

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id, "state": self.state, "reason": self.reason,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "version": self.version, "fingerprint": self.fingerprint,
            "expected_version": self.expected_version, "drift": list(self.drift),
            "status_before": self.status_before, "status_after": self.status_after,
            "error_kind": self.error_kind,
        }


@dataclass
class HealthReport:
    started_at: float
    finished_at: float = 0.0
    results: list[DeploymentHealth] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[AlertResult] = field(default_factory=list)
    selected: int = 0  # users this run was asked to check
    pending_alerts: list[PendingAlert] = field(default_factory=list)  # still undelivered

    def pending_summary(self) -> dict[str, Any]:
        """How many alerts wait for the webhook, since when, and when the next try is."""

        pending = self.pending_alerts
        return {"count": len(pending),
                "oldest_at": min((a.created_at for a in pending), default=None),
                "next_at": pending[0].next_at if pending else None}

    @property
    def checked(self) -> int:
        """Deployments this run got a verdict for (not ``not_checked`` / ``skipped``)."""

        return sum(1 for r in self.results if r.state not in _NOT_CHECKED)

    @property
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for r in self.results:
            out[r.state] = out.get(r.state, 0) + 1
        return {k: v for k, v in out.items() if v}

    @property
    def unhealthy(self) -> list[DeploymentHealth]:
        return [r for r in self.results if r.state in UNHEALTHY]

    @property
    def vault_errors(self) -> list[DeploymentHealth]:
        return [r for r in self.results if r.state == "vault_error"]

    @property
    def ok(self) -> bool:
        return not self.unhealthy

    def result(self, user_id: str) -> DeploymentHealth:
        for r in self.results:
            if r.user_id == user_id:
                return r
        raise KeyError(user_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at, "finished_at": self.finished_at,
            "duration_s": round(self.finished_at - self.started_at, 3),
            "ok": self.ok, "counts": self.counts,
            "selected": self.selected, "checked": self.checked,
            "results": [r.to_dict() for r in self.results],
            "transitions": list(self.transitions),
            "alerts": [a.to_dict() for a in self.alerts],
            "pending_alerts": self.pending_summary(),
        }


# -- one deployment --------------------------------------------------------------------------


def _base(user: UserConfig) -> dict[str, Any]:
    return {"user_id": user.user_id, "expected_version": user.schema_version,
            "status_before": user.connection_status, "status_after": user.connection_status}


def _result(user: UserConfig, verdict: Verdict, secrets: Sequence[str], latency: float,
            info: VersionInfo | None = None) -> DeploymentHealth:
    clean = redact(verdict.reason, list(secrets)) if verdict.reason else None
    return DeploymentHealth(
        state=verdict.state, reason=clean, latency_ms=latency,
        version=info.version if info else None, fingerprint=info.fingerprint if info else None,
        drift=tuple(redact(d, list(secrets)) for d in verdict.drift),
        error_kind=verdict.error_kind, **_base(user))


async def _probe(user: UserConfig, *, vault: Vault, connector: Connector,
                 timeout: float, expect: Expectations) -> DeploymentHealth:
    secrets: tuple[str, ...] = ()
    started = time.monotonic()
    try:
        target = vault.target_for(user)
        secrets = target.secrets
        client = connector.async_client(target, timeout=timeout, retries=0)
        try:
            info = await asyncio.wait_for(client.read_version(), timeout + 1.0)
        finally:
            await aclose_quietly(client)
    except (ByodError, TimeoutError) as exc:
        latency = (time.monotonic() - started) * 1000
        return _result(user, classify_failure(exc, timeout=timeout), secrets, latency)
    latency = (time.monotonic() - started) * 1000
    return _result(user, classify_answer(user, info, expect), secrets, latency, info)


def probe_sync(user: UserConfig, *, vault: Vault, read_version: ReadVersion,
               expect: Expectations) -> DeploymentHealth:
    """The same probe as the fleet check, for one user over a synchronous adapter
    (``read_version`` gets the decrypted target). Never raises for a deployment problem."""

    secrets: tuple[str, ...] = ()
    started = time.monotonic()
    try:
        target = vault.target_for(user)
        secrets = target.secrets
        info = read_version(target)
    except Exception as exc:  # noqa: BLE001 - classified; nothing may leak a secret
        latency = (time.monotonic() - started) * 1000
        return _result(user, classify_failure(exc), secrets, latency)
    latency = (time.monotonic() - started) * 1000
    return _result(user, classify_answer(user, info, expect), secrets, latency, info)


def _staleness(user: UserConfig) -> tuple[bool, float, str]:
    """Least recently checked first: never checked, then oldest check, ties by user id."""

    tested = user.last_connection_test
    return (tested is not None, tested or 0.0, user.user_id)


def _select(store: RegistryStore, users: Iterable[str] | str | None) -> list[UserConfig]:
    """The users to check, least recently checked first: a run whose budget covers only
    part of the fleet then reaches the rest on the next runs instead of skipping the same
    tail every time."""

    if users is None or users == "all":
        selected = store.list_users(connection_status=["connected", "error"])
    else:
        if isinstance(users, str):
            users = [users]
        selected = [store.get_user(uid) for uid in users]
    return sorted(selected, key=_staleness)


def _apply(store: RegistryStore, result: DeploymentHealth, now: float,
           block_on_drift: bool, *, record_untouched: bool = False,
           ) -> tuple[DeploymentHealth, dict[str, Any] | None]:
    """Move connected ↔ error for one result; returns the result and the transition.
    ``record_untouched`` (a connection test of one user): users whose status is not ours
    to move (pending, disconnected) still get the time and a failure's reason."""

    target = target_status(result.state, block_on_drift=block_on_drift)
    if target is None:  # vault_error, not_checked, skipped: the status is not the user's
        return result, None
    fresh = store.find_user(result.user_id)
    if fresh is None or disconnect_in_progress(store, result.user_id):
        return result, None
    bad = target == "error"
    if fresh.connection_status not in ("connected", "error"):
        if record_untouched:
            updated = store.set_connection_status(
                result.user_id, fresh.connection_status,
                error=result.reason if result.state in BLOCKING else None, tested_at=now)
            return replace(result, status_after=updated.connection_status), None
        return result, None  # pending / disconnected (maybe changed meanwhile): hands off
    try:
        updated = store.set_connection_status(
            result.user_id, target, error=result.reason if bad else None, tested_at=now)
    except InvalidTransition:
        return result, None
    after = replace(result, status_after=updated.connection_status)
    if fresh.connection_status == target:
        return after, None
    event = "unhealthy" if bad else "recovered"
    store.audit(result.user_id, f"health_{event}", {"state": result.state,
                                                   "reason": result.reason})
    return after, {"user_id": result.user_id, "from": fresh.connection_status, "to": target,
                   "event": event, "state": result.state, "reason": result.reason, "at": now}


def check_one(user_id: str, *, store: RegistryStore, vault: Vault, config: EngineConfig,
              graph: Versions, read_version: ReadVersion, block_on_drift: bool = True,
              clock: Callable[[], float] = time.time) -> DeploymentHealth:
    """Check one user over a synchronous adapter and apply the result (what
    ``byod test-connection`` does). A ``vault_error`` changes nothing."""

    user = store.get_user(user_id)
    expect = Expectations(graph, config, store)
    result = probe_sync(user, vault=vault, read_version=read_version, expect=expect)
    if result.state == "vault_error":
        log.error("user %s: %s", user_id, result.reason)
        return result
    result, _ = _apply(store, result, clock(), block_on_drift, record_untouched=True)
    return result


def _key_mismatch(vault: Vault, store: RegistryStore, failed: list[DeploymentHealth],
                  report: HealthReport) -> VaultKeyMismatch:
    named: set[str] = set()
    for r in failed:
        user = store.find_user(r.user_id)
        for envelope in (user.url_ct, user.key_ct) if user is not None else ():
            kid = envelope_key_id(envelope or "")
            if kid:
                named.add(kid)
    current = getattr(vault, "key_id", None)
    olds = tuple(getattr(vault, "old_key_ids", ()) or ())
    configured = ", ".join(k for k in (current, *olds) if k) or "unknown"
    found = ", ".join(sorted(named)) or "none readable"
    err = VaultKeyMismatch(
        f"none of the {len(failed)} checked deployment(s) have credentials that decrypt with "
        f"the configured keys (configured key id(s) {configured}; the stored credentials "
        f"name key id(s) {found}): check {ENV_KEY} and {ENV_OLD_KEYS}. No connection status "
        "was changed.",
        user_ids=[r.user_id for r in failed], key_ids=sorted(named))
    err.report = report
    return err


async def check_async(
    users: Iterable[str] | str | None = "all", *, store: RegistryStore, vault: Vault,
    graph: Versions, config: EngineConfig | None = None, concurrency: int = 16,
    timeout: float | None = None, budget_s: float | None = None,
    connector: Connector | None = None, apply: bool = True,
    alert: bool = True, block_on_drift: bool = True,
    alert_transport: Any = None, clock: Callable[[], float] = time.time,
    alerted_vault_errors: Collection[str] = (),
    alert_backoff_s: tuple[float, float] = ALERT_BACKOFF_S,
    email: EmailSettings | None = None, email_tls: ssl.SSLContext | None = None,
) -> HealthReport:
    """Check deployments concurrently; see the module docstring. ``budget_s`` bounds the
    whole call (checks get 80% of it, alerts the rest); deployments not answered in time
    are ``not_checked`` and keep their status. Deployments are checked least recently
    checked first, so successive budget-bounded runs cover the whole fleet; the report's
    ``selected`` and ``checked`` counts say how much of it this run reached.
    ``alerted_vault_errors``: users whose vault
    error an earlier run already alerted (the monitor passes them). ``email``: the SMTP
    settings of the email channel (default: ``[alerts.email]`` of ``config``, see
    ``engine.lifecycle.email_alerts``; ``email_tls`` the TLS context for STARTTLS, the
    system's trust store by default). Raises
    ``VaultKeyMismatch`` (with ``.report``) when no checked deployment's credentials
    decrypt."""

    config = config or EngineConfig()
    if alert and email is None:  # before any status moves: a bad setting loses no alert
        email = email_settings(config)
    timeout = float(timeout or min(config.http_timeout_s, 10.0))
    if budget_s is not None:
        timeout = min(timeout, max(0.1, budget_s * 0.8 - 0.2))
    expect = Expectations(graph, config, store)
    report = HealthReport(started_at=clock())
    began = time.monotonic()
    selected = _select(store, users)
    report.selected = len(selected)
    results = await _probe_all(
        selected, vault=vault, connector=connector or HttpConnector(config),
        timeout=timeout, expect=expect, concurrency=concurrency,
        wait_s=None if budget_s is None else max(0.1, budget_s * 0.8))
    now = clock()
    for res in results:
        if apply:
            res, transition = _apply(store, res, now, block_on_drift)
            if transition:
                report.transitions.append(transition)
        report.results.append(res)
    failed = report.vault_errors
    for r in failed:
        log.error("health %s: %s (connection status left as %s)", r.user_id, r.reason,
                  r.status_after)
    new_vault = [r for r in failed if r.user_id not in set(alerted_vault_errors)]
    outbox = store if isinstance(store, AlertStore) else None
    if alert and (config.webhook_url or email is not None):
        remaining = None if budget_s is None else budget_s - (time.monotonic() - began)
        batches = _alert_batches(report, new_vault, send_moves=apply)
        if outbox is not None:
            for event, payload in _payloads(batches, report, now):
                if config.webhook_url:
                    outbox.enqueue_alert(event, payload)
                if email is not None:
                    outbox.enqueue_alert(event, payload, channel="email")
            report.alerts = await _deliver_channels(
                outbox, config.webhook_url, email, now=now, budget_s=remaining,
                transport=alert_transport, backoff=alert_backoff_s, ssl_context=email_tls)
        elif batches:
            report.alerts = await _send_alerts(config.webhook_url, email, report, now,
                                               remaining, alert_transport, batches, email_tls)
    if outbox is not None:
        report.pending_alerts = outbox.pending_alerts(limit=1000)
    report.finished_at = clock()
    checked = [r for r in report.results if r.state not in ("skipped", "not_checked")]
    if checked and len(failed) == len(checked):
        raise _key_mismatch(vault, store, failed, report)
    return report


_Batch = tuple[str, list[dict[str, Any]]]


def _alert_batches(report: HealthReport, vault_errors: list[DeploymentHealth],
                   send_moves: bool = True) -> list[_Batch]:
    """This run's alerts: (event, deployments), vault errors first."""

    batches: list[_Batch] = []
    if vault_errors:  # first: it explains every other symptom of a wrong key
        batches.append(("vault_error", [
            {"user_id": r.user_id, "state": r.state, "reason": r.reason,
             "status": r.status_after} for r in vault_errors]))
    for event in ("unhealthy", "recovered") if send_moves else ():
        items = [t for t in report.transitions if t["event"] == event]
        if items:
            batches.append((event, [{"user_id": t["user_id"], "state": t["state"],
                                     "reason": t["reason"], "status": t["to"]}
                                    for t in items]))
    return batches


def _payloads(batches: list[_Batch], report: HealthReport,
              now: float) -> list[tuple[str, dict[str, Any]]]:
    return [(event, build_alert(event, deployments, report.counts, now))
            for event, deployments in batches]


async def _deliver_channels(outbox: AlertStore, url: str | None, email: EmailSettings | None,
                            *, now: float, budget_s: float | None, transport: Any,
                            backoff: tuple[float, float], ssl_context: ssl.SSLContext | None,
                            ) -> list[AlertResult]:
    """Each configured channel's queue, side by side (a slow SMTP server never holds the
    webhook back), webhook results first."""

    rounds: list[Awaitable[list[AlertResult]]] = []
    if url:
        rounds.append(deliver_pending(outbox, url, now=now, budget_s=budget_s,
                                      transport=transport, backoff=backoff))
    if email is not None:
        rounds.append(deliver_pending_email(outbox, email, now=now, budget_s=budget_s,
                                            backoff=backoff, ssl_context=ssl_context))
    done = await asyncio.gather(*rounds)
    return [result for results in done for result in results]


async def _send_alerts(url: str | None, email: EmailSettings | None, report: HealthReport,
                       now: float, budget: float | None, transport: Any,
                       batches: list[_Batch], ssl_context: ssl.SSLContext | None,
                       ) -> list[AlertResult]:
    """One delivery round per alert and channel (a registry that keeps no alerts)."""

    out: list[AlertResult] = []
    deadline = None if budget is None else time.monotonic() + budget
    for event, payload in _payloads(batches, report, now):
        if url:
            remaining = None if deadline is None else deadline - time.monotonic()
            out.append(await send_alert(url, payload, budget_s=remaining,
                                        transport=transport))
        if email is not None:
            remaining = None if deadline is None else deadline - time.monotonic()
            out.append(await send_email(email, payload, budget_s=remaining,
                                        ssl_context=ssl_context))
    return out


async def _probe_all(selected: list[UserConfig], *, vault: Vault, connector: Connector,
                     timeout: float, expect: Expectations, concurrency: int,
                     wait_s: float | None) -> list[DeploymentHealth]:
    """Probe every selected user, at most ``concurrency`` at once, within ``wait_s``;
    one result per user, in order (``not_checked`` for those the budget left out)."""

    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(user: UserConfig) -> DeploymentHealth:
        if user.connection_status == "disconnected" or not user.url_ct:
            return DeploymentHealth(user.user_id, "skipped",
                                    f"connection {user.connection_status}: not checked",
                                    status_before=user.connection_status,
                                    status_after=user.connection_status)
        async with sem:
            return await _probe(user, vault=vault, connector=connector, timeout=timeout,
                                expect=expect)

    tasks = [asyncio.ensure_future(one(u)) for u in selected]
    if tasks:
        await asyncio.wait(tasks, timeout=wait_s)
    results: list[DeploymentHealth] = []
    for user, task in zip(selected, tasks):
        if task.done() and not task.cancelled() and task.exception() is None:
            results.append(task.result())
            continue
        if not task.done():
            task.cancel()
        reason = ("not checked: this run's time budget ran out" if not task.done() or
                  task.cancelled() else f"check failed: {type(task.exception()).__name__}")
        results.append(DeploymentHealth(user.user_id, "not_checked", reason,
                                        status_before=user.connection_status,
                                        status_after=user.connection_status))
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    return results


def check(users: Iterable[str] | str | None = "all", **kwargs: Any) -> HealthReport:
    """Synchronous ``check_async`` (for the CLI and scripts)."""

    return asyncio.run(check_async(users, **kwargs))


def monitor(interval: float, *, max_runs: int | None = None,
            on_report: Callable[[HealthReport], None] | None = None,
            on_standby: Callable[[str | None], None] | None = None,
            sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
            **kwargs: Any) -> list[HealthReport]:
    """Run ``check`` every ``interval`` seconds (each run bounded by the interval) until
    ``max_runs`` rounds are done (forever when None). Returns the last 100 reports. A run
    where no credentials decrypt raises ``VaultKeyMismatch`` and ends the monitor.

    Only the process holding the registry's ``monitor`` lease checks
    (``engine.lifecycle.monitor_lease``): another monitor on the same registry stands by
    (``on_standby(holder)`` once per round; a round stood by counts towards ``max_runs``
    and returns no report) and takes over when the holder lets go or dies."""

    if interval <= 0:
        raise ValueError("the monitor interval must be positive")
    store = kwargs.get("store")
    leadership = MonitorLeadership(store) if isinstance(store, LeaseStore) else None

    async def loop() -> list[HealthReport]:
        reports: list[HealthReport] = []
        alerted: frozenset[str] = frozenset()  # vault errors alert once, not every run
        run = 0
        while max_runs is None or run < max_runs:
            started = time.monotonic()
            run += 1
            if leadership is not None and not await asyncio.to_thread(leadership.lead):
                if on_standby is not None:
                    on_standby(leadership.held_by)
                if max_runs is not None and run >= max_runs:
                    break
                await sleep(min(interval, leadership.ttl_s / 2))
                continue
            report = await check_async(budget_s=interval, alerted_vault_errors=alerted,
                                       **kwargs)
            alerted = frozenset(r.user_id for r in report.vault_errors)
            reports = (reports + [report])[-100:]
            if on_report is not None:
                on_report(report)
            if max_runs is not None and run >= max_runs:
                break
            await sleep(max(0.0, interval - (time.monotonic() - started)))
        return reports

    try:
        return asyncio.run(loop())
    finally:
        if leadership is not None:
            leadership.let_go()


def summarize(reports: Sequence[HealthReport]) -> dict[str, Any]:
    """Totals over several runs (for the monitor's final line)."""

    return {"runs": len(reports),
            "transitions": sum(len(r.transitions) for r in reports),
            "alerts_sent": sum(1 for r in reports for a in r.alerts if a.delivered)}
