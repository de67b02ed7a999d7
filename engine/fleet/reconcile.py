"""Reconcile: check the registry against the fleet and rebuild it from the deployments'
own records (``byodVersions`` via ``byod:version``, ``byodSteps`` via ``byod:appliedSteps``).

Why: the registry is one file that can be lost, restored from an old backup, or left
behind by a rollout that crashed between writing the deployment and writing the registry.
Every deployment keeps its own record, so the registry can be checked — and, where the
deployment's record is trustworthy, rebuilt — from the fleet.

What is trustworthy is decided in ``engine.fleet.findings`` (the pure core, on
``engine.fleet.health_states``'s rules, so reconcile, health checks and the runner agree): a
trusted plain bundle or a widened bundle this engine builds is rebuilt from (a widened
one keeps the version under it); drift is reported, never "fixed". A deployment that does
not answer, rejects the key or whose credentials do not decrypt changes nothing.

With ``apply`` each user's lease is held while its row is compared and rewritten, so a
rollout or a connect never races a repair; every change is audited (``reconcile``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.config import EngineConfig
from engine.convex.connector import HttpConnector
from engine.errors import ByodError, DeploymentServerError, InvalidTransition, LeaseHeld
from engine.fleet.findings import Comparison, Finding, compare
from engine.fleet.health_states import Expectations, classify_failure
from engine.plan.graph import VersionGraph
from engine.ports.deployment import Connector, VersionInfo, aclose_quietly
from engine.ports.registry import RegistryStore, UserConfig
from engine.redact import redact
from engine.vault import Vault

__all__ = ["FAILED_STATES", "Comparison", "Finding", "ReconcileReport", "UserReconcile",
           "compare", "reconcile", "reconcile_async"]

log = logging.getLogger(__name__)


# States in which a deployment could not be read: nothing was compared or changed.
FAILED_STATES = frozenset({"unreachable", "unauthorized", "slow", "server_error", "broken",
                           "vault_error"})


@dataclass
class UserReconcile:
    """One user's result. ``state``: in_sync, differs, fixed, partly_fixed, drifted,
    busy, skipped, or a failure state (``FAILED_STATES``)."""

    user_id: str
    state: str
    reason: str | None = None
    kind: str | None = None
    version: str | None = None
    fingerprint: str | None = None
    recorded_version: str | None = None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> list[Finding]:
        return [f for f in self.findings if not f.fixed]

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "state": self.state, "reason": self.reason,
                "kind": self.kind, "version": self.version, "fingerprint": self.fingerprint,
                "recorded_version": self.recorded_version,
                "findings": [f.to_dict() for f in self.findings], "notes": list(self.notes)}


@dataclass
class ReconcileReport:
    started_at: float
    applied: bool = False
    finished_at: float = 0.0
    results: list[UserReconcile] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.state] = out.get(r.state, 0) + 1
        return dict(sorted(out.items()))

    @property
    def remaining(self) -> list[tuple[str, Finding]]:
        return [(r.user_id, f) for r in self.results for f in r.remaining]

    @property
    def fixed(self) -> list[tuple[str, Finding]]:
        return [(r.user_id, f) for r in self.results for f in r.findings if f.fixed]

    @property
    def unreadable(self) -> list[UserReconcile]:
        return [r for r in self.results if r.state in FAILED_STATES]

    @property
    def ok(self) -> bool:
        """No difference left and every selected deployment with credentials was read."""

        return not self.remaining and not self.unreadable

    def result(self, user_id: str) -> UserReconcile:
        for r in self.results:
            if r.user_id == user_id:
                return r
        raise KeyError(user_id)

    def to_dict(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "finished_at": self.finished_at,
                "applied": self.applied, "ok": self.ok, "counts": self.counts,
                "fixed": len(self.fixed), "remaining": len(self.remaining),
                "results": [r.to_dict() for r in self.results]}


# -- applying a comparison ------------------------------------------------------------------


def _apply(store: RegistryStore, user_id: str, cmp: Comparison) -> list[Finding]:
    """Write the fixable findings; each one that lands is audited and marked fixed."""

    out: list[Finding] = []
    registry_ok = True
    if cmp.fields:
        try:
            fields: dict[str, Any] = dict(cmp.fields)
            store.set_deployment(user_id, progress=cmp.progress, **fields)
        except ByodError as exc:
            registry_ok = False
            log.error("reconcile %s: cannot write the registry row: %s", user_id, exc)
    for f in cmp.findings:
        if not f.fixable:
            out.append(f)
            continue
        ok = registry_ok
        if f.field == "journal":
            ok = _complete(store, user_id, f)
        if ok:
            store.audit(user_id, "reconcile", {"field": f.field, "registry": f.registry,
                                               "deployment": f.deployment, "plan": f.plan_id,
                                               "step": f.step_id, "reason": f.reason})
            f = dataclasses.replace(f, fixed=True)
        out.append(f)
    return out


def _complete(store: RegistryStore, user_id: str, f: Finding) -> bool:
    assert f.plan_id is not None and f.step_id is not None
    try:
        if f.registry in ("pending", "failed"):
            store.journal_update(user_id, f.plan_id, f.step_id, status="running")
        store.journal_update(user_id, f.plan_id, f.step_id, status="completed")
        return True
    except (InvalidTransition, ByodError) as exc:
        log.error("reconcile %s: cannot complete %s/%s: %s", user_id, f.plan_id, f.step_id,
                  exc)
        return False


def _state(cmp: Comparison, findings: list[Finding]) -> str:
    if cmp.drifted:
        return "drifted"
    if not findings:
        return "in_sync"
    fixed = sum(1 for f in findings if f.fixed)
    return "fixed" if fixed == len(findings) else "partly_fixed" if fixed else "differs"


# -- reading the fleet ----------------------------------------------------------------------


async def _read(client: Any, timeout: float) -> tuple[VersionInfo, list[dict[str, Any]]]:
    info = await asyncio.wait_for(client.read_version(), timeout + 1.0)
    steps = await asyncio.wait_for(client.query("byod:appliedSteps"), timeout + 1.0)
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise DeploymentServerError("byod:appliedSteps answered something that is not a "
                                    "list of step records")
    return info, steps


def _select(store: RegistryStore, users: Iterable[str] | str | None) -> list[UserConfig]:
    if users is None or users == "all":
        return store.list_users()
    if isinstance(users, str):
        users = [users]
    return [store.get_user(uid) for uid in dict.fromkeys(users)]


async def _one(user: UserConfig, *, store: RegistryStore, vault: Vault, expect: Expectations,
               connector: Connector, timeout: float, apply: bool,
               holder: str) -> UserReconcile:
    uid = user.user_id
    if user.connection_status == "disconnected":
        return UserReconcile(uid, "skipped", "disconnected: not checked")
    if not user.url_ct or not user.key_ct:
        return UserReconcile(uid, "skipped", "no saved credentials: not checked")
    if apply:
        try:
            store.acquire_lease(uid, holder, timeout * 3 + 30.0)
        except LeaseHeld as exc:
            return UserReconcile(uid, "busy", f"being worked by {exc.holder}: not checked")
    else:  # read-only: a lease the store can show means the row is changing right now
        current = getattr(store, "current_lease", None)
        other = getattr(current(uid) if callable(current) else None, "holder", None)
        if other:
            return UserReconcile(uid, "busy", f"being worked by {other}: not checked")
    secrets: tuple[str, ...] = ()
    try:
        user = store.get_user(uid)  # fresh, now that nobody else may write it
        try:
            target = vault.target_for(user)
            secrets = tuple(target.secrets)
            client = connector.async_client(target, timeout=timeout, retries=1)
            try:
                info, steps = await _read(client, timeout)
            finally:
                await aclose_quietly(client)
        except (ByodError, TimeoutError) as exc:
            verdict = classify_failure(exc, timeout=timeout)
            reason = redact(verdict.reason or verdict.state, list(secrets))
            return UserReconcile(uid, verdict.state, f"{reason}; nothing changed")
        cmp = compare(user, info, steps, store.journal(uid), expect)
        findings = _apply(store, uid, cmp) if apply else list(cmp.findings)
        findings = [dataclasses.replace(f, reason=redact(f.reason, list(secrets)))
                    for f in findings]
        recorded = info.recorded if isinstance(info.recorded, dict) else {}
        return UserReconcile(uid, _state(cmp, findings), kind=info.kind, version=info.version,
                             fingerprint=info.fingerprint,
                             recorded_version=recorded.get("version"), findings=findings,
                             notes=[redact(n, list(secrets)) for n in cmp.notes])
    finally:
        if apply:
            store.release_lease(uid, holder)


async def reconcile_async(
    users: Iterable[str] | str | None = "all", *, store: RegistryStore, vault: Vault,
    config: EngineConfig | None = None, graph: VersionGraph, apply: bool = False,
    concurrency: int = 16, timeout: float | None = None,
    connector: Connector | None = None,
    clock: Callable[[], float] = time.time,
) -> ReconcileReport:
    """Compare every selected user's registry row and journal with its deployment's own
    record, concurrently; with ``apply`` rebuild what is trustworthy (module docstring)."""

    config = config or EngineConfig()
    timeout = float(timeout or min(config.http_timeout_s, 10.0))
    expect = Expectations(graph, config, store)
    connector = connector or HttpConnector(config)
    holder = f"reconcile:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    report = ReconcileReport(started_at=clock(), applied=apply)
    sem = asyncio.Semaphore(max(1, concurrency))

    async def bounded(user: UserConfig) -> UserReconcile:
        async with sem:
            try:
                return await _one(user, store=store, vault=vault, expect=expect,
                                  connector=connector, timeout=timeout, apply=apply,
                                  holder=holder)
            except ByodError as exc:  # the registry itself failing for this user
                return UserReconcile(user.user_id, "broken",
                                     f"{type(exc).__name__}: {redact(str(exc))}")
            except Exception as exc:  # noqa: BLE001 - one user never breaks the run
                log.error("reconcile %s: unexpected %s", user.user_id, type(exc).__name__)
                return UserReconcile(user.user_id, "broken",
                                     f"unexpected {type(exc).__name__}; nothing changed")

    selected = _select(store, users)
    report.results = list(await asyncio.gather(*(bounded(u) for u in selected)))
    report.finished_at = clock()
    return report


def reconcile(users: Iterable[str] | str | None = "all", **kwargs: Any) -> ReconcileReport:
    """Synchronous ``reconcile_async`` (for the CLI and scripts)."""

    return asyncio.run(reconcile_async(users, **kwargs))
