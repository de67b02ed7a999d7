"""What the runner and the rollout need from the pure core, in one place.

``PlanKit`` binds a version graph and the engine config to the planner and the compiler,
and caches: the same plan and the same bundle serve every deployment on the same source
version, so a fleet of thousands compiles a handful of bundles. It does no I/O beyond
rendering templates. The accessors below (``step_kind``, ``step_data``, ``plan_id_of``) are
the runner's whole view of a frozen ``Plan``.

A *refresh* plan (``PlanKit.refresh_plan``) redeploys a version a deployment already runs
because the version now compiles to another bundle (a ``byod.toml`` change such as
``auth`` or ``convex_version``, or a change of the engine's own functions): deploy →
verify → record, nothing else. Its step ids carry the new fingerprint, so a second
refresh of the same version after another config change is a new plan with its own
journal, never the first one's completed steps.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, Iterable

from engine.bundle.compiler import Bundle, compile_bundle, compile_version
from engine.config import EngineConfig
from engine.errors import PlanError
from engine.plan.datasteps import DataStep, suggest_batch_size
from engine.plan.graph import VersionGraph
from engine.plan.planner import Plan, PlanStep, plan_deployment
from engine.schema.models import SchemaVersion

__all__ = ["PlanKit", "is_refresh", "plan_id_of", "step_data", "step_kind", "step_version"]

PlanFn = Callable[[VersionGraph, str, str], Plan]
DEFAULT_BATCH = 100
REFRESH_PREFIX = "refresh:"


def step_kind(step: PlanStep) -> str:
    return step.kind


def step_data(step: PlanStep) -> DataStep:
    """The ``DataStep`` a ``run_data_step`` step carries."""

    if step.data_step is None:
        raise PlanError(f"plan step {step.id!r} carries no data step")
    return step.data_step


def step_version(plan: Plan, step: PlanStep) -> str:
    """The version a deploy_target / verify / record step puts in place (a plan split
    into several groups passes through intermediate versions)."""

    return step.version or plan.target


def is_refresh(plan: Plan) -> bool:
    """Whether ``plan`` only redeploys the version it starts on (``PlanKit.refresh_plan``)."""

    return bool(plan.steps) and plan.source == plan.target and all(
        s.id.startswith(REFRESH_PREFIX) for s in plan.steps)


def plan_id_of(plan: Plan) -> str:
    """The plan's content-derived id: the same plan always has the same id, so a resumed
    run finds its journal."""

    return plan.id


class PlanKit:
    """Graph + config + planner + compiler, cached and thread-safe."""

    def __init__(self, graph: VersionGraph | Iterable[SchemaVersion], config: EngineConfig,
                 *, plan_fn: PlanFn | None = None, max_batch: int | None = None,
                 allow_destructive: bool = False):
        self.graph = graph if isinstance(graph, VersionGraph) else VersionGraph(graph)
        self.config = config
        self._plan_fn = plan_fn
        self.max_batch = max_batch  # an operator's cap on documents per page
        # down paths that delete data are refused by the planner unless the operator
        # allowed them (``byod rollout --allow-destructive``)
        self.allow_destructive = allow_destructive
        self._lock = threading.Lock()
        self._plans: dict[tuple[str, str], Plan] = {}
        self._refresh: dict[str, Plan] = {}
        self._bundles: dict[tuple[str, ...], Bundle] = {}

    # -- versions and plans ---------------------------------------------------------------
    def resolve(self, ref: str | int) -> str:
        return self.graph.resolve(ref).id

    def plan(self, source: str, target: str) -> Plan:
        key = (source, target)
        with self._lock:
            if key in self._plans:
                return self._plans[key]
        plan = (self._plan_fn or _default_plan_fn(self.allow_destructive))(
            self.graph, source, target)
        with self._lock:
            self._plans.setdefault(key, plan)
            return self._plans[key]

    def remember(self, plan: Plan) -> None:
        """Seed the cache with a plan computed elsewhere (``plan_fleet``)."""

        with self._lock:
            self._plans.setdefault((plan.source, plan.target), plan)

    def refresh_plan(self, version_id: str) -> Plan:
        """Redeploy ``version_id`` as it compiles now: deploy_target → verify → record
        (no widening, no data steps: the schema is the same, only the bundle differs)."""

        vid = self.resolve(version_id)
        with self._lock:
            cached = self._refresh.get(vid)
        if cached is not None:
            return cached
        fingerprint = self.version_bundle(vid).fingerprint
        tag = f"{REFRESH_PREFIX}{vid}@{fingerprint[:12]}"
        plan = Plan(
            source=vid, target=vid, path=(vid,), direction="none",
            steps=(PlanStep(id=f"{tag}:deploy_target", kind="deploy_target", version=vid),
                   PlanStep(id=f"{tag}:verify", kind="verify", version=vid),
                   PlanStep(id=f"{tag}:record", kind="record", version=vid)),
            groups=((vid,),),
            notes=(f"refresh: {vid} now compiles to fingerprint {fingerprint[:12]} (a "
                   "byod.toml change such as auth or convex_version); redeploy it, no "
                   "data changes",))
        with self._lock:
            return self._refresh.setdefault(vid, plan)

    def compiled_fingerprint(self, version_id: str) -> str:
        """The fingerprint ``version_id`` compiles to with this kit's config."""

        return self.version_bundle(version_id).fingerprint

    # -- bundles --------------------------------------------------------------------------
    def version_bundle(self, version_id: str) -> Bundle:
        key = ("version", version_id)
        with self._lock:
            cached = self._bundles.get(key)
        if cached is None:
            cached = compile_version(self.graph.get(version_id), self.config)
            with self._lock:
                self._bundles.setdefault(key, cached)
        return cached

    def step_bundle(self, plan: Plan, step: PlanStep) -> Bundle:
        """The bundle a deploy step puts on the deployment."""

        kind = step_kind(step)
        if kind == "deploy_target":
            return self.version_bundle(step_version(plan, step))
        if kind != "deploy_widened":
            raise PlanError(f"step {step.id!r} ({kind}) deploys nothing")
        key = ("widen", str(step.id), plan_id_of(plan))
        with self._lock:
            cached = self._bundles.get(key)
        if cached is None:
            if step.schema is None:
                raise PlanError(f"plan step {step.id!r} names no widened schema")
            version_id = step.version or f"{plan.source}-to-{plan.target}-widen"
            # Each widened deploy carries its own group's steps (custom code is typed
            # against that group's schema).
            cached = compile_bundle(step.schema, version_id=version_id, kind="widen",
                                    data_steps=list(step.data_steps), config=self.config)
            with self._lock:
                self._bundles.setdefault(key, cached)
        return cached

    def step_fingerprint(self, plan: Plan, step: PlanStep) -> str | None:
        kind = step_kind(step)
        if kind in ("deploy_widened", "deploy_target"):
            return self.step_bundle(plan, step).fingerprint
        if kind in ("verify", "record"):
            return self.version_bundle(step_version(plan, step)).fingerprint
        return None

    @staticmethod
    def data_steps(plan: Plan) -> list[DataStep]:
        return list(plan.data_steps)

    def batch_size(self, plan: Plan, data_step: DataStep) -> int:
        """Start from the size the datasteps module suggests for the table's schema
        (capped by ``max_batch``); the runner adapts it to the limits it meets."""

        size = DEFAULT_BATCH
        for vid in (plan.target, plan.source):
            version = self.graph.versions.get(vid)
            if version is not None and data_step.table in version.schema.tables:
                size = int(suggest_batch_size(version.schema.tables[data_step.table]))
                break
        return max(1, min(size, self.max_batch)) if self.max_batch else size


def _default_plan_fn(allow_destructive: bool = False) -> PlanFn:
    if allow_destructive:
        return functools.partial(plan_deployment, allow_destructive=True)
    return plan_deployment
