"""Fleet rollout: bring every connected deployment to a target version, safely.

* **Selection.** Connected deployments whose registry row is not already deployed at the
  target, grouped by source version through ``plan_fleet`` (each source planned once);
  plus *stale* ones at the target: their recorded fingerprint is not what the target
  compiles to now (a ``byod.toml`` change such as ``auth`` or ``convex_version``). Those
  get a one-deploy *refresh* plan (deploy → verify → record, ``PlanKit.refresh_plan``);
  rows and reports mark them ``action: refresh``. Down paths that delete data are refused
  by the planner unless ``allow_destructive`` (``--allow-destructive``).
* **Waves.** A canary (one deployment per source version first, up to ``canary``), then
  cumulative waves (``10%`` = until a tenth of the fleet has been worked; a bare number is
  a count). Within a wave up to ``concurrency`` deployments run at once; each is isolated
  (its failure is its outcome, never an exception that stops the others).
* **Failure budget.** ``max_failures`` (a count or a percentage of the fleet) failures are
  tolerated; one more halts the rollout: deployments in flight finish, nothing new starts,
  the rest stay untouched and the rollout can be resumed by id. Any canary failure halts.
* **Locks.** The runner takes a registry lease per deployment, held as
  ``<rollout id>/<run>``: a second rollout skips (and reports) deployments another one is
  working, and a resumed rollout takes back its own leases at once instead of waiting for
  them to expire (an earlier run still alive loses them and stops).
* **Crash safety.** The rollout document (targets, waves, per-deployment outcome) is saved
  after every deployment; ``resume=ID`` reloads it and runs whatever did not succeed, each
  deployment continuing from its own journal.
* **Dry run.** Plans and reports from the registry alone: no deployment is contacted and
  nothing is written anywhere.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from engine.config import EngineConfig
from engine.errors import ByodError, RolloutError
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
from engine.fleet.runner import (
    DeploymentOutcome,
    RunContext,
    default_deploy_slots,
    run_plan_async,
)
from engine.fleet.waves import parse_budget, parse_waves, plan_waves
from engine.ports.registry import RegistryStore, UserConfig
from engine.redact import redact
from engine.schema.models import SchemaVersion

__all__ = [
    "AdapterFactory",
    "RolloutReport",
    "parse_budget",
    "parse_waves",
    "plan_waves",
    "rollout",
    "rollout_async",
]

AdapterFactory = Callable[[Any, EngineConfig], tuple[Any, Any | None]]
"""(target, config) → (deploy adapter, async function client or None)."""

_DONE = ("succeeded", "already")


@dataclass
class RolloutReport:
    """Everything a rollout did (or, dry, would do): the source of the JSON and HTML."""

    rollout_id: str
    target: str
    status: str  # completed | halted | failed | dry_run
    options: dict[str, Any]
    waves: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # one per deployment (outcome dict or the planned step)
    plans: dict[str, Any] = field(default_factory=dict)  # source → plan dict
    plan_errors: dict[str, Any] = field(default_factory=dict)
    refresh: dict[str, Any] = field(default_factory=dict)  # the refresh plan, if any
    graph: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    max_failures: int = 0
    halted_reason: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row["status"]] = out.get(row["status"], 0) + 1
        return dict(sorted(out.items()))

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def ok(self) -> bool:
        return self.status in ("completed", "dry_run") and self.failed == 0

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id, "target": self.target, "status": self.status,
            "ok": self.ok, "halted_reason": self.halted_reason, "options": self.options,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 3), "counts": self.counts,
            "max_failures": self.max_failures, "waves": self.waves,
            "deployments": self.rows, "plans": self.plans, "plan_errors": self.plan_errors,
            "refresh": self.refresh, "graph": self.graph,
        }


def _default_adapters(target: Any, config: EngineConfig) -> tuple[Any, Any | None]:
    from engine.convex.http import AsyncConvexHttpClient
    try:
        from engine.convex.connector import adapter_for
        adapter = adapter_for(target, config, kind="cli")
    except ImportError:
        from engine.convex.deploy_cli import CliDeployAdapter
        adapter = CliDeployAdapter(target, timeout=config.deploy_timeout_s,
                                   http_timeout=config.http_timeout_s)
    return adapter, AsyncConvexHttpClient(target, timeout=config.http_timeout_s)


def _push_adapters(cache: Any) -> AdapterFactory:
    """Deploys replay captured push requests over the deployment's async HTTP client,
    which also runs its functions (one connection pool per deployment)."""

    from engine.convex.http import AsyncConvexHttpClient
    from engine.convex.push import AsyncPushDeployAdapter

    def make(target: Any, config: EngineConfig) -> tuple[Any, Any | None]:
        functions = AsyncConvexHttpClient(target, timeout=config.http_timeout_s)
        adapter = AsyncPushDeployAdapter(target, payloads=cache, http_client=functions,
                                         timeout=config.deploy_timeout_s)
        return adapter, functions

    return make


def _deploy_bundles(kit: PlanKit, plans: Iterable[Any]) -> list[Any]:
    bundles = []
    for plan in plans:
        for step in plan.steps:
            if step_kind(step) in ("deploy_widened", "deploy_target"):
                bundles.append(kit.step_bundle(plan, step))
    return bundles


async def _capture_all(kit: PlanKit, plans: Iterable[Any], config: EngineConfig,
                       payloads: Any | None) -> Any:
    """Capture each distinct bundle of the plans once, here in the parent, with the CPU
    bounded by the cache's capture slots; the deployments then only push over HTTP."""

    from engine.convex.capture import PayloadCache
    from engine.convex.connector import payload_dir

    cache = payloads if payloads is not None else PayloadCache(
        payload_dir(config), timeout=config.deploy_timeout_s)
    await asyncio.to_thread(cache.prepare, _deploy_bundles(kit, plans), strict=False)
    return cache


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
    """One rollout's mutable state; ``doc`` mirrors what is saved in the registry."""

    def __init__(self, *, store: RegistryStore, vault: Any, config: EngineConfig,
                 kit: PlanKit, emit: Sink, adapter_factory: AdapterFactory,
                 concurrency: int, rollout_id: str, doc: dict[str, Any],
                 lease_ttl_s: float, deploy_slots: int | None):
        self.store, self.vault, self.config, self.kit = store, vault, config, kit
        self.emit, self.adapter_factory = emit, adapter_factory
        self.concurrency = max(1, concurrency)
        self.rollout_id, self.doc = rollout_id, doc
        self.lease_ttl_s = lease_ttl_s
        self.deploy_slots = deploy_slots or default_deploy_slots()
        self.failures = 0
        self.halted: str | None = None

    def event(self, event: Any) -> None:
        emit_safely(self.emit, event)

    def save(self) -> None:
        self.doc["updated_at"] = time.time()
        self.store.save_rollout(self.rollout_id, self.doc)

    async def run(self, plans: dict[str, Any]) -> None:
        # One holder per run of the rollout: a resumed run that overlaps a still-running
        # one takes its leases over (the older run then stops) instead of sharing them.
        ctx = RunContext(store=self.store, kit=self.kit,
                         holder=f"{self.rollout_id}/{uuid.uuid4().hex[:8]}",
                         reclaim_from=self.rollout_id,
                         emit=self.emit, deploy_slots=asyncio.Semaphore(self.deploy_slots),
                         lease_ttl_s=self.lease_ttl_s)
        max_failures = int(self.doc["max_failures"])
        for index, wave in enumerate(self.doc["waves"]):
            todo = [u for u in wave["deployments"]
                    if self.doc["deployments"][u]["status"] not in _DONE]
            if not todo:
                continue
            if self.halted:
                break
            self.event(WaveStarted(self.rollout_id, wave["name"], index, tuple(todo)))
            gate = asyncio.Semaphore(self.concurrency)
            results: list[DeploymentOutcome] = []

            async def one(user_id: str) -> None:
                async with gate:
                    if self.halted:
                        return
                    outcome = await self._deployment(ctx, user_id, plans)
                    results.append(outcome)
                    row = self.doc["deployments"][user_id]
                    row.update(outcome.to_dict())
                    if outcome.refresh:
                        row["action"] = "refresh"
                    if outcome.status == "failed":
                        self.failures += 1
                        if wave["name"] == "canary":
                            self.halted = f"canary {user_id} failed"
                        elif self.failures > max_failures:
                            self.halted = (f"{self.failures} failures exceed the budget of "
                                           f"{max_failures}")
                    self.save()

            await asyncio.gather(*(one(u) for u in todo))
            counts = {s: sum(1 for r in results if r.status == s)
                      for s in ("succeeded", "already", "failed", "skipped")}
            self.event(WaveFinished(self.rollout_id, wave["name"], index,
                                    counts["succeeded"] + counts["already"], counts["failed"],
                                    counts["skipped"]))
        if self.halted:
            untouched = sum(1 for r in self.doc["deployments"].values()
                            if r["status"] == "pending")
            self.event(BudgetExhausted(self.rollout_id, self.failures, max_failures, untouched))

    async def _deployment(self, ctx: RunContext, user_id: str,
                          plans: dict[str, Any]) -> DeploymentOutcome:
        target = self.doc["target"]
        secrets: tuple[str, ...] = ()
        started = time.monotonic()
        adapter = functions = None
        try:
            user = self.store.get_user(user_id)
            dep_target = self.vault.target_for(user)
            secrets = tuple(dep_target.secrets)
            adapter, functions = self.adapter_factory(dep_target, self.config)
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
            await _close(functions)
            await _close(adapter)


async def _close(obj: Any) -> None:
    if obj is None:
        return
    closer = getattr(obj, "aclose", None) or getattr(obj, "close", None)
    if closer is None:
        return
    try:
        result = closer()
        if asyncio.iscoroutine(result):
            await result
    except Exception:  # noqa: BLE001 - closing never fails a deployment
        pass


def _stale_at(user: UserConfig | None, target: str, fresh: str) -> bool:
    """Recorded at ``target`` with a fingerprint ``target`` no longer compiles to."""

    return (user is not None and user.schema_version == target
            and bool(user.schema_fingerprint) and user.schema_fingerprint != fresh)


def _select(store: RegistryStore, target: str, fresh: str) -> tuple[list[UserConfig], set[str]]:
    """Connected users to work, and which of them only need a refresh."""

    chosen: list[UserConfig] = []
    refresh: set[str] = set()
    for u in store.list_users(connection_status=["connected"]):
        if _stale_at(u, target, fresh):
            refresh.add(u.user_id)
            chosen.append(u)
        elif not (u.schema_version == target and u.deployment_status == "deployed"):
            chosen.append(u)
    return sorted(chosen, key=lambda u: u.user_id), refresh


async def rollout_async(
    target_ref: str | int | None,
    *,
    store: RegistryStore,
    vault: Any,
    config: EngineConfig,
    versions: Iterable[SchemaVersion] | PlanKit,
    canary: int = 1,
    waves: Sequence[str] | str = ("10%", "50%", "100%"),
    concurrency: int = 8,
    max_failures: str | int = "10%",
    dry_run: bool = False,
    resume: str | None = None,
    emit: Sink = null_sink,
    adapter_factory: AdapterFactory | None = None,
    lease_ttl_s: float = 120.0,
    deploy_slots: int | None = None,
    max_batch: int | None = None,
    deployer: str = "push",
    payloads: Any | None = None,
    allow_destructive: bool = False,
) -> RolloutReport:
    """Run (or resume, or dry-run) a rollout; see the module docstring. ``max_batch``
    caps documents per data-step page; ``deploy_slots`` bounds concurrent CLI deploys
    (default: one per CPU). ``deployer`` (without an ``adapter_factory``): ``push``
    captures each distinct bundle once with the real CLI and pushes it to every
    deployment over HTTP (``payloads``: a ``PayloadCache`` to use); ``cli`` runs the CLI
    per deploy. ``allow_destructive`` lets the planner plan down paths that delete data
    (a resumed rollout keeps what it was started with)."""

    from engine.plan.planner import plan_fleet

    if deployer not in ("push", "cli"):
        raise RolloutError(f"the deployer must be 'push' or 'cli', not {deployer!r}")
    started = time.time()
    doc: dict[str, Any] | None = None
    if resume:
        doc = store.load_rollout(resume)
        if doc is None:
            raise RolloutError(f"no rollout {resume!r} in the registry; see `byod rollout --list`")
        allow_destructive = allow_destructive or bool(
            (doc.get("options") or {}).get("allow_destructive"))
    kit = _kit_for(versions, config, max_batch=max_batch, allow_destructive=allow_destructive)
    if doc is not None:
        target = str(doc["target"])
        rollout_id = str(resume)
        doc["resumed"] = int(doc.get("resumed", 0)) + 1
        doc["status"] = "running"
        users = {u: store.find_user(u) for u in doc["deployments"]}
        before = {u: (cfg.schema_version if cfg else None) for u, cfg in users.items()}
        fresh = kit.compiled_fingerprint(target)
        refresh = {u for u, cfg in users.items() if _stale_at(cfg, target, fresh)}
    else:
        target = kit.resolve(target_ref if target_ref is not None else "head")
        rollout_id = f"r-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(started))}-" \
                     f"{uuid.uuid4().hex[:6]}"
        selected, refresh = _select(store, target, kit.compiled_fingerprint(target))
        before = {u.user_id: u.schema_version for u in selected}
    fleet = plan_fleet(kit.graph, [(u, v) for u, v in before.items()
                                   if v is not None and u not in refresh], target,
                       allow_destructive=kit.allow_destructive)
    for plan in fleet.plans.values():
        kit.remember(plan)
    refresh_plan = kit.refresh_plan(target) if refresh else None
    if not resume:
        by_source: dict[str | None, list[str]] = {}
        for uid, v in before.items():
            by_source.setdefault(v, []).append(uid)
        canary_first = [members[0] for _, members in sorted(
            by_source.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))]
        order = sorted(before)
        wave_plan = plan_waves(order, canary=canary, waves=parse_waves(waves),
                               canary_first=canary_first)
        budget = parse_budget(max_failures, len(order))
        doc = {
            "rollout_id": rollout_id, "target": target, "status": "running",
            "created_at": started, "max_failures": budget,
            "options": {"canary": canary, "waves": list(parse_waves(waves)),
                        "concurrency": concurrency, "max_failures": str(max_failures),
                        "deployer": deployer if adapter_factory is None else "custom",
                        "allow_destructive": kit.allow_destructive},
            "waves": [{"name": n, "deployments": us} for n, us in wave_plan],
            "deployments": {u: {"user_id": u, "status": "pending", "before": before[u],
                                "wave": n, "action": _action(u, refresh)}
                            for n, us in wave_plan for u in us},
        }
    assert doc is not None
    plans_dict = {src: p.to_dict() for src, p in fleet.plans.items()}
    emit_safely(emit, RolloutStarted(
        rollout_id, target, len(doc["deployments"]),
        tuple(len(w["deployments"]) for w in doc["waves"]), concurrency,
        int(doc["max_failures"]), dry_run=dry_run, resumed=bool(resume)))
    report = RolloutReport(
        rollout_id=rollout_id, target=target, status="dry_run", options=doc["options"],
        waves=[{"name": w["name"], "size": len(w["deployments"])} for w in doc["waves"]],
        rows=[], plans=plans_dict, plan_errors=dict(fleet.errors), started_at=started,
        max_failures=int(doc["max_failures"]))
    if refresh_plan is not None:
        report.refresh = {"version": target, "fingerprint": kit.compiled_fingerprint(target),
                          "deployments": sorted(refresh), "plan": refresh_plan.to_dict()}
    if dry_run:
        for uid, row in doc["deployments"].items():
            stale = uid in refresh
            chosen = refresh_plan if stale else fleet.plans.get(row["before"] or "")
            report.rows.append({
                "user_id": uid, "status": "planned", "before": row["before"],
                "after": target, "wave": row["wave"], "action": _action(uid, refresh),
                "deploys": chosen.deploys if chosen is not None else None,
                "steps": [s.id for s in chosen.steps] if chosen is not None else [],
                "error": None if stale else
                (fleet.errors.get(str(row["before"])) or {}).get("message"),
            })
        report.graph = _graph_summary(kit, before, before)
    else:
        if adapter_factory is None and deployer == "push":
            to_capture = [*fleet.plans.values(), *([refresh_plan] if refresh_plan else [])]
            cache = await _capture_all(kit, to_capture, config, payloads)
            adapter_factory = _push_adapters(cache)
        state = _Rollout(store=store, vault=vault, config=config, kit=kit, emit=emit,
                         adapter_factory=adapter_factory or _default_adapters,
                         concurrency=concurrency, rollout_id=rollout_id, doc=doc,
                         lease_ttl_s=lease_ttl_s, deploy_slots=deploy_slots)
        state.save()
        await state.run(dict(fleet.plans))
        doc["status"] = "halted" if state.halted else "completed"
        doc["halted_reason"] = state.halted
        state.save()
        report.status = doc["status"]
        report.halted_reason = state.halted
        report.rows = [dict(r) for r in doc["deployments"].values()]
        after = {u: (cfg.schema_version if (cfg := store.find_user(u)) else None)
                 for u in doc["deployments"]}
        report.graph = _graph_summary(kit, before, after)
    report.finished_at = time.time()
    emit_safely(emit, RolloutFinished(rollout_id, report.status,
                                      tuple(report.counts.items()), report.duration_s))
    return report


def _action(user_id: str, refresh: set[str]) -> str:
    return "refresh" if user_id in refresh else "migrate"


def _kit_for(versions: Iterable[SchemaVersion] | PlanKit, config: EngineConfig, *,
             max_batch: int | None, allow_destructive: bool) -> PlanKit:
    if not isinstance(versions, PlanKit):
        return PlanKit(list(versions), config, max_batch=max_batch,
                       allow_destructive=allow_destructive)
    if allow_destructive and not versions.allow_destructive:
        raise RolloutError("allow_destructive was asked for, but the given PlanKit refuses "
                           "destructive paths: build it with allow_destructive=True")
    return versions


def rollout(target_ref: str | int | None, **kwargs: Any) -> RolloutReport:
    """Synchronous ``rollout_async`` (the CLI and scripts)."""

    return asyncio.run(rollout_async(target_ref, **kwargs))
