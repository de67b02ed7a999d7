"""``byod worker``: one of any number of processes, on any number of machines, working the
rollouts saved open for workers (``byod rollout --for-workers``).

A worker decides nothing about the rollout: the registry does (``RolloutClaims``). It loops
claiming up to ``slots`` rows (its own local concurrency; the rollout's waves, global
concurrency and failure budget are honoured by the claim and finish transactions), runs
each claimed deployment exactly as a one-process rollout does (``run_deployment``: the
per-deployment lease and the journal, so a deployment taken over resumes where its last
worker stopped), and records each outcome only while it still holds the row.

Claims are kept alive by a heartbeat (every quarter of the rollout's ``lease_ttl_s``). A row
the heartbeat no longer holds — another worker took it over after the claim expired — or
every row, once no renewal succeeded for a whole ttl (the registry is unreachable), is
stopped at once: its task is cancelled, so it never races the worker that took it over (the
per-deployment lease fences the same at every step and page). A worker that took a row over
takes the deployment's lease back at once from the worker it took the claim over from
(``reclaim_from``, per deployment: only that holder, so a worker that stalled past its ttl
and wakes up mid-run cannot take the lease back in turn), and the journal makes the resumed
run skip every step already completed. Registry calls are synchronous: one that hangs (a
stalled database) holds the whole worker until it returns; the worker then finds each
deployment's lease expired or held by the worker that took the row over, and stops it at
its next step or page.

``stop()`` (SIGTERM, Ctrl-C): no new claims, in-flight deployments get ``grace_s`` to
finish, the rest are cancelled and their rows released (pending again, for any worker).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from engine.config import EngineConfig
from engine.errors import RolloutError
from engine.events import Sink, null_sink
from engine.fleet.artifacts import PlanKit
from engine.fleet.context import DeploymentOutcome, RunContext, default_deploy_slots
from engine.fleet.rollout import (
    capture_bundles,
    kit_for,
    plan_rollout,
    run_deployment,
    where_now,
)
from engine.fleet.rollout_state import DeploymentRow, load_state
from engine.ports.deployment import Connector
from engine.ports.registry import RegistryStore, RolloutClaims
from engine.schema.models import SchemaVersion
from engine.vault import Vault

__all__ = ["WorkerOptions", "WorkerReport", "Worker", "worker_name"]

Log = Callable[[str], None]


def worker_name() -> str:
    """This worker's name in claims and logs: host, process and a random tail."""

    return f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


@dataclass(frozen=True)
class WorkerOptions:
    """``rollout_id``: work that rollout only (else every rollout open for workers);
    ``slots``: deployments this worker runs at once; ``exit_when_idle``: exit once no
    rollout is open for workers (with ``rollout_id`` the worker always exits when that
    rollout ends); ``poll_s``: how often to look again while there is nothing to claim;
    ``grace_s``: how long in-flight deployments may finish after ``stop()``."""

    rollout_id: str | None = None
    slots: int = 4
    exit_when_idle: bool = False
    poll_s: float = 0.25
    grace_s: float = 10.0
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.slots, int) or self.slots < 1:
            raise RolloutError(f"slots must be a whole number of at least 1, not {self.slots!r}")
        if not self.poll_s > 0 or self.grace_s < 0:
            raise RolloutError("poll_s must be positive and grace_s not negative")


@dataclass
class WorkerReport:
    """What one worker did: the rollouts it worked, the deployments it took (and which it
    took over from another worker), their outcomes, the ones it lost, why it stopped."""

    worker: str
    rollouts: list[str] = field(default_factory=list)
    took: list[str] = field(default_factory=list)
    took_over: dict[str, str] = field(default_factory=dict)  # user → previous holder
    finished: dict[str, str] = field(default_factory=dict)  # user → outcome status
    lost: dict[str, str] = field(default_factory=dict)  # user → why it was stopped
    released: int = 0
    stopped: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"worker": self.worker, "rollouts": self.rollouts, "took": self.took,
                "took_over": self.took_over, "finished": self.finished, "lost": self.lost,
                "released": self.released, "stopped": self.stopped}


class Worker:
    """Claims and works rows of open worker rollouts until told to stop or none is left."""

    def __init__(self, *, store: RegistryStore, vault: Vault, config: EngineConfig,
                 versions: Iterable[SchemaVersion] | PlanKit,
                 connector_for: Callable[[str], Connector],
                 options: WorkerOptions | None = None, emit: Sink = null_sink,
                 log: Log = lambda _m: None):
        if not isinstance(store, RolloutClaims):
            raise RolloutError("this registry cannot host worker rollouts (no row claims)")
        self.store, self.claims = store, store
        self.vault, self.config = vault, config
        self.versions = versions if isinstance(versions, PlanKit) else list(versions)
        self.connector_for, self.emit, self.log = connector_for, emit, log
        self.options = options or WorkerOptions()
        self.name = self.options.name or worker_name()
        self.report = WorkerReport(self.name)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Stop claiming; in-flight deployments finish (within ``grace_s``) or are
        released."""

        self._stop.set()

    async def run(self) -> WorkerReport:
        wanted = self.options.rollout_id
        if wanted is not None and self.claims.rollout_status(wanted) is None:
            raise RolloutError(f"no rollout {wanted!r} in the registry; see "
                               "`byod rollout --list`")
        while not self._stop.is_set():
            if wanted:  # the listing below already holds open worker rollouts only
                open_ = [wanted] if self.claims.rollout_status(wanted) == "open" else []
            else:
                open_ = self.claims.open_worker_rollouts()
            if not open_:
                if wanted or self.options.exit_when_idle:
                    break
                await self._sleep(max(self.options.poll_s, 1.0))
                continue
            for rollout_id in open_:
                if self._stop.is_set():
                    break
                await _RolloutWork(self, rollout_id).run()
            if wanted:
                break
        self.report.stopped = "stopped" if self._stop.is_set() else "nothing left to work"
        return self.report

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass


class _RolloutWork:
    """One worker on one rollout: its plans, its claims, their heartbeat."""

    def __init__(self, worker: Worker, rollout_id: str):
        self.w, self.rollout_id = worker, rollout_id
        self.holder = f"{rollout_id}/{worker.name}"
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.rows: dict[str, DeploymentRow] = {}
        self.taken_from: dict[str, str | None] = {}  # user → the claim's previous holder
        self.lost: dict[str, str] = {}
        self.down = False  # the last registry call of the loop failed (said once)

    async def run(self) -> None:
        w, rid = self.w, self.rollout_id
        state = load_state(w.store, rid)
        if state.rollout_id not in w.report.rollouts:
            w.report.rollouts.append(state.rollout_id)
        kit = kit_for(w.versions, w.config, state.options)
        planned = plan_rollout(kit, state, *where_now(w.store, kit, state))
        connector = w.connector_for(state.options.deployer)
        if state.options.deployer == "push":
            await capture_bundles(kit, planned.to_capture, connector)
        self.ttl = state.options.lease_ttl_s
        self.ctx = RunContext(store=w.store, kit=kit, holder=self.holder, reclaim_from=None,
                              emit=w.emit, lease_ttl_s=self.ttl, deploy_slots=asyncio.Semaphore(
                                  state.options.deploy_slots or default_deploy_slots()))
        self.plans, self.state, self.connector = dict(planned.fleet.plans), state, connector
        w.log(f"worker {w.name}: working rollout {rid} to {state.target}")
        beat = asyncio.create_task(self._heartbeat())
        try:
            await self._loop()
        finally:
            beat.cancel()
            await self._shutdown()

    async def _loop(self) -> None:
        w = self.w
        while True:
            if not w._stop.is_set():
                self._claim()
            if not self.inflight:
                if w._stop.is_set() or self._status() != "open":
                    return
                await w._sleep(w.options.poll_s)
                continue
            stop = asyncio.create_task(w._stop.wait())
            await asyncio.wait([*self.inflight.values(), stop], timeout=w.options.poll_s,
                               return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if w._stop.is_set():
                await self._drain()
                return

    def _unreachable(self, doing: str, exc: Exception) -> None:
        """Say once that the registry cannot be reached (not at every poll while it
        stays so); ``_reachable`` says when it is back."""

        if not self.down:
            self.down = True
            self.w.log(f"worker {self.w.name}: cannot {doing} of {self.rollout_id}: "
                       f"{type(exc).__name__}; retrying while the registry is unreachable")

    def _reachable(self) -> None:
        if self.down:
            self.down = False
            self.w.log(f"worker {self.w.name}: the registry is reachable again")

    def _status(self) -> str | None:
        try:
            status = self.w.claims.rollout_status(self.rollout_id)
        except Exception as exc:  # noqa: BLE001 - an unreachable registry
            self._unreachable("read the status", exc)
            return "open"  # unknown: keep waiting (nothing is claimed meanwhile)
        self._reachable()
        return status

    def _claim(self) -> None:
        w = self.w
        free = w.options.slots - len(self.inflight)
        if free <= 0:
            return
        try:
            claims = w.claims.claim_rows(self.rollout_id, self.holder, limit=free,
                                         ttl_s=self.ttl)
        except Exception as exc:  # noqa: BLE001 - an unreachable registry: try again later
            self._unreachable("claim rows", exc)
            return
        self._reachable()
        for claim in claims:
            uid = claim.user_id
            self.rows[uid] = DeploymentRow.from_json({"user_id": uid, **claim.data})
            self.taken_from[uid] = claim.taken_from
            w.report.took.append(uid)
            if claim.taken_from:
                w.report.took_over[uid] = claim.taken_from
                w.log(f"worker {w.name}: took over {uid} from {claim.taken_from}")
            else:
                w.log(f"worker {w.name}: took {uid}")
            self.inflight[uid] = asyncio.create_task(self._one(uid))

    async def _one(self, user_id: str) -> None:
        w = self.w
        # The deployment's lease is taken back only from the worker this claim was taken
        # over from: never from a later one (a worker that stalled past its ttl and wakes
        # up mid-run must not take back what was taken over from it).
        ctx = replace(self.ctx, reclaim_from=self.taken_from.get(user_id))
        try:
            outcome = await run_deployment(ctx, user_id, target=self.state.target,
                                           plans=self.plans, vault=w.vault,
                                           connector=self.connector)
            self._finish(user_id, outcome)
        finally:
            self.inflight.pop(user_id, None)

    def _finish(self, user_id: str, outcome: DeploymentOutcome) -> None:
        w, row = self.w, self.rows[user_id]
        row.record(outcome)
        data = {**row.to_json(), "worker": w.name}
        try:
            result = w.claims.finish_claim(self.rollout_id, self.holder, user_id, row.status,
                                           data)
        except Exception as exc:  # noqa: BLE001 - the claim lapses; another worker redoes it
            w.report.lost[user_id] = f"outcome not recorded ({type(exc).__name__})"
            w.log(f"worker {w.name}: cannot record {user_id}: {type(exc).__name__}; its "
                  "claim lapses and another worker resumes it from its journal")
            return
        if not result.written:
            w.report.lost[user_id] = "claim lost before its outcome was recorded"
            w.log(f"worker {w.name}: {user_id} was taken over; its outcome is not recorded")
            return
        w.report.finished[user_id] = row.status
        w.log(f"worker {w.name}: finished {user_id}: {row.status}")
        if result.status == "halted" and result.halted_reason:
            w.log(f"worker {w.name}: rollout {self.rollout_id} halted: {result.halted_reason}")

    async def _heartbeat(self) -> None:
        """Renew the claims every quarter ttl; stop the deployments no longer held."""

        w = self.w
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(max(0.05, self.ttl / 4))
            held_before = list(self.inflight)
            if not held_before:
                last_ok = time.monotonic()
                continue
            try:
                held = w.claims.renew_claims(self.rollout_id, self.holder, held_before,
                                             ttl_s=self.ttl)
            except Exception as exc:  # noqa: BLE001 - the registry is unreachable
                if time.monotonic() - last_ok < self.ttl:
                    continue
                for uid in list(self.inflight):
                    self._lose(uid, f"claim not renewed for {self.ttl:g}s "
                                    f"({type(exc).__name__})")
                continue
            last_ok = time.monotonic()
            for uid in held_before:
                if uid not in held and uid in self.inflight:
                    self._lose(uid, "claim taken over by another worker")

    def _lose(self, user_id: str, why: str) -> None:
        task = self.inflight.get(user_id)
        if task is None or task.done():
            return
        task.cancel()
        self.w.report.lost[user_id] = why
        self.w.log(f"worker {self.w.name}: stopped {user_id}: {why}")

    async def _drain(self) -> None:
        """After ``stop()``: in-flight deployments get ``grace_s`` to finish."""

        tasks = list(self.inflight.values())
        if tasks:
            self.w.log(f"worker {self.w.name}: stopping; {len(tasks)} deployment(s) in "
                       f"flight get {self.w.options.grace_s:g}s to finish")
            await asyncio.wait(tasks, timeout=self.w.options.grace_s)

    async def _shutdown(self) -> None:
        """Cancel what still runs and give its rows back (pending, for any worker)."""

        tasks = list(self.inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            released = self.w.claims.release_claims(self.rollout_id, self.holder)
        except Exception:  # noqa: BLE001 - unreachable: the claims lapse on their own
            released = 0
        if released:
            self.w.report.released += released
            self.w.log(f"worker {self.w.name}: released {released} row(s) of "
                       f"{self.rollout_id}")

