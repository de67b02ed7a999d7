"""One deployment's run, step by step: the push and the check that it took, the data steps
(``byodMigrations:runSteps``, journaled on the deployment in the page's own transaction, or
an earlier engine's widened bundle one mutation per step), the adaptive page, and verify.
``engine.fleet.runner`` orders the steps and keeps the registry; this module does what
each step asks of the deployment (split from it so each reads on its own)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Sequence

from engine.bundle.compiler import Bundle
from engine.convex.errors import ConvexErrorRule, classify_error
from engine.convex.retry import RetryPolicy
from engine.errors import (
    DeployFailed,
    DeploymentError,
    DeploymentTimeout,
    DriftDetected,
    FunctionError,
)
from engine.events import (
    BatchResized,
    CursorReset,
    PageDone,
    StepCompleted,
    StepStarted,
)
from engine.fleet.artifacts import step_data, step_kind, step_version
from engine.fleet.context import AdaptiveBatch, DeploymentLease, DeployOps, RunContext
from engine.plan.planner import Plan, PlanStep
from engine.ports.registry import JournalEntry
from engine.redact import redact

__all__ = ["RUN_STEPS", "VERIFY", "DeploymentRun"]

# transient server or network errors on a data page: the engine's one retry policy
_PAGE_RETRY = RetryPolicy(backoff_base=0.4, backoff_max=2.0)


_SHRINK_REASON = {"limit": "transaction limit", "timeout": "function timeout"}
RUN_STEPS = "byodMigrations:runSteps"
VERIFY = "byod:verify"
_VERIFY_MAX_CALLS = 10_000  # a bound, not a budget: each call reads up to 8,000 documents


def _missing(exc: DeploymentError, path: str) -> bool:
    """The deployment has no function ``path`` (Convex: "Could not find [public] function
    for '<path>'")."""

    return isinstance(exc, FunctionError) and bool(re.search(
        rf"Could not find (public )?function for '{re.escape(path)}", str(exc)))


def _page_error(exc: DeploymentError) -> ConvexErrorRule | None:
    """What a failed page ran into, by Convex's error table (``engine.convex.errors``)."""

    return classify_error(exc)


class DeploymentRun:
    """The state of one deployment's run (counters feed the outcome)."""

    def __init__(self, ctx: RunContext, user_id: str, ops: DeployOps, secrets: Sequence[str]):
        self.ctx, self.user_id, self.ops = ctx, user_id, ops
        self.secrets = tuple(secrets)
        self.deploys = self.pages = self.processed = self.changed = 0
        self.step_id: str | None = None
        self.step_kind: str | None = None
        self.step_started = time.monotonic()
        self.plan_id = ""
        self.unchecked: Bundle | None = None  # pushed by this run, not yet seen running
        self.pending: tuple[str, str, float] | None = None  # its deploy step (id, kind, t0)
        self.running: tuple[Any, Any] | None = None  # (version, fingerprint) seen running
        self.before_push: tuple[Any, Any] | None = None
        self.legacy = False  # the widened bundle has no runSteps (an earlier engine's)

    def clean(self, text: str) -> str:
        return redact(text, self.secrets)[:800]

    # -- steps ----------------------------------------------------------------------------
    async def deploy(self, bundle: Bundle, step: tuple[str, str, float]) -> None:
        """Push ``bundle``. The push protocol's own answers say it landed; that it took is
        checked by the next call, which names the bundle it expects (a data page's
        ``expect``, verify's identity) — no version read of its own. The step stays
        ``running`` in the journal until then, so a crash in between pushes again."""

        if self.unchecked is not None:
            await self.confirm()  # two deploys in a row: check the first before the next
        before = self.running
        await self.ops.deploy(bundle)
        self.deploys += 1
        self.unchecked, self.pending, self.before_push = bundle, step, before

    async def confirm(self) -> None:
        """Read the version: raise ``DeployFailed`` unless the deployment runs the bundle
        this run pushed last (only where no later call checks it)."""

        if self.unchecked is not None:
            self._check_landed(self.unchecked, await self.ops.read_version())

    def _check_landed(self, bundle: Bundle, info: Any) -> None:
        """The deploy step waiting on this answer completes, or fails with ``DeployFailed``."""

        if info.version != bundle.version_id or info.fingerprint != bundle.fingerprint:
            if self.pending is not None:
                self.step_id, self.step_kind = self.pending[0], self.pending[1]
            raise DeployFailed(
                f"after deploying {bundle.version_id} ({bundle.kind}) the deployment answers "
                f"{info.version} with fingerprint {str(info.fingerprint)[:12]}",
                deployment=self.user_id)
        self._landed()

    def _landed(self) -> None:
        """The bundle pushed last is running: its deploy step is complete."""

        bundle, self.unchecked = self.unchecked, None
        if bundle is not None:
            self.running = (bundle.version_id, bundle.fingerprint)
        if self.pending is not None:
            (sid, kind, t0), self.pending = self.pending, None
            self.ctx.store.journal_update(self.user_id, self.plan_id, sid, status="completed")
            self.ctx.event(StepCompleted(self.user_id, self.plan_id, sid, kind,
                                         time.monotonic() - t0))

    async def _after_deploy_failure(self, exc: DeploymentError) -> None:
        """A call failed right after a push: when the deployment does not run the pushed
        bundle, that is the error (``DeployFailed``), not the call's own."""

        if self.unchecked is None or not isinstance(exc, FunctionError):
            return
        try:
            info = await self.ops.read_version()
        except DeploymentError:
            return
        self._check_landed(self.unchecked, info)

    async def data_steps(self, plan: Plan, group: list[PlanStep], journal: dict[str, JournalEntry],
                         lease: DeploymentLease, plan_id: str, where: tuple[int, int]) -> None:
        """Run consecutive data steps through ``byodMigrations:runSteps``: each call is a
        page of the first unfinished step plus every following step that fits whole in
        the page budget, and the deployment journals each step it touched (cursor,
        documents, completed) in that same transaction. The registry's journal follows
        each answer; a crash between the two re-runs at most that one call, which
        changes nothing the second time (pages are idempotent), and skips no page."""

        ctx, store = self.ctx, self.ctx.store
        head = 0
        started: set[str] = set()
        while head < len(group):
            step = group[head]
            sid, ds = str(step.id), step_data(step)
            entry = journal[sid]
            if sid not in started:
                entry = self._start_step(plan_id, step, where[0] + head, where[1])
                started.add(sid)
            if self.legacy:
                await self._legacy_step(plan, step, entry, lease, plan_id)
                self._complete_step(plan_id, step)
                head += 1
                continue
            batch = AdaptiveBatch(ctx.kit.batch_size(plan, ds))
            cursor: str | None = entry.cursor or None  # "" = from the start (after a reset)
            base = total = entry.processed
            page = 0
            cursor_resets = 0
            while True:
                lease.check()
                # the steps after it that have not begun (one that has resumes as a head)
                follow = list(group[head + 1:])
                follow = follow[:next((i for i, s in enumerate(follow)
                                       if journal[str(s.id)].cursor
                                       or journal[str(s.id)].processed), len(follow))]
                args: dict[str, Any] = {
                    "steps": [self._step_arg(plan, step, total)] + [
                        self._step_arg(plan, s, 0, limit=ctx.kit.batch_size(plan, step_data(s)))
                        for s in follow],
                    "cursor": cursor, "batchSize": batch.size}
                if self.unchecked is not None:
                    args["expect"] = {"version": self.unchecked.version_id,
                                      "fingerprint": self.unchecked.fingerprint}
                try:
                    answer = await self._page(RUN_STEPS, args, batch)
                except DeploymentError as exc:
                    await self._after_deploy_failure(exc)
                    if self.unchecked is None and _missing(exc, RUN_STEPS):
                        # a widened bundle an earlier engine pushed (a rollout resumed
                        # across an upgrade): its steps, one mutation each, as then
                        self.legacy = True
                        break
                    rule = _page_error(exc)
                    if rule is not None and rule.category == "cursor" and cursor is not None \
                            and cursor_resets == 0:
                        # Pages are idempotent: restarting the step from the start is safe.
                        # The documents counted so far are counted again as the pages re-run.
                        cursor_resets += 1
                        ctx.event(CursorReset(self.user_id, ds.id, self.clean(str(exc))))
                        self.processed -= total - base
                        cursor, total = None, 0
                        base = 0
                        store.journal_update(self.user_id, plan_id, sid, cursor="", processed=0)
                        continue
                    raise
                self._landed()  # the page ran on the bundle it expected
                results = self._results(answer, [step, *follow])
                page += 1
                first = results[0]
                done = self._journal_page(plan_id, step, first, page, batch)
                total = int(first.get("total", total))
                if not done:
                    next_cursor = first.get("continueCursor")
                    if not isinstance(next_cursor, str) or next_cursor == cursor:
                        raise FunctionError(
                            f"page did not advance the cursor (after {total} documents)",
                            deployment=self.user_id, function=ds.function_path)
                    cursor = next_cursor
                    continue
                self._complete_step(plan_id, step)
                for other, result in zip(follow, results[1:]):
                    self._start_step(plan_id, other, where[0] + group.index(other), where[1])
                    started.add(str(other.id))
                    self._journal_page(plan_id, other, result, 1, batch)
                    self._complete_step(plan_id, other)
                head += len(results)
                break

    async def _legacy_step(self, plan: Plan, step: PlanStep, entry: JournalEntry,
                           lease: DeploymentLease, plan_id: str) -> None:
        """One data step on a widened bundle without ``runSteps``: its own mutation page
        by page, the deployment's journal written by ``byod:recordStep`` around them."""

        ds, store = step_data(step), self.ctx.store
        batch = AdaptiveBatch(self.ctx.kit.batch_size(plan, ds))
        cursor: str | None = entry.cursor or None
        total = entry.processed
        page = cursor_resets = 0
        record = {"stepId": ds.id, "version": step_version(plan, step)}
        await self.ops.mutation("byod:recordStep", {**record, "status": "running",
                                                    "cursor": cursor, "processed": total})
        while True:
            lease.check()
            try:
                result = await self._page(ds.function_path, {"cursor": cursor}, batch)
            except DeploymentError as exc:
                rule = _page_error(exc)
                if rule is not None and rule.category == "cursor" and cursor is not None \
                        and cursor_resets == 0:
                    cursor_resets += 1
                    self.ctx.event(CursorReset(self.user_id, ds.id, self.clean(str(exc))))
                    self.processed -= total - entry.processed
                    cursor, total = None, 0
                    store.journal_update(self.user_id, plan_id, str(step.id), cursor="",
                                         processed=0)
                    continue
                raise
            page += 1
            total += int(result.get("processed", 0))
            done = self._journal_page(plan_id, step, {**result, "total": total}, page, batch)
            if done:
                break
            next_cursor = result.get("continueCursor")
            if not isinstance(next_cursor, str) or next_cursor == cursor:
                raise FunctionError(f"page did not advance the cursor (after {total} documents)",
                                    deployment=self.user_id, function=ds.function_path)
            cursor = next_cursor
        await self.ops.mutation("byod:recordStep", {**record, "status": "completed",
                                                    "cursor": cursor, "processed": total})

    def _step_arg(self, plan: Plan, step: PlanStep, processed: int,
                  limit: int = 0) -> dict[str, Any]:
        return {"stepId": step_data(step).id, "version": step_version(plan, step),
                "processed": processed, "limit": limit}

    def _results(self, answer: Any, steps: list[PlanStep]) -> list[dict[str, Any]]:
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or not 1 <= len(results) <= len(steps) or not all(
                isinstance(r, dict) and r.get("stepId") == step_data(s).id
                and (r.get("isDone") or i == len(results) - 1)
                for i, (r, s) in enumerate(zip(results, steps))):
            raise FunctionError("unexpected runSteps answer", deployment=self.user_id,
                                function=RUN_STEPS)
        return results

    def _start_step(self, plan_id: str, step: PlanStep, index: int, count: int) -> JournalEntry:
        ctx, sid, kind = self.ctx, str(step.id), step_kind(step)
        self.step_id, self.step_kind = sid, kind
        entry = ctx.store.journal_update(self.user_id, plan_id, sid, status="running",
                                         bump_attempts=True)
        ctx.store.set_deployment(self.user_id, progress=f"{index}/{count} {kind} {sid}")
        ctx.event(StepStarted(self.user_id, plan_id, sid, kind, entry.attempts))
        self.step_started = time.monotonic()
        return entry

    def _journal_page(self, plan_id: str, step: PlanStep, result: dict[str, Any], page: int,
                      batch: AdaptiveBatch) -> bool:
        """The registry's journal and the events after one answered page of ``step``."""

        ds = step_data(step)
        self.pages += 1  # a page of one step (one call may carry several)
        processed = int(result.get("processed", 0))
        changed = int(result.get("changed", 0))
        total = int(result.get("total", 0))
        self.processed += processed
        self.changed += changed
        done = bool(result.get("isDone"))
        next_cursor = result.get("continueCursor")
        self.ctx.store.journal_update(
            self.user_id, plan_id, str(step.id),
            cursor=next_cursor if isinstance(next_cursor, str) and not done else None,
            processed=total)
        self.ctx.event(PageDone(self.user_id, ds.id, page, processed, changed, batch.size,
                                total, done))
        old = batch.size
        if batch.success():
            self.ctx.event(BatchResized(self.user_id, ds.id, old, batch.size, "grow back"))
        return done

    def _complete_step(self, plan_id: str, step: PlanStep) -> None:
        sid, kind = str(step.id), step_kind(step)
        self.ctx.store.journal_update(self.user_id, plan_id, sid, status="completed")
        self.ctx.event(StepCompleted(self.user_id, plan_id, sid, kind,
                                     time.monotonic() - self.step_started))

    async def _page(self, function: str, args: dict[str, Any],
                    batch: AdaptiveBatch) -> dict[str, Any]:
        """One page: the batch is halved on any Convex transaction limit (documents or
        bytes, read or written) and on a function or request timeout; the deployment's
        write-rate limit and transient server or network errors are retried after a
        backoff, a bounded number of times. An invalid cursor goes to the caller."""

        transient = 0
        while True:
            try:
                result = await self.ops.mutation(function, {**args, "batchSize": batch.size})
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
        """One ``byod:verify`` call (more only for tables larger than its read budget):
        the bundle's identity, and every table of the target counted, so readable."""

        counts: dict[str, int] = {}
        resume: dict[str, Any] | None = None
        for call in range(_VERIFY_MAX_CALLS):
            try:
                answer = await self.ops.query(VERIFY, {} if resume is None else {"from": resume})
            except DeploymentError as exc:
                if isinstance(exc, FunctionError) and call == 0:
                    # no verify function: the deployment does not run a bundle of ours
                    self._check_identity(target, await self.ops.read_version())
                raise
            if not isinstance(answer, dict) or not isinstance(answer.get("counts"), dict):
                raise FunctionError("unexpected verify answer", deployment=self.user_id,
                                    function=VERIFY)
            if call == 0:
                self._check_identity(target, _Identity(answer))
            for table, n in answer["counts"].items():
                if not isinstance(n, (int, float)) or isinstance(n, bool) or n < 0:
                    raise FunctionError(f"table {table!r} is not readable",
                                        deployment=self.user_id, function=VERIFY)
                counts[table] = counts.get(table, 0) + int(n)  # numbers arrive as float64
            nxt = answer.get("next")
            if nxt is None:
                break
            if not isinstance(nxt, dict) or nxt == resume:
                raise FunctionError("verify did not advance", deployment=self.user_id,
                                    function=VERIFY)
            resume = {"table": nxt.get("table"), "cursor": nxt.get("cursor")}
        else:
            raise FunctionError(f"verify did not finish in {_VERIFY_MAX_CALLS} calls",
                                deployment=self.user_id, function=VERIFY)
        missing = [t for t in target.tables if t not in counts]
        if missing:
            raise FunctionError(f"table {missing[0]!r} is not readable",
                                deployment=self.user_id, function=VERIFY)

    def _check_identity(self, target: Bundle, info: Any) -> None:
        """Verify's identity check: the target, exactly. Right after this run pushed it,
        an answer that is still what ran before the push means the push did not take
        (``DeployFailed``); anything else is drift."""

        if (info.version, info.fingerprint, info.kind) == (
                target.version_id, target.fingerprint, "version"):
            if self.unchecked is not None:
                self._check_landed(self.unchecked, info)
            return
        if self.unchecked is not None and (info.version, info.fingerprint) == self.before_push:
            self._check_landed(self.unchecked, info)
        if (info.version, info.fingerprint, info.kind) != (
                target.version_id, target.fingerprint, "version"):
            raise DriftDetected(
                self.user_id, f"{target.version_id} fingerprint {target.fingerprint[:12]}",
                f"{info.version} ({info.kind}) fingerprint {str(info.fingerprint)[:12]}")


class _Identity:
    """The identity fields of a ``byod:verify`` answer, shaped like a ``VersionInfo``."""

    def __init__(self, answer: dict[str, Any]):
        self.version = answer.get("version")
        self.fingerprint = answer.get("fingerprint")
        self.kind = answer.get("kind")
