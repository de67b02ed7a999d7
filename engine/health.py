"""Health checks and the monitor loop.

Each check asks every deployment, concurrently and with a timeout, for its version
(``byod:version``) and classifies the answer:

* ``healthy``      — answered, and it runs what the registry says it runs;
* ``drifted``      — answered, but the version or fingerprint differs from the registry or
                     from what that version compiles to (``drift`` names what differs);
* ``slow``         — no answer within the timeout;
* ``unreachable``  — connection refused, dropped, or a 5xx (``server_error``);
* ``unauthorized`` — the key was rejected (revoked);
* ``broken``       — anything else (credentials that do not decrypt, no byod bundle).

Then it moves connection status ``connected`` → ``error`` (with a sanitized reason and the
time) for unhealthy deployments and ``error`` → ``connected`` for recovered ones. It never
touches ``pending`` or ``disconnected`` users, nor a user whose disconnect is in progress.
An alert goes to ``config.webhook_url`` on transitions only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .alerts import AlertResult, build_alert, send_alert
from .config import EngineConfig
from .convex.adapter import DeploymentTarget, VersionInfo
from .disconnect import disconnect_in_progress
from .errors import (
    ByodError,
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    InvalidTransition,
)
from .redact import redact
from .registry.store import RegistryStore, UserConfig
from .routing import VersionSource, as_version_source

__all__ = ["UNHEALTHY", "DeploymentHealth", "HealthReport", "check", "check_async", "monitor"]

log = logging.getLogger(__name__)

UNHEALTHY = frozenset({"drifted", "slow", "unreachable", "server_error", "unauthorized",
                       "broken"})
_STATES = ("healthy", *sorted(UNHEALTHY), "not_checked", "skipped")


AsyncClientFactory = Callable[[DeploymentTarget, float], Any]


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

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id, "state": self.state, "reason": self.reason,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "version": self.version, "fingerprint": self.fingerprint,
            "expected_version": self.expected_version, "drift": list(self.drift),
            "status_before": self.status_before, "status_after": self.status_after,
        }


@dataclass
class HealthReport:
    started_at: float
    finished_at: float = 0.0
    results: list[DeploymentHealth] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[AlertResult] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in _STATES}
        for r in self.results:
            out[r.state] = out.get(r.state, 0) + 1
        return {k: v for k, v in out.items() if v}

    @property
    def unhealthy(self) -> list[DeploymentHealth]:
        return [r for r in self.results if r.state in UNHEALTHY]

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
            "results": [r.to_dict() for r in self.results],
            "transitions": list(self.transitions),
            "alerts": [a.to_dict() for a in self.alerts],
        }


# -- classification (pure) -------------------------------------------------------------------


def _short(fp: str | None) -> str:
    return (fp or "none")[:12]


def drift_of(user: UserConfig, info: VersionInfo, expected_fp: str | None,
             known: bool) -> list[str]:
    """What differs between the deployment's answer, the registry and the compiled
    version; empty when nothing does."""

    out: list[str] = []
    if info.kind == "widen":
        if user.deployment_status != "deploying":
            out.append(f"deployment is on the widened schema of {info.version} "
                       "(an unfinished rollout); resume the rollout")
        return out
    if user.schema_version and info.version != user.schema_version:
        out.append(f"version: registry says {user.schema_version}, "
                   f"deployment has {info.version}")
    if not known:
        out.append(f"version {info.version} is not in the version graph")
    if user.schema_fingerprint and info.fingerprint != user.schema_fingerprint:
        out.append(f"fingerprint: registry says {_short(user.schema_fingerprint)}, "
                   f"deployment has {_short(info.fingerprint)}")
    if expected_fp and info.fingerprint != expected_fp:
        out.append(f"fingerprint: version {info.version} compiles to {_short(expected_fp)}, "
                   f"deployment has {_short(info.fingerprint)}")
    return out


def classify_error(exc: BaseException) -> str:
    if isinstance(exc, (DeploymentTimeout, asyncio.TimeoutError, TimeoutError)):
        return "slow"
    if isinstance(exc, DeploymentUnauthorized):
        return "unauthorized"
    if isinstance(exc, DeploymentServerError):
        return "server_error"
    if isinstance(exc, DeploymentUnreachable):
        return "unreachable"
    return "broken"


# -- the check ---------------------------------------------------------------------------------


class _Fingerprints:
    """Compiled fingerprints per version id, computed once per check."""

    def __init__(self, versions: VersionSource, config: EngineConfig):
        self.versions = versions
        self.config = config
        self._cache: dict[str, str | None] = {}

    def known(self, vid: str) -> bool:
        return self.versions.version(vid) is not None

    def expected(self, vid: str) -> str | None:
        if vid not in self._cache:
            version = self.versions.version(vid)
            fp: str | None = None
            if version is not None:
                try:
                    from .compiler import compile_version

                    fp = compile_version(version, self.config).fingerprint
                except ByodError as exc:
                    log.warning("cannot compile version %s for a fingerprint check: %s",
                                vid, exc)
            self._cache[vid] = fp
        return self._cache[vid]


def _default_async_factory(target: DeploymentTarget, timeout: float) -> Any:
    from .convex.http import AsyncConvexHttpClient

    return AsyncConvexHttpClient(target, timeout=timeout, retries=0)


async def _probe(user: UserConfig, *, vault: Any, factory: AsyncClientFactory,
                 timeout: float, fps: _Fingerprints) -> DeploymentHealth:
    base: dict[str, Any] = {"user_id": user.user_id, "expected_version": user.schema_version,
                            "status_before": user.connection_status,
                            "status_after": user.connection_status}
    secrets: tuple[str, ...] = ()
    started = time.monotonic()
    try:
        target = vault.target_for(user)
        secrets = target.secrets
        client = factory(target, timeout)
        try:
            info = await asyncio.wait_for(client.read_version(), timeout + 1.0)
        finally:
            closer = getattr(client, "aclose", None)
            if closer is not None:
                await closer()
    except (ByodError, TimeoutError) as exc:
        latency = (time.monotonic() - started) * 1000
        state = classify_error(exc)
        text = str(exc) or f"no answer within {timeout:g} s"
        return DeploymentHealth(state=state, reason=redact(text, secrets), latency_ms=latency,
                                **base)
    latency = (time.monotonic() - started) * 1000
    drift = drift_of(user, info, fps.expected(info.version) if info.kind != "widen" else None,
                     fps.known(info.version) or info.kind == "widen")
    state = "drifted" if drift else "healthy"
    reason = ("drift: " + "; ".join(drift)) if drift else None
    return DeploymentHealth(state=state, reason=redact(reason, secrets) if reason else None,
                            latency_ms=latency, version=info.version,
                            fingerprint=info.fingerprint, drift=tuple(drift), **base)


def _select(store: RegistryStore, users: Iterable[str] | str | None) -> list[UserConfig]:
    if users is None or users == "all":
        return store.list_users(connection_status=["connected", "error"])
    if isinstance(users, str):
        users = [users]
    return [store.get_user(uid) for uid in users]


def _apply(store: RegistryStore, result: DeploymentHealth, now: float,
           block_on_drift: bool) -> tuple[DeploymentHealth, dict[str, Any] | None]:
    """Move connected ↔ error for one result; returns the result and the transition."""

    if result.state in ("not_checked", "skipped"):
        return result, None
    fresh = store.find_user(result.user_id)
    if fresh is None or fresh.connection_status not in ("connected", "error"):
        return result, None  # pending / disconnected (maybe changed meanwhile): hands off
    if disconnect_in_progress(store, result.user_id):
        return result, None
    bad = result.state in UNHEALTHY and (block_on_drift or result.state != "drifted")
    target: Literal["error", "connected"] = "error" if bad else "connected"
    try:
        updated = store.set_connection_status(
            result.user_id, target, error=result.reason if bad else None, tested_at=now)
    except InvalidTransition:
        return result, None
    after = DeploymentHealth(**{**result.__dict__, "status_after": updated.connection_status})
    if fresh.connection_status == target:
        return after, None
    event = "unhealthy" if bad else "recovered"
    store.audit(result.user_id, f"health_{event}", {"state": result.state,
                                                   "reason": result.reason})
    return after, {"user_id": result.user_id, "from": fresh.connection_status, "to": target,
                   "event": event, "state": result.state, "reason": result.reason, "at": now}


async def check_async(
    users: Iterable[str] | str | None = "all", *, store: RegistryStore, vault: Any,
    graph: Any, config: EngineConfig | None = None, concurrency: int = 16,
    timeout: float | None = None, budget_s: float | None = None,
    client_factory: AsyncClientFactory | None = None, apply: bool = True,
    alert: bool = True, block_on_drift: bool = True,
    alert_transport: Any = None, clock: Callable[[], float] = time.time,
) -> HealthReport:
    """Check deployments concurrently; see the module docstring. ``budget_s`` bounds the
    whole call (checks get 80% of it, alerts the rest); deployments not answered in time
    are ``not_checked`` and keep their status."""

    config = config or EngineConfig()
    timeout = float(timeout or min(config.http_timeout_s, 10.0))
    if budget_s is not None:
        timeout = min(timeout, max(0.1, budget_s * 0.8 - 0.2))
    fps = _Fingerprints(as_version_source(graph), config)
    factory = client_factory or _default_async_factory
    report = HealthReport(started_at=clock())
    began = time.monotonic()
    selected = _select(store, users)
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(user: UserConfig) -> DeploymentHealth:
        if user.connection_status == "disconnected" or not user.url_ct:
            return DeploymentHealth(user.user_id, "skipped",
                                    f"connection {user.connection_status}: not checked",
                                    status_before=user.connection_status,
                                    status_after=user.connection_status)
        async with sem:
            return await _probe(user, vault=vault, factory=factory, timeout=timeout, fps=fps)

    tasks = [asyncio.ensure_future(one(u)) for u in selected]
    wait_for = None if budget_s is None else max(0.1, budget_s * 0.8)
    if tasks:
        await asyncio.wait(tasks, timeout=wait_for)
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
    now = clock()
    for res in results:
        if apply:
            res, transition = _apply(store, res, now, block_on_drift)
            if transition:
                report.transitions.append(transition)
        report.results.append(res)
    if alert and apply and config.webhook_url and report.transitions:
        remaining = None if budget_s is None else budget_s - (time.monotonic() - began)
        report.alerts = await _send_alerts(config.webhook_url, report, now,
                                           remaining, alert_transport)
    report.finished_at = clock()
    return report


async def _send_alerts(url: str, report: HealthReport, now: float,
                       budget: float | None, transport: Any) -> list[AlertResult]:
    out: list[AlertResult] = []
    for event in ("unhealthy", "recovered"):
        items = [t for t in report.transitions if t["event"] == event]
        if not items:
            continue
        deployments = [{"user_id": t["user_id"], "state": t["state"],
                        "reason": t["reason"], "status": t["to"]} for t in items]
        payload = build_alert(event, deployments, report.counts, now)
        out.append(await send_alert(url, payload, budget_s=budget, transport=transport))
    return out


def check(users: Iterable[str] | str | None = "all", **kwargs: Any) -> HealthReport:
    """Synchronous ``check_async`` (for the CLI and scripts)."""

    return asyncio.run(check_async(users, **kwargs))


def monitor(interval: float, *, max_runs: int | None = None,
            on_report: Callable[[HealthReport], None] | None = None,
            sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
            **kwargs: Any) -> list[HealthReport]:
    """Run ``check`` every ``interval`` seconds (each run bounded by the interval) until
    ``max_runs`` runs are done (forever when None). Returns the last 100 reports."""

    if interval <= 0:
        raise ValueError("the monitor interval must be positive")

    async def loop() -> list[HealthReport]:
        reports: list[HealthReport] = []
        run = 0
        while max_runs is None or run < max_runs:
            started = time.monotonic()
            report = await check_async(budget_s=interval, **kwargs)
            run += 1
            reports = (reports + [report])[-100:]
            if on_report is not None:
                on_report(report)
            if max_runs is not None and run >= max_runs:
                break
            await sleep(max(0.0, interval - (time.monotonic() - started)))
        return reports

    return asyncio.run(loop())


def summarize(reports: Sequence[HealthReport]) -> dict[str, Any]:
    """Totals over several runs (for the monitor's final line)."""

    return {"runs": len(reports),
            "transitions": sum(len(r.transitions) for r in reports),
            "alerts_sent": sum(1 for r in reports for a in r.alerts if a.delivered)}
