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
   mark running → do it → mark completed. A push is trusted when the push protocol
   answers success; that it took is checked by the next call, which names the bundle it
   expects (a data page's ``expect``, verify's identity), and only then is the deploy
   step completed — a crash in between pushes again. Consecutive data steps run through
   ``byodMigrations:runSteps``: one call is a page of the first unfinished step plus every
   following step that fits whole in the page budget, and the deployment journals each
   step it touched (``byodSteps``: cursor, documents, completed) in the same transaction
   as the documents, so its journal never says more or less than what happened. The
   registry's cursor is journaled after each call returns, so a crash at any instant
   resumes from the last journaled cursor. Pages are idempotent, so the one call that may
   run twice after a crash changes nothing the second time, and no page is ever skipped.
   A failed page is judged by Convex's own error codes and texts
   (``engine.convex.errors``): any transaction limit or a timeout halves the batch, the
   write-rate limit is waited out, and a cursor the deployment refuses restarts the step
   from the top, once per run. Verify is one ``byod:verify`` call (more only when the
   tables outgrow its read budget): the bundle's identity and every table counted.
4. **Outcome.** Success records the version on the deployment and in the registry; a
   failure leaves a redacted error in the journal and registry and a retryable state.

For a v1 → head rollout with data that is about ten round trips: one reconcile read,
three calls per push (its completion report runs beside the next steps), one call for
the data steps while they fit a page, one verify, one record.

What each step asks of the deployment lives in ``engine.fleet.run_steps``; this module
orders the steps and keeps the registry.

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

from engine.errors import (
    ByodError,
    DriftDetected,
    LeaseHeld,
    RolloutError,
    UnknownVersion,
)
from engine.events import (
    DeploymentDone,
    DeploymentFailed,
    DeploymentSkipped,
    DeploymentStarted,
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
    step_kind,
    step_version,
)
from engine.fleet.context import (
    DeploymentLease,
    DeploymentOutcome,
    DeployOps,
    OutcomeStatus,
    RunContext,
    default_deploy_slots,
)
from engine.fleet.run_reconcile import reconcile_deployment, record_reconciled
from engine.fleet.run_steps import DeploymentRun
from engine.plan.planner import Plan
from engine.ports.registry import JournalEntry, RegistryStore

__all__ = [
    "DeploymentOutcome",
    "OutcomeStatus",
    "RunContext",
    "default_deploy_slots",
    "run_plan",
    "run_plan_async",
]

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
    run = DeploymentRun(ctx, user_id, DeployOps(adapter, functions, ctx.deploy_slots), secrets)
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
        run.running = (info.version, info.fingerprint)
        await _execute(run, plan, plan_id, lease)
    except Exception as exc:  # noqa: BLE001 - one deployment never breaks the rollout
        return _failed(run, exc, user_id=user_id, target=target, before=before,
                       source=source, plan_id=plan_id, started=started,
                       refresh=plan is not None and is_refresh(plan))
    finally:
        await run.ops.settle()
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


async def _execute(run: DeploymentRun, plan: Plan, plan_id: str, lease: DeploymentLease) -> None:
    ctx, user_id, store = run.ctx, run.user_id, run.ctx.store
    run.plan_id = plan_id
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
    index = 0
    while index < len(steps):
        step = steps[index]
        index += 1
        sid, kind = str(step.id), step_kind(step)
        entry = journal[sid]
        if entry.status in ("completed", "skipped"):
            ctx.event(StepSkipped(user_id, plan_id, sid, kind))
            continue
        lease.check()
        if kind == "run_data_step":
            group = [step]
            while index < len(steps) and step_kind(steps[index]) == "run_data_step" \
                    and journal[str(steps[index].id)].status not in ("completed", "skipped"):
                group.append(steps[index])
                index += 1
            await run.data_steps(plan, group, journal, lease, plan_id,
                                 (index - len(group) + 1, len(steps)))
            continue
        if kind == "record" and run.unchecked is not None:
            await run.confirm()  # a plan always verifies first; never record unchecked
        run.step_id, run.step_kind = sid, kind
        entry = store.journal_update(user_id, plan_id, sid, status="running",
                                     bump_attempts=True)
        store.set_deployment(user_id, progress=f"{index}/{len(steps)} {kind} {sid}")
        ctx.event(StepStarted(user_id, plan_id, sid, kind, entry.attempts))
        t0 = time.monotonic()
        if kind in ("deploy_widened", "deploy_target"):
            await run.deploy(ctx.kit.step_bundle(plan, step), (sid, kind, t0))
            continue  # completed once a later call sees the bundle running
        if kind == "verify":
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
        run.step_id, run.step_kind = sid, kind
        store.journal_update(user_id, plan_id, sid, status="completed")
        ctx.event(StepCompleted(user_id, plan_id, sid, kind, time.monotonic() - t0))
    if run.unchecked is not None:
        await run.confirm()  # a plan that ends on a deploy: check it took
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


def _failed(run: DeploymentRun, exc: BaseException, *, user_id: str, target: str, before: str | None,
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

