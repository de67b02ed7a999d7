"""Fleet rollout: bring every connected deployment to a target version, safely.

* **Selection.** Connected deployments whose registry row is not already deployed at the
  target, grouped by source version through ``plan_fleet`` (each source planned once);
  plus *stale* ones at the target: their recorded fingerprint is not what the target
  compiles to now (a ``byod.toml`` change such as ``auth`` or ``convex_version``). Those
  get a one-deploy *refresh* plan (deploy → verify → record, ``PlanKit.refresh_plan``);
  rows and reports mark them ``action: refresh``. Down paths that delete data are refused
  by the planner unless ``allow_destructive`` (``--allow-destructive``). ``only`` narrows
  the selection to the named users, ``exclude`` leaves the named ones out (``--only``,
  ``--exclude``, ``--from-file``); a name the registry does not know is refused before
  anything runs, and each named user gets an audit row (``rollout_selected`` or
  ``rollout_excluded``) when the rollout starts. Both are saved, so a resume keeps them.
* **Waves.** A canary (one deployment per source version first, up to ``canary``), then
  cumulative waves (``10%`` = until a tenth of the fleet has been worked; a bare number is
  a count). Within a wave up to ``concurrency`` deployments run at once; each is isolated
  (its failure is its outcome, never an exception that stops the others).
* **Failure budget.** ``max_failures`` (a count or a percentage of the fleet) failures are
  tolerated; one more halts the rollout: deployments in flight finish, nothing new starts,
  the rest stay untouched and the rollout can be resumed by id. Any canary failure halts.
* **Deployments.** Every deployer and functions client comes from the ``Connector``
  (``async_deployer``). With the ``push`` deployer each distinct bundle of the plans is
  captured once, up front, into the connector's payload cache (``payloads()``; a connector
  without one captures nothing); ``cli`` runs the Convex CLI per deploy.
* **Locks.** A run holds the rollout's own lease, ``rollout:<id>`` (short TTL, renewed in
  the background): ``resume=ID`` is refused (``RolloutRunning``, exit 3, naming the holder
  process) while another run of that rollout is alive, and goes ahead at once when that
  run's process is provably dead on this host. A run checks the lease before every save of
  the rollout's state and stops without saving once it lost it (the lease was broken and
  another run took over), so the saved record is always the live run's. The runner also
  takes a registry lease per deployment, held as ``<rollout id>/<run>``: a second rollout
  skips (and reports) deployments another one is working, and a resumed rollout takes back
  its own leases at once instead of waiting for them to expire.
* **Crash safety.** The rollout's state (``RolloutState``: options, targets, waves,
  per-deployment outcome) is saved as it goes: the whole record once when the rollout is
  created, then one deployment's row as each outcome comes in (a row and a summary count,
  never the whole record: the cost per deployment does not grow with the fleet) and the
  header when a run starts and ends. ``resume=ID`` reloads it and runs whatever did not
  succeed with exactly the options it was started with, each deployment continuing from
  its own journal.
* **Dry run.** Plans and reports from the registry alone: no deployment is contacted and
  nothing is written anywhere.
* **Workers.** ``for_workers`` saves the planned rollout open for ``byod worker`` processes
  (``mode: workers``, status ``open``) and returns without working it; the workers claim
  its rows through the registry (``engine.fleet.workers``) and run each with
  ``run_deployment``, exactly as here. A one-process resume of a rollout still open for
  workers is refused.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from engine.config import EngineConfig
from engine.errors import (
    ByodError,
    LeaseHeld,
    RegistryError,
    RolloutError,
    close_matches,
)
from engine.events import (
    BudgetExhausted,
    RolloutFinished,
    RolloutStarted,
    Sink,
    WaveFinished,
    WaveStarted,
    emit_safely,
    null_sink,
)
from engine.fleet.artifacts import PlanKit, step_kind
from engine.fleet.rollout_state import (
    WORKERS_MODE,
    DeploymentRow,
    RolloutOptions,
    RolloutReport,
    RolloutState,
    Wave,
    load_state,
)
from engine.fleet.runner import (
    DeploymentOutcome,
    RunContext,
    default_deploy_slots,
    run_plan_async,
)
from engine.fleet.waves import parse_budget, parse_waves, plan_waves
from engine.plan.planner import Plan
from engine.ports.deployment import Connector, aclose_quietly
from engine.ports.registry import AuditLog, RegistryStore, RolloutStore, UserConfig
from engine.redact import redact
from engine.registry.heartbeat import LeaseHeartbeat
from engine.schema.models import SchemaVersion
from engine.vault import Vault

if TYPE_CHECKING:
    from engine.plan.planner import FleetPlan

__all__ = [
    "DeploymentRow",
    "PlannedRollout",
    "RolloutOptions",
    "RolloutRunning",
    "RolloutReport",
    "RolloutState",
    "capture_bundles",
    "kit_for",
    "load_state",
    "parse_budget",
    "parse_waves",
    "plan_rollout",
    "plan_waves",
    "rollout",
    "rollout_async",
    "run_deployment",
    "summarize_rollouts",
    "where_now",
]


class RolloutRunning(LeaseHeld):
    """(exit 3) Another run of this rollout is alive and holds its lease."""

    def __init__(self, rollout_id: str, lease: LeaseHeld, pid: int | None, host: str | None):
        super().__init__(lease.deployment, lease.holder, lease.expires_at)
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(lease.expires_at))
        where = f" (process {pid} on {host})" if pid is not None else ""
        self.args = (f"rollout {rollout_id} is still running: its lease is held by "
                     f"{lease.holder}{where} until {until}, renewed while it runs. Wait for it "
                     f"to finish; if that process is gone for good (another host), end its "
                     f"lease with `byod leases break {lease.deployment} --yes` and resume",)


def rollout_lease_key(rollout_id: str) -> str:
    """The key of a rollout's own lease in the registry's lease table."""

    return f"rollout:{rollout_id}"


@dataclass
class PlannedRollout:
    """A rollout about to run (or dry-run): its state, the kit, the fleet's plans, the
    registry's versions before the run, and which deployments only need a refresh."""

    state: RolloutState
    kit: PlanKit
    before: dict[str, str | None]
    refresh: set[str]
    fleet: "FleetPlan"
    refresh_plan: Plan | None = None

    @property
    def to_capture(self) -> list[Any]:
        return [*self.fleet.plans.values(), *([self.refresh_plan] if self.refresh_plan else [])]


def _deploy_bundles(kit: PlanKit, plans: Iterable[Any]) -> list[Any]:
    bundles = []
    for plan in plans:
        for step in plan.steps:
            if step_kind(step) in ("deploy_widened", "deploy_target"):
                bundles.append(kit.step_bundle(plan, step))
    return bundles


async def capture_bundles(kit: PlanKit, plans: Iterable[Any], connector: Connector) -> None:
    """Capture each distinct bundle of the plans once, here in the parent, into the
    connector's payload cache (the CPU bounded by the cache's capture slots); the
    deployments then only push over HTTP. A connector without a cache captures nothing."""

    payloads = getattr(connector, "payloads", None)
    cache = payloads() if callable(payloads) else None
    prepare = getattr(cache, "prepare", None)  # a plain mapping is already captured
    if prepare is None:
        return
    await asyncio.to_thread(prepare, _deploy_bundles(kit, plans), strict=False)


def _graph_summary(kit: PlanKit, before: dict[str, str | None],
                   after: dict[str, str | None]) -> dict[str, Any]:
    graph = kit.graph
    nodes = []
    for vid in graph.topological_order():
        nodes.append({"id": vid, "number": graph.get(vid).number,
                      "parents": list(graph.parents(vid)),
                      "before": sum(1 for v in before.values() if v == vid),
                      "after": sum(1 for v in after.values() if v == vid)})
    return {"nodes": nodes, "heads": list(graph.heads())}


class _Rollout:
    """One run of a rollout: works its waves and saves each deployment's row of its
    ``RolloutState`` as the outcome comes in."""

    def __init__(self, *, store: RegistryStore, vault: Vault, kit: PlanKit, emit: Sink,
                 connector: Connector, state: RolloutState):
        self.store, self.vault, self.kit, self.emit = store, vault, kit, emit
        self.connector, self.state = connector, state
        self.deploy_slots = state.options.deploy_slots or default_deploy_slots()
        self.failures = 0
        self.halted: str | None = None
        # One holder per run of the rollout: its own lease and its deployments' leases.
        self.holder = f"{state.rollout_id}/{uuid.uuid4().hex[:8]}"
        self.lease = LeaseHeartbeat(store, rollout_lease_key(state.rollout_id), self.holder)
        self.fenced: LeaseHeld | None = None

    def take_lease(self) -> None:
        """The rollout's lease, or ``RolloutRunning`` while another run of it is alive."""

        try:
            self.lease.acquire()
        except LeaseHeld as exc:
            current = getattr(self.store, "current_lease", None)
            held = current(exc.deployment) if callable(current) else None
            raise RolloutRunning(self.state.rollout_id, exc,
                                 getattr(held, "pid", None), getattr(held, "host", None)) from None

    def event(self, event: Any) -> None:
        emit_safely(self.emit, event)

    def _still_ours(self) -> bool:
        """Whether this run still holds the rollout's lease. Once it lost it another run
        owns the record: this one stops (nothing new starts) and writes nothing more."""

        if self.fenced is None:
            try:
                self.lease.check()
            except LeaseHeld as exc:
                self.fenced = exc
        if self.fenced is not None:
            self.halted = f"the rollout's lease was lost to {self.fenced.holder}"
            return False
        return True

    def save(self, *, whole: bool = False) -> None:
        """Save the header (status, options, resume count), or with ``whole`` the whole
        record (a new rollout: its header and every row, once); not once the lease is
        lost."""

        if not self._still_ours():
            return
        self.state.updated_at = time.time()
        if whole:
            self.store.save_rollout(self.state.rollout_id, self.state.to_json())
        else:
            self.store.save_rollout_header(self.state.rollout_id, self.state.header_json())

    def save_row(self, user_id: str) -> None:
        """Save one deployment's row (and its summary count): the same cost whatever the
        rollout's size; not once the lease is lost."""

        if not self._still_ours():
            return
        row = self.state.deployments[user_id]
        self.store.save_deployment_row(self.state.rollout_id, user_id, row.status,
                                       row.to_json())

    async def run(self, plans: dict[str, Any]) -> None:
        state = self.state
        # One holder per run of the rollout: a resumed run that overlaps a still-running
        # one takes its leases over (the older run then stops) instead of sharing them.
        ctx = RunContext(store=self.store, kit=self.kit, holder=self.holder,
                         reclaim_from=state.rollout_id, emit=self.emit,
                         deploy_slots=asyncio.Semaphore(self.deploy_slots),
                         lease_ttl_s=state.options.lease_ttl_s)
        for index, wave in enumerate(state.waves):
            todo = [u for u in wave.deployments if not state.deployments[u].done]
            if not todo:
                continue
            if self.halted:
                break
            self.event(WaveStarted(state.rollout_id, wave.name, index, tuple(todo)))
            gate = asyncio.Semaphore(state.options.concurrency)
            results: list[DeploymentOutcome] = []
            await asyncio.gather(*(self._one(ctx, gate, wave, u, plans, results)
                                   for u in todo))
            counts = {s: sum(1 for r in results if r.status == s)
                      for s in ("succeeded", "already", "failed", "skipped")}
            self.event(WaveFinished(state.rollout_id, wave.name, index,
                                    counts["succeeded"] + counts["already"], counts["failed"],
                                    counts["skipped"]))
        if self.halted:
            untouched = sum(1 for r in state.deployments.values() if r.status == "pending")
            self.event(BudgetExhausted(state.rollout_id, self.failures, state.max_failures,
                                       untouched))

    async def _one(self, ctx: RunContext, gate: asyncio.Semaphore, wave: Wave, user_id: str,
                   plans: dict[str, Any], results: list[DeploymentOutcome]) -> None:
        async with gate:
            if self.halted:
                return
            outcome = await self._deployment(ctx, user_id, plans)
            results.append(outcome)
            self.state.deployments[user_id].record(outcome)
            if outcome.status == "failed":
                self.failures += 1
                budget = self.state.max_failures
                if wave.name == "canary":
                    self.halted = f"canary {user_id} failed"
                elif self.failures > budget:
                    self.halted = f"{self.failures} failures exceed the budget of {budget}"
            self.save_row(user_id)

    async def _deployment(self, ctx: RunContext, user_id: str,
                          plans: dict[str, Any]) -> DeploymentOutcome:
        return await run_deployment(ctx, user_id, target=self.state.target, plans=plans,
                                    vault=self.vault, connector=self.connector)


async def run_deployment(ctx: RunContext, user_id: str, *, target: str, plans: dict[str, Any],
                         vault: Vault, connector: Connector) -> DeploymentOutcome:
    """One deployment of a rollout, isolated: its credentials from the vault, its deployer
    from the connector, its plan by the version it is on; any failure is its outcome.
    Shared by the one-process rollout and by ``byod worker`` (``engine.fleet.workers``)."""

    secrets: tuple[str, ...] = ()
    started = time.monotonic()
    adapter = functions = None
    try:
        user = ctx.store.get_user(user_id)
        dep_target = vault.target_for(user)
        secrets = tuple(dep_target.secrets)
        adapter, functions = connector.async_deployer(dep_target)
        plan = plans.get(user.schema_version or "")
        return await run_plan_async(plan, user_id=user_id, target=target,
                                    adapter=adapter, ctx=ctx, functions=functions,
                                    secrets=secrets)
    except Exception as exc:  # noqa: BLE001 - isolation: credentials, adapters, ...
        message = redact(str(exc) or type(exc).__name__, secrets)[:800]
        return DeploymentOutcome(
            user_id, "failed", target, duration_s=time.monotonic() - started,
            error=message, error_type=type(exc).__name__,
            error_kind=getattr(exc, "kind", None) or (
                "other" if isinstance(exc, ByodError) else "internal"))
    finally:
        # the adapter first: it waits for its push completion reports, which may still
        # be using the shared client
        await aclose_quietly(adapter)
        await aclose_quietly(functions)


def _stale_at(user: UserConfig | None, target: str, fresh: str) -> bool:
    """Recorded at ``target`` with a fingerprint ``target`` no longer compiles to."""

    return (user is not None and user.schema_version == target
            and bool(user.schema_fingerprint) and user.schema_fingerprint != fresh)


def _check_named(store: RegistryStore, options: RolloutOptions) -> None:
    """Every user named by ``only`` / ``exclude`` is registered; ``RolloutError`` naming
    the unknown ones (with the nearest registered ids) otherwise."""

    named = [*options.only, *options.exclude]
    if not named:
        return
    known = sorted(u.user_id for u in store.list_users())
    registered = set(known)
    unknown = [u for u in named if u not in registered]
    if not unknown:
        return
    parts = []
    for uid in unknown:
        close = close_matches(uid, known)
        parts.append(f"{uid!r}" + (f" (did you mean {', '.join(map(repr, close))}?)"
                                   if close else ""))
    which = "only" if options.only else "exclude"
    raise RolloutError(f"unknown user id{'s' if len(unknown) > 1 else ''} in {which}: "
                       f"{', '.join(parts)}; `byod status` lists the registered users")


def _select(store: RegistryStore, target: str, fresh: str,
            options: RolloutOptions | None = None) -> tuple[list[UserConfig], set[str]]:
    """Connected users to work (only those ``options.only`` names, none that
    ``options.exclude`` names), and which of them only need a refresh."""

    only = set(options.only) if options is not None else set()
    exclude = set(options.exclude) if options is not None else set()
    chosen: list[UserConfig] = []
    refresh: set[str] = set()
    for u in store.list_users(connection_status=["connected"]):
        if (only and u.user_id not in only) or u.user_id in exclude:
            continue
        if _stale_at(u, target, fresh):
            refresh.add(u.user_id)
            chosen.append(u)
        elif not (u.schema_version == target and u.deployment_status == "deployed"):
            chosen.append(u)
    return sorted(chosen, key=lambda u: u.user_id), refresh


def _action(user_id: str, refresh: set[str]) -> str:
    return "refresh" if user_id in refresh else "migrate"


def _start(store: RegistryStore, kit: PlanKit, target_ref: str | int | None,
           options: RolloutOptions, started: float
           ) -> tuple[RolloutState, dict[str, str | None], set[str]]:
    """A new rollout: select the deployments, order them (the canary takes one of each
    source version first, the most common first) and cut the waves."""

    _check_named(store, options)
    target = kit.resolve(target_ref if target_ref is not None else "head")
    selected, refresh = _select(store, target, kit.compiled_fingerprint(target), options)
    before = {u.user_id: u.schema_version for u in selected}
    by_source: dict[str | None, list[str]] = {}
    for uid, v in before.items():
        by_source.setdefault(v, []).append(uid)
    canary_first = [members[0] for _, members in sorted(
        by_source.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))]
    order = sorted(before)
    waves = plan_waves(order, canary=options.canary, waves=options.waves,
                       canary_first=canary_first)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    state = RolloutState(
        rollout_id=f"r-{stamp}-{uuid.uuid4().hex[:6]}", target=target, options=options,
        max_failures=parse_budget(options.max_failures, len(order)),
        waves=[Wave(name, members) for name, members in waves],
        deployments={u: DeploymentRow(u, name, before[u], action=_action(u, refresh))
                     for name, members in waves for u in members},
        created_at=started)
    return state, before, refresh


def _resume(store: RegistryStore, kit: PlanKit, state: RolloutState
            ) -> tuple[dict[str, str | None], set[str]]:
    """A saved rollout running again: where its deployments are now, which are stale."""

    state.resumed += 1
    state.status = "running"
    return where_now(store, kit, state)


def where_now(store: RegistryStore, kit: PlanKit, state: RolloutState
              ) -> tuple[dict[str, str | None], set[str]]:
    """Where a saved rollout's deployments are now (the registry's version of each) and
    which of them are stale at the target."""

    users = {u: store.find_user(u) for u in state.deployments}
    before = {u: (cfg.schema_version if cfg else None) for u, cfg in users.items()}
    fresh = kit.compiled_fingerprint(state.target)
    return before, {u for u, cfg in users.items() if _stale_at(cfg, state.target, fresh)}


def plan_rollout(kit: PlanKit, state: RolloutState, before: dict[str, str | None],
                 refresh: set[str]) -> PlannedRollout:
    """Plan each source version once (``plan_fleet``), plus the refresh plan if needed."""

    from engine.plan.planner import plan_fleet

    fleet = plan_fleet(kit.graph, [(u, v) for u, v in before.items()
                                   if v is not None and u not in refresh], state.target,
                       allow_destructive=kit.allow_destructive)
    for plan in fleet.plans.values():
        kit.remember(plan)
    refresh_plan = kit.refresh_plan(state.target) if refresh else None
    return PlannedRollout(state, kit, before, refresh, fleet, refresh_plan)


def _report(p: PlannedRollout, started: float) -> RolloutReport:
    state, kit = p.state, p.kit
    report = RolloutReport(
        rollout_id=state.rollout_id, target=state.target, status="dry_run",
        options=state.options.to_json(),
        waves=[{"name": w.name, "size": len(w.deployments)} for w in state.waves],
        rows=[], plans={src: plan.to_dict() for src, plan in p.fleet.plans.items()},
        plan_errors=dict(p.fleet.errors), started_at=started, max_failures=state.max_failures,
        resumed=state.resumed)
    if p.refresh_plan is not None:
        report.refresh = {"version": state.target,
                          "fingerprint": kit.compiled_fingerprint(state.target),
                          "deployments": sorted(p.refresh), "plan": p.refresh_plan.to_dict()}
    return report


def _dry_rows(p: PlannedRollout, report: RolloutReport) -> None:
    """What each deployment would go through; nothing is contacted or saved."""

    for uid, row in p.state.deployments.items():
        stale = uid in p.refresh
        chosen = p.refresh_plan if stale else p.fleet.plans.get(row.before or "")
        report.rows.append({
            "user_id": uid, "status": "planned", "before": row.before,
            "after": p.state.target, "wave": row.wave, "action": _action(uid, p.refresh),
            "deploys": chosen.deploys if chosen is not None else None,
            "steps": [s.id for s in chosen.steps] if chosen is not None else [],
            "error": None if stale else
            (p.fleet.errors.get(str(row.before)) or {}).get("message"),
        })
    report.graph = _graph_summary(p.kit, p.before, p.before)


def _audit_selection(store: AuditLog, state: RolloutState) -> None:
    """One audit row per user the rollout's ``only`` / ``exclude`` names."""

    options = state.options
    for event, named in (("rollout_selected", options.only),
                         ("rollout_excluded", options.exclude)):
        for uid in named:
            store.audit(uid, event, {"rollout_id": state.rollout_id, "target": state.target,
                                     "scheduled": uid in state.deployments})


async def _run(p: PlannedRollout, report: RolloutReport, *, store: RegistryStore,
               vault: Vault | None, connector: Connector, emit: Sink,
               started_event: RolloutStarted) -> None:
    """Capture (``push``), save the state (a new rollout whole, a resumed one its header),
    announce the run (``started_event``, after the save: the id it shows is resumable),
    then work the waves, saving each deployment's row as it goes."""

    state = p.state
    if vault is None:
        raise RolloutError("a rollout that deploys needs the encryption key (set "
                           "BYOD_ENCRYPTION_KEY); only a dry run works without it")
    runner = _Rollout(store=store, vault=vault, kit=p.kit, emit=emit, connector=connector,
                      state=state)
    runner.take_lease()  # first: a resume of a live rollout is refused before any work
    try:
        if state.options.deployer == "push":
            await capture_bundles(p.kit, p.to_capture, connector)
        runner.save(whole=not state.resumed)
        if not state.resumed:
            _audit_selection(store, state)
        emit_safely(emit, started_event)
        await runner.run(dict(p.fleet.plans))
        state.status = "halted" if runner.halted else "completed"
        state.halted_reason = runner.halted
        runner.save()
    finally:
        runner.lease.release()
    if runner.fenced is not None:
        raise RolloutError(
            f"rollout {state.rollout_id}: this run lost the rollout's lease to "
            f"{runner.fenced.holder} and stopped without saving; that run's record is the "
            "rollout's state (`byod rollout --list`)")
    report.status, report.halted_reason = state.status, state.halted_reason
    report.rows = [r.to_json() for r in state.deployments.values()]
    after = {u: (cfg.schema_version if (cfg := store.find_user(u)) else None)
             for u in state.deployments}
    report.graph = _graph_summary(p.kit, p.before, after)


async def rollout_async(
    target_ref: str | int | None,
    *,
    store: RegistryStore,
    vault: Vault | None,
    config: EngineConfig,
    versions: Iterable[SchemaVersion] | PlanKit,
    options: RolloutOptions | None = None,
    resume: str | None = None,
    connector: Connector | None = None,
    emit: Sink = null_sink,
    for_workers: bool = False,
) -> RolloutReport:
    """Run (or resume, or dry-run) a rollout; see the module docstring.

    ``options`` default to ``RolloutOptions()``. ``resume=ID`` runs the saved rollout with
    exactly the options it was started with (of ``options`` only ``dry_run`` counts).
    ``connector`` builds every deployer; it must deploy the way the options' ``deployer``
    says (default: the real ``HttpConnector`` for that deployer). ``for_workers`` plans
    and saves the rollout open for ``byod worker`` processes (or, with ``resume``, opens a
    halted worker rollout again) and returns without working it
    (``engine.fleet.workers``)."""

    started = time.time()
    options = options or RolloutOptions()
    if for_workers and resume and not options.dry_run:
        return _reopen_for_workers(store, resume, emit, started)
    saved = load_state(store, resume, dry_run=options.dry_run) if resume else None
    if saved is not None and saved.mode == WORKERS_MODE and saved.status == "open" \
            and not options.dry_run:
        raise RolloutError(f"rollout {saved.rollout_id} is open for workers: `byod worker "
                           f"--rollout {saved.rollout_id}` works it (`byod rollout --list` "
                           "shows its progress)")
    kit = kit_for(versions, config, saved.options if saved else options)
    options = (saved.options if saved else options).replace(
        max_batch=kit.max_batch, allow_destructive=kit.allow_destructive)
    if saved is not None:
        saved.options = options
        state, (before, refresh) = saved, _resume(store, kit, saved)
    else:
        state, before, refresh = _start(store, kit, target_ref, options, started)
    planned = plan_rollout(kit, state, before, refresh)
    # The CLI prints the id with RolloutStarted: a real run emits it only once the state is
    # saved (in ``_run``), so an id on screen can always be resumed. A dry run saves nothing.
    started_event = RolloutStarted(
        state.rollout_id, state.target, len(state.deployments),
        tuple(len(w.deployments) for w in state.waves), options.concurrency,
        state.max_failures, dry_run=options.dry_run, resumed=saved is not None)
    report = _report(planned, started)
    if options.dry_run:
        emit_safely(emit, started_event)
        _dry_rows(planned, report)
    elif for_workers:
        await _open_for_workers(planned, report, store=store, emit=emit,
                                started_event=started_event,
                                connector=connector if connector is not None
                                else _default_connector(config, options))
    else:
        await _run(planned, report, store=store, vault=vault, emit=emit,
                   started_event=started_event,
                   connector=connector if connector is not None
                   else _default_connector(config, options))
    report.finished_at = time.time()
    emit_safely(emit, RolloutFinished(state.rollout_id, report.status,
                                      tuple(report.counts.items()), report.duration_s))
    return report


async def _open_for_workers(p: PlannedRollout, report: RolloutReport, *, store: RegistryStore,
                            connector: Connector, emit: Sink,
                            started_event: RolloutStarted) -> None:
    """Save a new rollout open for workers (mode ``workers``, status ``open``, every row
    pending in its wave) without working it. With ``push`` its bundles are captured here
    first, into the cache beside the registry that workers on this host share."""

    state = p.state
    if state.options.deployer == "push":
        await capture_bundles(p.kit, p.to_capture, connector)
    state.mode, state.status = WORKERS_MODE, "open"
    state.updated_at = time.time()
    store.save_rollout(state.rollout_id, state.to_json())
    _audit_selection(store, state)
    emit_safely(emit, started_event)
    report.status = state.status
    report.rows = [r.to_json() for r in state.deployments.values()]


def _reopen_for_workers(store: RegistryStore, rollout_id: str, emit: Sink,
                        started: float) -> RolloutReport:
    """A halted worker rollout open again: its failed and skipped rows pending, for the
    workers to take (``RolloutClaims.reopen_for_workers``)."""

    reopen = getattr(store, "reopen_for_workers", None)
    if not callable(reopen):
        raise RolloutError("this registry cannot host worker rollouts")
    state = load_state(store, rollout_id)
    try:
        reopen(rollout_id)
    except RegistryError as exc:
        raise RolloutError(str(exc)) from None
    state = load_state(store, rollout_id)
    emit_safely(emit, RolloutStarted(state.rollout_id, state.target, len(state.deployments),
                                     tuple(len(w.deployments) for w in state.waves),
                                     state.options.concurrency, state.max_failures,
                                     resumed=True))
    return RolloutReport(
        rollout_id=state.rollout_id, target=state.target, status=state.status,
        options=state.options.to_json(),
        waves=[{"name": w.name, "size": len(w.deployments)} for w in state.waves],
        rows=[r.to_json() for r in state.deployments.values()], started_at=started,
        finished_at=time.time(), max_failures=state.max_failures, resumed=state.resumed)


def _default_connector(config: EngineConfig, options: RolloutOptions) -> Connector:
    from engine.convex.connector import HttpConnector

    return HttpConnector(config, kind=options.deployer)


def kit_for(versions: Iterable[SchemaVersion] | PlanKit, config: EngineConfig,
            options: RolloutOptions) -> PlanKit:
    """The planning kit; a given one takes the options' page cap."""

    if not isinstance(versions, PlanKit):
        return PlanKit(list(versions), config, max_batch=options.max_batch,
                       allow_destructive=options.allow_destructive)
    if options.allow_destructive and not versions.allow_destructive:
        raise RolloutError("allow_destructive was asked for, but the given PlanKit refuses "
                           "destructive paths: build it with allow_destructive=True")
    if options.max_batch is not None:
        versions.max_batch = options.max_batch
    return versions


def rollout(target_ref: str | int | None, **kwargs: Any) -> RolloutReport:
    """Synchronous ``rollout_async`` (the CLI and scripts)."""

    return asyncio.run(rollout_async(target_ref, **kwargs))


def summarize_rollouts(store: RolloutStore, limit: int = 50) -> list[dict[str, Any]]:
    """Recent rollouts, newest first (id, target, status, counts per status, last update):
    what ``--resume ID`` can name. The counts are the store's summary (``list_rollouts``
    never reads the rows); a whole document's rows are counted here. The store holds
    rollouts only (a user's copy progress lives in the ``ProgressStore``); a malformed
    document with neither counts nor deployments is skipped."""

    rows = []
    for doc in store.list_rollouts(limit=limit):
        if not isinstance(doc, dict):
            continue
        if isinstance(doc.get("counts"), dict):
            counts = {str(k): int(v) for k, v in doc["counts"].items()}
        elif isinstance(doc.get("deployments"), dict):
            counts = {}
            for row in doc["deployments"].values():
                status = row.get("status", "?")
                counts[status] = counts.get(status, 0) + 1
        else:
            continue
        rows.append({"rollout_id": doc["rollout_id"], "target": doc.get("target"),
                     "status": doc.get("status"), "counts": counts,
                     "updated_at": doc.get("updated_at")})
    return rows
