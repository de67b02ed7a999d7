"""Reconcile: check the registry against the fleet and rebuild it from the deployments'
own records (``byodVersions`` via ``byod:version``, ``byodSteps`` via ``byod:appliedSteps``).

Why: the registry is one file that can be lost, restored from an old backup, or left
behind by a rollout that crashed between writing the deployment and writing the registry.
Every deployment keeps its own record, so the registry can be checked — and, where the
deployment's record is trustworthy, rebuilt — from the fleet.

Trust follows ``engine.healthstate`` (the rules health checks and the runner use): a
plain bundle is trusted when its version is in the graph and its fingerprint is what that
version compiles to, or exactly what the registry or the deployment itself recorded
(``stale``); a widened bundle when this engine builds it (then the registry keeps the
version under it). Anything else is drift: reported, never "fixed". A deployment that does
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import EngineConfig
from .convex.adapter import DeploymentTarget, VersionInfo
from .errors import ByodError, DeploymentServerError, InvalidTransition, LeaseHeld
from .healthstate import Expectations, classify_answer, classify_failure
from .redact import redact
from .registry.store import JournalEntry, RegistryStore, UserConfig

__all__ = ["FAILED_STATES", "Finding", "ReconcileReport", "UserReconcile", "compare",
           "reconcile", "reconcile_async"]

log = logging.getLogger(__name__)

AsyncClientFactory = Callable[[DeploymentTarget, float], Any]

# States in which a deployment could not be read: nothing was compared or changed.
FAILED_STATES = frozenset({"unreachable", "unauthorized", "slow", "server_error", "broken",
                           "vault_error"})
# How much older than a journal row a deployment's step record may look (clocks differ)
# and still be the same run of that step.
CLOCK_SKEW_S = 300.0
_OPEN = ("pending", "running", "failed")


def _short(fp: Any) -> str:
    return str(fp)[:12] if fp else "none"


@dataclass(frozen=True)
class Finding:
    """One difference between the registry and a deployment's own record.

    ``field``: ``schema_version``, ``schema_fingerprint``, ``deployment_status``,
    ``journal`` (with ``plan_id``/``step_id``) or ``bundle`` (drift with nothing else to
    name). ``registry`` / ``deployment``: the two values."""

    field: str
    registry: Any
    deployment: Any
    reason: str
    fixable: bool
    fixed: bool = False
    plan_id: str | None = None
    step_id: str | None = None

    def describe(self) -> str:
        name = f"journal {self.plan_id}/{self.step_id}" if self.field == "journal" else self.field
        shown = [_short(v) if "fingerprint" in self.field else v
                 for v in (self.registry, self.deployment)]
        state = "fixed" if self.fixed else ("fixable with --apply" if self.fixable else
                                            "not fixed")
        return f"{name}: registry {shown[0]}, deployment {shown[1]} ({state}; {self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


# -- the pure core: what the deployment says, and how the registry differs ------------------


@dataclass(frozen=True)
class _Claim:
    """Where the deployment is by its own record, and which registry statuses fit it."""

    version: str | None = None
    fingerprint: str | None = None
    statuses: frozenset[str] = frozenset()
    settle: str = "deployed"  # the status to write when the registry's does not fit
    drift: str | None = None
    note: str | None = None
    plan_ids: tuple[str, ...] = ()


@dataclass
class Comparison:
    """Findings plus what ``apply`` would write for the fixable ones."""

    findings: list[Finding] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)  # set_deployment keyword → value
    progress: str | None = None
    notes: list[str] = field(default_factory=list)
    drifted: bool = False


def _bundle_trusted(user: UserConfig, info: VersionInfo, recorded: dict[str, Any],
                    expect: Expectations) -> bool:
    """A plain bundle is trusted when it is what its version compiles to, or exactly what
    the registry or the deployment recorded (stale): healthstate's rules, per candidate."""

    candidates: list[tuple[str | None, str | None]] = []
    if expect.compiled(info.version) is not None:
        candidates.append((None, None))
    if user.schema_version and user.schema_fingerprint:
        candidates.append((user.schema_version, user.schema_fingerprint))
    if recorded.get("version") and recorded.get("fingerprint"):
        candidates.append((str(recorded["version"]), str(recorded["fingerprint"])))
    for version, fingerprint in candidates:
        as_recorded = dataclasses.replace(user, schema_version=version,
                                          schema_fingerprint=fingerprint)
        if classify_answer(as_recorded, info, expect).state in ("healthy", "stale"):
            return True
    return False


def _claim(user: UserConfig, info: VersionInfo, expect: Expectations) -> _Claim:
    recorded = info.recorded if isinstance(info.recorded, dict) else {}
    rec_v = str(recorded["version"]) if recorded.get("version") else None
    rec_fp = str(recorded["fingerprint"]) if recorded.get("fingerprint") else None
    plans = (str(recorded["planId"]),) if recorded.get("planId") else ()
    if info.kind == "version":
        if not expect.known(info.version):
            return _Claim(drift=f"version {info.version} is not in the version graph")
        if not _bundle_trusted(user, info, recorded, expect):
            return _Claim(drift=(
                f"fingerprint {_short(info.fingerprint)} of {info.version} is neither what "
                f"{info.version} compiles to ({_short(expect.compiled(info.version))}) nor "
                "what the registry or the deployment recorded"))
        if rec_v and rec_v != info.version:
            if not expect.known(rec_v) or not rec_fp:
                return _Claim(drift=f"recorded version {rec_v} is not in the version graph")
            return _Claim(rec_v, rec_fp, frozenset({"deploying", "failed"}), "deploying",
                          note=(f"runs the bundle of {info.version} but its record says "
                                f"{rec_v}: a rollout stopped between deploying and recording;"
                                " resume it (`byod rollout --resume ID`) or run a new one"),
                          plan_ids=plans)
        ok = {"deployed"} | ({"failed"} if user.schema_version == info.version else set())
        compiled = expect.compiled(info.version)
        note = None if info.fingerprint == compiled else (
            f"stale: {info.version} now compiles to {_short(compiled)}; a rollout refreshes it")
        return _Claim(info.version, info.fingerprint, frozenset(ok), "deployed", note=note,
                      plan_ids=plans)
    if info.kind == "widen":
        match = expect.widened(user.user_id, info.version, info.fingerprint)
        if match is None:
            return _Claim(drift=(f"widened bundle {info.version} with fingerprint "
                                 f"{_short(info.fingerprint)} is not one this engine builds"))
        if rec_v and rec_v != match.start:
            return _Claim(drift=(f"the deployment's record says {rec_v}, but its widened "
                                 f"bundle bridges {match.start} -> {match.end}"))
        fp = rec_fp if rec_v == match.start and rec_fp else expect.compiled(match.start)
        if not fp:
            return _Claim(drift=f"no fingerprint for {match.start}, the version under the "
                                "widened bundle")
        plan_ids = plans + ((match.plan_id,) if match.plan_id else ())
        return _Claim(match.start, fp, frozenset({"deploying", "failed"}), "deploying",
                      note=match.describe(), plan_ids=plan_ids)
    return _Claim(drift=f"bundle kind {info.kind!r} is neither a version nor a widened bundle")


def _matches(entry: JournalEntry, row: dict[str, Any]) -> bool:
    """The journal names a data step by its plan step id (``id`` or ``id@version``); the
    deployment by the data step id and the version it leads to."""

    sid = str(row.get("stepId") or "")
    return entry.kind == "run_data_step" and bool(sid) and entry.step_id in (
        sid, f"{sid}@{row.get('version')}")


def _same_run(entry: JournalEntry, row: dict[str, Any]) -> bool:
    updated = row.get("updatedAt")
    if not isinstance(updated, (int, float)) or not entry.created_at:
        return True
    return updated / 1000.0 + CLOCK_SKEW_S >= entry.created_at


def _journal_findings(claim: _Claim, info: VersionInfo, steps: Sequence[dict[str, Any]],
                      journal: Sequence[JournalEntry]) -> list[Finding]:
    found: dict[tuple[str, str], Finding] = {}
    # The deployment completed a data step the registry still has open.
    for row in steps:
        if row.get("status") != "completed":
            continue
        entries = [e for e in journal if _matches(e, row)]
        if any(e.status == "completed" for e in entries):
            continue
        open_ = [e for e in entries if e.status in _OPEN and _same_run(e, row)]
        if open_:
            e = open_[-1]  # the newest plan's row (the journal reads oldest first)
            found[(e.plan_id, e.step_id)] = Finding(
                "journal", e.status, "completed", f"the deployment recorded data step "
                f"{row.get('stepId')} completed ({row.get('processed', 0)} documents)",
                True, plan_id=e.plan_id, step_id=e.step_id)
    # The deployment recorded version R for plan P: every step of P up to record:R ran.
    recorded = info.recorded if isinstance(info.recorded, dict) else {}
    plan, reached = recorded.get("planId"), recorded.get("version")
    if plan and reached and recorded.get("kind", "version") == "version":
        rows = [e for e in journal if e.plan_id == plan]
        mark = next((e for e in rows if e.step_id == f"record:{reached}"), None)
        for e in rows if mark is not None else ():
            if e.seq <= mark.seq and e.status in _OPEN and (e.plan_id, e.step_id) not in found:
                found[(e.plan_id, e.step_id)] = Finding(
                    "journal", e.status, "completed", f"the deployment recorded {reached} "
                    f"for plan {plan}, so every step up to record:{reached} ran", True,
                    plan_id=e.plan_id, step_id=e.step_id)
    # The reverse: in the plans the deployment names, data steps the registry completed
    # that the deployment never recorded completing.
    for e in journal:
        if e.plan_id not in claim.plan_ids or e.kind != "run_data_step" \
                or e.status != "completed":
            continue
        rows = [r for r in steps if _matches(e, r)]
        if not any(r.get("status") == "completed" for r in rows):
            have = rows[-1].get("status") if rows else None
            found[(e.plan_id, e.step_id)] = Finding(
                "journal", "completed", have, "the registry says this data step completed, "
                "the deployment never recorded completing it: check its data before the "
                "next rollout", False, plan_id=e.plan_id, step_id=e.step_id)
    return list(found.values())


def compare(user: UserConfig, info: VersionInfo, steps: Sequence[dict[str, Any]],
            journal: Sequence[JournalEntry], expect: Expectations) -> Comparison:
    """How the registry's row and journal differ from the deployment's own record (no I/O
    but ``expect``'s cached compiles)."""

    claim = _claim(user, info, expect)
    out = Comparison()
    if claim.note:
        out.notes.append(claim.note)
    if claim.drift:
        out.drifted = True
        reason = f"drift: {claim.drift}; left untouched"
        if user.schema_version != info.version:
            out.findings.append(Finding("schema_version", user.schema_version, info.version,
                                        reason, False))
        if user.schema_fingerprint != info.fingerprint:
            out.findings.append(Finding("schema_fingerprint", user.schema_fingerprint,
                                        info.fingerprint, reason, False))
        if not out.findings:
            out.findings.append(Finding("bundle", f"{user.schema_version}",
                                        f"{info.kind} {info.version}", reason, False))
        return out
    assert claim.version is not None and claim.fingerprint is not None
    why = "the deployment's own record"
    if user.schema_version != claim.version:
        out.findings.append(Finding("schema_version", user.schema_version, claim.version,
                                    why, True))
        out.fields["version"] = claim.version
    if user.schema_fingerprint != claim.fingerprint:
        out.findings.append(Finding("schema_fingerprint", user.schema_fingerprint,
                                    claim.fingerprint, why, True))
        out.fields["fingerprint"] = claim.fingerprint
    if user.deployment_status not in claim.statuses:
        out.findings.append(Finding(
            "deployment_status", user.deployment_status, claim.settle,
            f"the deployment runs {info.kind} {info.version}", True))
        out.fields["status"] = claim.settle
    if out.fields:
        out.progress = (f"on {claim.version} (reconciled from the deployment)"
                        if claim.settle == "deployed" else
                        f"on {info.kind} {info.version} over {claim.version} (reconciled "
                        "from the deployment); a rollout finishes it")
    out.findings.extend(_journal_findings(claim, info, steps, journal))
    return out


# -- applying a comparison ------------------------------------------------------------------


def _apply(store: RegistryStore, user_id: str, cmp: Comparison) -> list[Finding]:
    """Write the fixable findings; each one that lands is audited and marked fixed."""

    out: list[Finding] = []
    registry_ok = True
    if cmp.fields:
        try:
            store.set_deployment(user_id, progress=cmp.progress, **cmp.fields)  # type: ignore[arg-type]
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


def _default_async_factory(target: DeploymentTarget, timeout: float) -> Any:
    from .convex.http import AsyncConvexHttpClient

    return AsyncConvexHttpClient(target, timeout=timeout, retries=1)


async def _read(client: Any, timeout: float) -> tuple[VersionInfo, list[dict[str, Any]]]:
    info = await asyncio.wait_for(client.read_version(), timeout + 1.0)
    steps = await asyncio.wait_for(client.query("byod:appliedSteps"), timeout + 1.0)
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise DeploymentServerError("byod:appliedSteps answered something that is not a "
                                    "list of step records")
    return info, steps


def _lease_holder(store: RegistryStore, user_id: str) -> str | None:
    current = getattr(store, "current_lease", None)
    lease = current(user_id) if callable(current) else None
    return getattr(lease, "holder", None)


def _select(store: RegistryStore, users: Iterable[str] | str | None) -> list[UserConfig]:
    if users is None or users == "all":
        return store.list_users()
    if isinstance(users, str):
        users = [users]
    return [store.get_user(uid) for uid in dict.fromkeys(users)]


async def _one(user: UserConfig, *, store: RegistryStore, vault: Any, expect: Expectations,
               factory: AsyncClientFactory, timeout: float, apply: bool,
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
    else:
        other = _lease_holder(store, uid)
        if other:
            return UserReconcile(uid, "busy", f"being worked by {other}: not checked")
    secrets: tuple[str, ...] = ()
    try:
        user = store.get_user(uid)  # fresh, now that nobody else may write it
        try:
            target = vault.target_for(user)
            secrets = tuple(target.secrets)
            client = factory(target, timeout)
            try:
                info, steps = await _read(client, timeout)
            finally:
                closer = getattr(client, "aclose", None)
                if closer is not None:
                    await closer()
        except (ByodError, TimeoutError, asyncio.TimeoutError) as exc:
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
    users: Iterable[str] | str | None = "all", *, store: RegistryStore, vault: Any,
    config: EngineConfig | None = None, graph: Any, apply: bool = False,
    concurrency: int = 16, timeout: float | None = None,
    client_factory: AsyncClientFactory | None = None,
    clock: Callable[[], float] = time.time,
) -> ReconcileReport:
    """Compare every selected user's registry row and journal with its deployment's own
    record, concurrently; with ``apply`` rebuild what is trustworthy (module docstring)."""

    config = config or EngineConfig()
    timeout = float(timeout or min(config.http_timeout_s, 10.0))
    expect = Expectations(graph, config, store)
    factory = client_factory or _default_async_factory
    holder = f"reconcile:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    report = ReconcileReport(started_at=clock(), applied=apply)
    sem = asyncio.Semaphore(max(1, concurrency))

    async def bounded(user: UserConfig) -> UserReconcile:
        async with sem:
            try:
                return await _one(user, store=store, vault=vault, expect=expect,
                                  factory=factory, timeout=timeout, apply=apply, holder=holder)
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
