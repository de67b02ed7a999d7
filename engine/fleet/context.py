"""The pieces one deployment's run holds: its outcome, the shared run context, the
deployment's calls as coroutines, the lease kept alive in the background, the adaptive
page size, and what this engine expects on a deployment (``KitExpectations``: the health
check's classification, fed from the run's own plan kit). Split from ``runner`` so the
step logic there reads on its own."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from engine.bundle.compiler import Bundle
from engine.errors import ByodError, LeaseHeld, RolloutError
from engine.events import Event, Sink, emit_safely, null_sink
from engine.fleet.artifacts import PlanKit
from engine.fleet.health_states import Expectations
from engine.ports.registry import RegistryStore

__all__ = [
    "AdaptiveBatch",
    "DeployOps",
    "DeploymentLease",
    "DeploymentOutcome",
    "KitExpectations",
    "OutcomeStatus",
    "RunContext",
    "default_deploy_slots",
]

OutcomeStatus = Literal["succeeded", "already", "failed", "skipped"]
GROW_AFTER = 4  # successful pages at a reduced size before growing it back


def default_deploy_slots() -> int:
    """CLI deploys are CPU-bound (node start-up and bundling): one per core."""

    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class DeploymentOutcome:
    """What happened to one deployment; the report's per-deployment row."""

    user_id: str
    status: OutcomeStatus
    target: str
    before: str | None = None  # the registry's version before the run
    source: str | None = None  # where the deployment really was
    after: str | None = None
    plan_id: str | None = None
    duration_s: float = 0.0
    deploys: int = 0
    pages: int = 0
    processed: int = 0
    changed: int = 0
    error: str | None = None  # redacted
    error_type: str | None = None
    error_kind: str | None = None
    step_id: str | None = None
    refresh: bool = False  # the run redeployed a stale bundle of the version it was on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunContext:
    """What every deployment of one rollout shares: the store, the planning kit (graph,
    bundles, planner), the deploy-slot semaphore, and the event sink."""

    store: RegistryStore
    kit: PlanKit
    holder: str
    emit: Sink = null_sink
    deploy_slots: asyncio.Semaphore | None = None
    lease_ttl_s: float = 120.0
    page_retries: int = 3
    # A rollout id: leases held by an earlier run of that rollout (holder ``<id>`` or
    # ``<id>/<run>``) are taken back at once instead of after they expire.
    reclaim_from: str | None = None

    def event(self, event: Event) -> None:
        emit_safely(self.emit, event)


class KitExpectations(Expectations):
    """``engine.fleet.health_states.Expectations`` answered from the run's plan kit: the same
    compiled fingerprints and widened bundles the runner deploys (and the kit's caches),
    so the runner and the health check never disagree on what is stale or drifted."""

    def __init__(self, kit: PlanKit, store: RegistryStore):
        super().__init__(kit.graph, kit.config, store)
        self.kit = kit

    def compiled(self, vid: str) -> str | None:
        if vid not in self.kit.graph:
            return None
        try:
            return self.kit.compiled_fingerprint(vid)
        except ByodError:
            return None

    def _plan_kit(self) -> Any:
        return self.kit


class DeployOps:
    """One deployment's calls as coroutines, whatever the adapter offers."""

    def __init__(self, adapter: Any, functions: Any | None, slots: asyncio.Semaphore | None):
        self.adapter = adapter
        self.functions = functions if functions is not None else adapter
        self.slots = slots

    @staticmethod
    async def _call(obj: Any, name: str, *args: Any) -> Any:
        fn = getattr(obj, name)
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def deploy(self, bundle: Bundle) -> Any:
        # only CPU-bound deploys (a CLI per deploy) take a slot; an adapter that pushes a
        # prepared request over HTTP says so with ``cpu_bound = False``
        if self.slots is None or not getattr(self.adapter, "cpu_bound", True):
            return await self._call(self.adapter, "deploy", bundle)
        async with self.slots:
            return await self._call(self.adapter, "deploy", bundle)

    async def query(self, path: str, args: dict[str, Any]) -> Any:
        return await self._call(self.functions, "query", path, args)

    async def mutation(self, path: str, args: dict[str, Any]) -> Any:
        return await self._call(self.functions, "mutation", path, args)

    async def read_version(self) -> Any:
        return await self._call(self.functions, "read_version")

    async def settle(self) -> None:
        """Let an adapter finish what it keeps off the critical path (a push adapter's
        completion reports) once the deployment's work is done; never raises."""

        settle = getattr(self.adapter, "settle_reports", None)
        if callable(settle):
            try:
                await self._call(self.adapter, "settle_reports")
            except Exception:  # noqa: BLE001 - fire and forget
                pass


class DeploymentLease:
    """The deployment lease, renewed in the background; ``lost`` stops the work.

    ``check`` also treats the lease as lost once its ttl has run out since the last
    successful renewal (a registry busy for longer than the ttl, or a renewal task that
    died): by then another runner may already hold it, so working on would race it."""

    def __init__(self, ctx: RunContext, user_id: str):
        self.ctx, self.user_id = ctx, user_id
        self.lost: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._valid_until = 0.0  # monotonic deadline of the lease as last taken or renewed

    def acquire(self) -> None:
        ctx, asked = self.ctx, time.monotonic()
        try:
            ctx.store.acquire_lease(self.user_id, ctx.holder, ctx.lease_ttl_s)
        except LeaseHeld as exc:
            if not self._reclaimable(exc.holder):
                raise
            # An earlier run of the same rollout (crashed, or still alive: its next renewal
            # fails and it stops at its next step or page) — never two runners at once.
            ctx.store.release_lease(self.user_id, exc.holder)
            ctx.store.acquire_lease(self.user_id, ctx.holder, ctx.lease_ttl_s)
            ctx.store.audit(self.user_id, "lease_taken_over",
                            {"from": exc.holder, "to": ctx.holder, "reclaimed": True})
        self._valid_until = asked + ctx.lease_ttl_s
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        interval = max(0.05, self.ctx.lease_ttl_s / 4)
        while True:
            await asyncio.sleep(interval)
            asked = time.monotonic()
            try:
                self.ctx.store.renew_lease(self.user_id, self.ctx.holder, self.ctx.lease_ttl_s)
            except LeaseHeld as exc:
                self.lost = f"lease lost to {exc.holder}"
                return
            except ByodError:
                continue  # a busy registry: try again next interval, the ttl covers it
            self._valid_until = asked + self.ctx.lease_ttl_s

    def _reclaimable(self, holder: str) -> bool:
        mine = self.ctx.reclaim_from
        return bool(mine) and holder != self.ctx.holder and (
            holder == mine or holder.startswith(f"{mine}/"))

    def check(self) -> None:
        if not self.lost and time.monotonic() >= self._valid_until:
            self.lost = "lease expired without a successful renewal"
        if self.lost:
            raise RolloutError(f"deployment {self.user_id}: {self.lost}; stopped safely")

    def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
        try:
            self.ctx.store.release_lease(self.user_id, self.ctx.holder)
        except ByodError:
            pass  # it expires on its own


class AdaptiveBatch:
    """Adaptive page size: halve on transaction-limit errors, grow back cautiously."""

    def __init__(self, start: int):
        self.ceiling = max(1, start)
        self.size = self.ceiling
        self._streak = 0

    def shrink(self) -> bool:
        if self.size <= 1:
            return False
        self.size = max(1, self.size // 2)
        self._streak = 0
        return True

    def success(self) -> bool:
        if self.size >= self.ceiling:
            return False
        self._streak += 1
        if self._streak < GROW_AFTER:
            return False
        self.size = min(self.ceiling, max(self.size + 1, int(self.size * 1.5)))
        self._streak = 0
        return True
