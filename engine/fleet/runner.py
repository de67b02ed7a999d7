"""Execute one deployment's frozen plan: the only place a plan meets the outside world.

Order of business for one deployment:

1. **Lease.** Take the registry lease on the deployment (renewed in the background), so
   two runners never work the same deployment; a lost lease stops the work at the next
   step or page boundary.
2. **Reconcile.** Ask the deployment what it runs (``byod:version``) and what it last
   recorded, and classify the answer as the health check does (``engine.fleet.health_states``).
   The deployment's own record wins over the registry. A *stale* bundle — exactly the
   version and fingerprint recorded (by the registry or the deployment itself), but the
   version now compiles to another fingerprint after a config change — is accepted: a
   deployment stale at the target gets a refresh plan (deploy → verify → record), one on
   an older version its normal plan. A version this engine does not know, a fingerprint
   nobody recorded, or a widened bundle this engine did not build is drift and stops
   here — never guessed. If the deployment sits somewhere other than the plan's source,
   the plan is recomputed from where it really is.
3. **Journal.** Write the plan's steps to the journal (idempotent), then for each step:
   mark running → do it → mark completed. Data steps run page by page; the cursor is
   journaled after each page's mutation returns, so a crash at any instant resumes from
   the last journaled cursor. Pages are idempotent, so the one page that may run twice
   after a crash changes nothing the second time, and no page is ever skipped. A failed
   page is judged by Convex's own error codes and texts (``engine.convex.errors``): any
   transaction limit or a timeout halves the batch, the write-rate limit is waited out,
   and a cursor the deployment refuses restarts the step from the top, once per run.
4. **Outcome.** Success records the version on the deployment and in the registry; a
   failure leaves a redacted error in the journal and registry and a retryable state.

The core is async (many deployments run concurrently in one rollout): function calls go
through an async client when one is given, sync adapters run in worker threads, and CLI
deploys are bounded by a shared semaphore sized to the CPU count (pushes of captured
requests, ``cpu_bound = False``, are not: they wait on the network, not the CPU).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Sequence

from engine.bundle.compiler import Bundle
from engine.convex.errors import ConvexErrorRule, classify_error
from engine.convex.retry import RetryPolicy
from engine.errors import (
    ByodError,
    DeployFailed,
    DeploymentError,
    DeploymentTimeout,
    DriftDetected,
    FunctionError,
    LeaseHeld,
    RolloutError,
    UnknownVersion,
)
from engine.events import (
    BatchResized,
    CursorReset,
    DeploymentDone,
    DeploymentFailed,
    DeploymentSkipped,
    DeploymentStarted,
    PageDone,
    Sink,
    StepCompleted,
    StepFailed,
    StepSkipped,
    StepStarted,
    null_sink,
)
from engine.fleet.artifacts import (
    PlanKit,
    is_refresh,
    plan_id_of,
    step_data,
    step_kind,
    step_version,
)
from engine.fleet.context import (
    AdaptiveBatch,
    DeploymentLease,
    DeploymentOutcome,
    DeployOps,
    OutcomeStatus,
    RunContext,
    default_deploy_slots,
)
from engine.fleet.run_reconcile import reconcile_deployment, record_reconciled
from engine.plan.planner import Plan, PlanStep
from engine.ports.registry import JournalEntry, RegistryStore
from engine.redact import redact

__all__ = [
    "DeploymentOutcome",
    "OutcomeStatus",
    "RunContext",
    "default_deploy_slots",
    "run_plan",
    "run_plan_async",
]

# transient server or network errors on a data page: the engine's one retry policy
_PAGE_RETRY = RetryPolicy(backoff_base=0.4, backoff_max=2.0)


_SHRINK_REASON = {"limit": "transaction limit", "timeout": "function timeout"}


def _page_error(exc: DeploymentError) -> ConvexErrorRule | None:
    """What a failed page ran into, by Convex's error table (``engine.convex.errors``)."""

    return classify_error(exc)


class _Run:
    """The state of one deployment's run (counters feed the outcome)."""

    def __init__(self, ctx: RunContext, user_id: str, ops: DeployOps, secrets: Sequence[str]):
        self.ctx, self.user_id, self.ops = ctx, user_id, ops
        self.secrets = tuple(secrets)
        self.deploys = self.pages = self.processed = self.changed = 0
        self.step_id: str | None = None
        self.step_kind: str | None = None

    def clean(self, text: str) -> str:
        return redact(text, self.secrets)[:800]

    # -- steps ----------------------------------------------------------------------------
    async def deploy(self, bundle: Bundle) -> None:
        await self.ops.deploy(bundle)
        self.deploys += 1
        info = await self.ops.read_version()
        if info.version != bundle.version_id or info.fingerprint != bundle.fingerprint:
            raise DeployFailed(
                f"after deploying {bundle.version_id} ({bundle.kind}) the deployment answers "
                f"{info.version} with fingerprint {str(info.fingerprint)[:12]}",
                deployment=self.user_id)

    async def data_step(self, plan: Plan, step: PlanStep, entry: JournalEntry, lease: DeploymentLease,
                        plan_id: str) -> None:
        ds = step_data(step)
        store = self.ctx.store
        batch = AdaptiveBatch(self.ctx.kit.batch_size(plan, ds))
        cursor: str | None = entry.cursor or None  # "" = from the start (after a reset)
        total = entry.processed
        page = 0
        cursor_resets = 0
        await self.ops.mutation("byod:recordStep", {
            "stepId": ds.id, "version": step_version(plan, step), "status": "running",
            "cursor": cursor, "processed": total})
        while True:
            lease.check()
            try:
                result = await self._page(ds.function_path, cursor, batch)
            except DeploymentError as exc:
                rule = _page_error(exc)
                if rule is not None and rule.category == "cursor" and cursor is not None \
                        and cursor_resets == 0:
                    # Pages are idempotent: restarting the step from the start is safe.
                    # The documents counted so far are counted again as the pages re-run.
                    cursor_resets += 1
                    self.ctx.event(CursorReset(self.user_id, ds.id, self.clean(str(exc))))
                    self.processed -= total - entry.processed
                    cursor, total = None, 0
                    store.journal_update(self.user_id, plan_id, str(step.id), cursor="",
                                         processed=0)
                    continue
                raise
            page += 1
            self.pages += 1
            processed = int(result.get("processed", 0))
            changed = int(result.get("changed", 0))
            total += processed
            self.processed += processed
            self.changed += changed
            done = bool(result.get("isDone"))
            next_cursor = result.get("continueCursor")
            store.journal_update(self.user_id, plan_id, str(step.id),
                                 cursor=next_cursor if isinstance(next_cursor, str) else None,
                                 processed=total)
            self.ctx.event(PageDone(self.user_id, ds.id, page, processed, changed,
                                    batch.size, total, done))
            old = batch.size
            if batch.success():
                self.ctx.event(BatchResized(self.user_id, ds.id, old, batch.size, "grow back"))
            if done:
                break
            if not isinstance(next_cursor, str) or next_cursor == cursor:
                raise FunctionError(
                    f"page did not advance the cursor (after {total} documents)",
                    deployment=self.user_id, function=ds.function_path)
            cursor = next_cursor
        await self.ops.mutation("byod:recordStep", {
            "stepId": ds.id, "version": step_version(plan, step), "status": "completed",
            "cursor": cursor, "processed": total})

    async def _page(self, function: str, cursor: str | None, batch: AdaptiveBatch) -> dict[str, Any]:
        """One page: the batch is halved on any Convex transaction limit (documents or
        bytes, read or written) and on a function or request timeout; the deployment's
        write-rate limit and transient server or network errors are retried after a
        backoff, a bounded number of times. An invalid cursor goes to the caller."""

        transient = 0
        while True:
            try:
                result = await self.ops.mutation(function, {"cursor": cursor,
                                                            "batchSize": batch.size})
            except DeploymentError as exc:
                rule = _page_error(exc)
                timed_out = isinstance(exc, DeploymentTimeout)
                if timed_out or (rule is not None and rule.category in ("limit", "timeout")):
                    old = batch.size
                    if batch.shrink():
                        reason = ("request timeout" if rule is None else
                                  f"{_SHRINK_REASON[rule.category]} ({rule.code})")
                        self.ctx.event(BatchResized(self.user_id, function.split(":")[-1],
                                                    old, batch.size, reason))
                        continue
                    raise
                retry = (rule is not None and rule.category == "rate") or (
                    rule is None and exc.kind in ("server", "network"))
                if retry and transient < self.ctx.page_retries:
                    transient += 1
                    await asyncio.sleep(_PAGE_RETRY.backoff(transient))
                    continue
                raise
            if not isinstance(result, dict):
                raise FunctionError(f"unexpected page result {type(result).__name__}",
                                    deployment=self.user_id, function=function)
            return result

    async def verify(self, target: Bundle) -> None:
        info = await self.ops.read_version()
        if (info.version, info.fingerprint, info.kind) != (
                target.version_id, target.fingerprint, "version"):
            raise DriftDetected(
                self.user_id, f"{target.version_id} fingerprint {target.fingerprint[:12]}",
                f"{info.version} ({info.kind}) fingerprint {str(info.fingerprint)[:12]}")
        for table in target.tables:
            page = await self.ops.query("byod:countPage",
                                        {"table": table, "cursor": None, "numItems": 100})
            if not isinstance(page, dict) or "count" not in page:
                raise FunctionError(f"table {table!r} is not readable",
                                    deployment=self.user_id, function="byod:countPage")


async def run_plan_async(
    plan: Plan | None,
    *,
    user_id: str,
    target: str,
    adapter: Any,
    ctx: RunContext,
    functions: Any | None = None,
    secrets: Sequence[str] = (),
) -> DeploymentOutcome:
    """Bring one deployment to ``target`` following ``plan`` (recomputed when the
    deployment is not where the plan starts). Never raises for a deployment problem:
    the outcome says what happened."""

    started = time.monotonic()
    store = ctx.store
    user = store.get_user(user_id)
    before = user.schema_version
    lease = DeploymentLease(ctx, user_id)
    try:
        lease.acquire()
    except LeaseHeld as exc:
        reason = f"being worked by another runner ({exc.holder})"
        ctx.event(DeploymentSkipped(user_id, reason))
        return DeploymentOutcome(user_id, "skipped", target, before=before, error=reason,
                                 error_type="LeaseHeld", error_kind="lease")
    run = _Run(ctx, user_id, DeployOps(adapter, functions, ctx.deploy_slots), secrets)
    plan_id: str | None = None
    source: str | None = None
    try:
        source, info, stale = await reconcile_deployment(ctx, run.ops, user_id, user)
        record_reconciled(ctx, user_id, before, source, info)
        plan = _plan_from(ctx.kit, plan, source, target, stale)
        plan_id = _journal_id(store, user_id, plan_id_of(plan))
        already = _already_there(ctx, user_id, info, source=source, target=target,
                                 before=before, plan_id=plan_id, started=started)
        if already is not None:
            return already
        await _execute(run, plan, plan_id, lease)
    except Exception as exc:  # noqa: BLE001 - one deployment never breaks the rollout
        return _failed(run, exc, user_id=user_id, target=target, before=before,
                       source=source, plan_id=plan_id, started=started,
                       refresh=plan is not None and is_refresh(plan))
    finally:
        lease.release()
    duration = time.monotonic() - started
    ctx.event(DeploymentDone(user_id, source or "", target, run.deploys, duration))
    return DeploymentOutcome(
        user_id, "succeeded", target, before=before, source=source, after=target,
        plan_id=plan_id, duration_s=duration, deploys=run.deploys, pages=run.pages,
        processed=run.processed, changed=run.changed, refresh=is_refresh(plan))


def _plan_from(kit: PlanKit, plan: Plan | None, source: str, target: str, stale: bool) -> Plan:
    """The plan to run from where the deployment really is: a refresh when it is stale at
    the target, the given plan when it still fits, else one computed anew."""

    if source == target and stale:
        return kit.refresh_plan(target)  # the same version, compiled anew
    if plan is None or plan.source != source or plan.target != target or is_refresh(plan):
        return kit.plan(source, target)
    return plan


def _already_there(ctx: RunContext, user_id: str, info: Any, *, source: str, target: str,
                   before: str | None, plan_id: str, started: float) -> DeploymentOutcome | None:
    """The ``already`` outcome when the deployment runs exactly the target bundle (its
    registry row and any plan that crashed after recording it are closed); else None."""

    target_bundle = ctx.kit.version_bundle(target)
    if source != target or (info.kind, info.version, info.fingerprint) != (
            "version", target, target_bundle.fingerprint):
        return None
    ctx.store.set_deployment(user_id, status="deployed", version=target,
                             fingerprint=target_bundle.fingerprint, progress=f"on {target}")
    _close_finished_plans(ctx.store, user_id, target)
    ctx.event(DeploymentDone(user_id, source, target, 0,
                             time.monotonic() - started, already=True))
    return DeploymentOutcome(user_id, "already", target, before=before, source=source,
                             after=target, plan_id=plan_id,
                             duration_s=time.monotonic() - started)


async def _execute(run: _Run, plan: Plan, plan_id: str, lease: DeploymentLease) -> None:
    ctx, user_id, store = run.ctx, run.user_id, run.ctx.store
    steps = list(plan.steps)
    if not steps:
        raise DriftDetected(
            user_id, f"{plan.target} deployed",
            "a bundle of an unfinished migration while its record says it is already on "
            f"{plan.target}; roll it forward to that migration's target first")
    entries = [JournalEntry(user_id=user_id, plan_id=plan_id, step_id=str(s.id), seq=i,
                            kind=step_kind(s), version=plan.target,
                            fingerprint=ctx.kit.step_fingerprint(plan, s))
               for i, s in enumerate(steps)]
    store.journal_plan(entries)
    _supersede_other_plans(store, user_id, plan_id)
    journal = {e.step_id: e for e in store.journal(user_id, plan_id)}
    ctx.event(DeploymentStarted(user_id, plan_id, plan.source, plan.target, len(steps)))
    store.set_deployment(user_id, status="deploying", progress=f"0/{len(steps)} started")
    for index, step in enumerate(steps, start=1):
        sid, kind = str(step.id), step_kind(step)
        entry = journal[sid]
        if entry.status in ("completed", "skipped"):
            ctx.event(StepSkipped(user_id, plan_id, sid, kind))
            continue
        lease.check()
        run.step_id, run.step_kind = sid, kind
        entry = store.journal_update(user_id, plan_id, sid, status="running",
                                     bump_attempts=True)
        store.set_deployment(user_id, progress=f"{index}/{len(steps)} {kind} {sid}")
        ctx.event(StepStarted(user_id, plan_id, sid, kind, entry.attempts))
        t0 = time.monotonic()
        if kind == "deploy_widened":
            await run.deploy(ctx.kit.step_bundle(plan, step))
        elif kind == "run_data_step":
            await run.data_step(plan, step, entry, lease, plan_id)
        elif kind == "deploy_target":
            await run.deploy(ctx.kit.step_bundle(plan, step))
        elif kind == "verify":
            await run.verify(ctx.kit.version_bundle(step_version(plan, step)))
        elif kind == "record":
            reached = ctx.kit.version_bundle(step_version(plan, step))
            await run.ops.mutation("byod:recordVersion", {
                "version": reached.version_id, "fingerprint": reached.fingerprint,
                "kind": "version", "planId": plan_id})
            final = reached.version_id == plan.target
            store.set_deployment(user_id, status="deployed" if final else "deploying",
                                 version=reached.version_id, fingerprint=reached.fingerprint,
                                 progress=f"on {reached.version_id}")
        else:
            raise RolloutError(f"plan {plan_id}: unknown step kind {kind!r} ({sid})")
        store.journal_update(user_id, plan_id, sid, status="completed")
        ctx.event(StepCompleted(user_id, plan_id, sid, kind, time.monotonic() - t0))
    run.step_id = None


_SUPERSEDED = "superseded by plan"


def _journal_id(store: RegistryStore, user_id: str, base: str) -> str:
    """The journal id for running plan ``base`` now. An unfinished journal under ``base``
    is resumed; a *finished* one belongs to an earlier run of the same plan (the
    deployment was replaced, or went down and up again), so this run gets a fresh
    generation instead of skipping every step as already done."""

    entries = store.journal(user_id)
    generation, candidate = 1, base
    while True:
        mine = [e for e in entries if e.plan_id == candidate]
        superseded = any((e.error or "").startswith(_SUPERSEDED) for e in mine)
        if not mine or (not superseded
                        and any(e.status not in ("completed", "skipped") for e in mine)):
            return candidate
        generation += 1
        candidate = f"{base}.{generation}"


def _close_finished_plans(store: RegistryStore, user_id: str, target: str) -> None:
    """The deployment verifiably recorded ``target`` (record is a plan's last step): a
    plan to it that crashed after that write but before its journal update is done."""

    for e in store.journal(user_id):
        if e.version != target:
            continue
        if e.status == "running":
            store.journal_update(user_id, e.plan_id, e.step_id, status="completed")
        elif e.status == "pending":
            store.journal_update(user_id, e.plan_id, e.step_id, status="skipped")


def _supersede_other_plans(store: RegistryStore, user_id: str, plan_id: str) -> None:
    """Unfinished steps of older plans for this deployment will never run: close them so
    the journal never shows two live plans for one deployment."""

    for e in store.journal(user_id):
        if e.plan_id == plan_id:
            continue
        if e.status == "pending":
            store.journal_update(user_id, e.plan_id, e.step_id, status="skipped")
        elif e.status == "running":
            store.journal_update(user_id, e.plan_id, e.step_id, status="failed",
                                 error=f"{_SUPERSEDED} {plan_id}")


def _failed(run: _Run, exc: BaseException, *, user_id: str, target: str, before: str | None,
            source: str | None, plan_id: str | None, started: float,
            refresh: bool = False) -> DeploymentOutcome:
    ctx, store = run.ctx, run.ctx.store
    error_type = type(exc).__name__
    kind = getattr(exc, "kind", None) or ("drift" if isinstance(exc, DriftDetected) else
                                          "version" if isinstance(exc, UnknownVersion) else
                                          "internal" if not isinstance(exc, ByodError) else
                                          "other")
    message = run.clean(str(exc) or error_type)
    step_id = run.step_id
    try:
        if plan_id is not None and step_id is not None:
            store.journal_update(user_id, plan_id, step_id, status="failed", error=message)
            ctx.event(StepFailed(user_id, plan_id, step_id, run.step_kind or "", error_type,
                                 message))
        store.set_deployment(user_id, status="failed",
                             progress=f"failed{' at ' + step_id if step_id else ''}: {message}"[:300])
        store.audit(user_id, "rollout_failed", {"error": error_type, "kind": kind,
                                                "step": step_id, "message": message})
    except ByodError:
        pass  # the registry itself failing must not hide the deployment's error
    duration = time.monotonic() - started
    ctx.event(DeploymentFailed(user_id, error_type, str(kind), message, duration, step_id))
    return DeploymentOutcome(
        user_id, "failed", target, before=before, source=source, after=None, plan_id=plan_id,
        duration_s=duration, deploys=run.deploys, pages=run.pages, processed=run.processed,
        changed=run.changed, error=message, error_type=error_type, error_kind=str(kind),
        step_id=step_id, refresh=refresh)


def run_plan(plan: Plan | None, *, user_id: str, target: str, adapter: Any,
             store: RegistryStore, kit: PlanKit, holder: str | None = None,
             emit: Sink = null_sink, functions: Any | None = None,
             secrets: Sequence[str] = (), lease_ttl_s: float = 120.0) -> DeploymentOutcome:
    """Synchronous entry point for one deployment (tests, scripts, connect flows)."""

    async def _main() -> DeploymentOutcome:
        ctx = RunContext(store=store, kit=kit, holder=holder or f"runner-{uuid.uuid4().hex[:8]}",
                         emit=emit, deploy_slots=asyncio.Semaphore(default_deploy_slots()),
                         lease_ttl_s=lease_ttl_s)
        return await run_plan_async(plan, user_id=user_id, target=target, adapter=adapter,
                                    ctx=ctx, functions=functions, secrets=secrets)

    return asyncio.run(_main())

