"""``plan_code``: the TypeScript a plan will deploy for its data steps, for review before a
rollout (as ``alembic upgrade --sql`` prints the SQL instead of running it).

Each ``deploy_widened`` step of a plan puts a widened bundle on the deployment: its
``convex/schema.ts`` accepts the documents of both ends of the step's group, and its
``convex/byodMigrations.ts`` holds one internal mutation per data step (generated code,
and the hints' custom and convert code inside typed functions). The bundles are compiled
exactly as a rollout compiles them (``PlanKit.step_bundle``), so the fingerprint printed
is the one the rollout will deploy and record in its journal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.commands.workspace import Workspace

if TYPE_CHECKING:
    from engine.plan.planner import Plan

__all__ = ["CODE_FILES", "plan_code"]

# What a widened bundle adds to review, in the order a reader needs it.
CODE_FILES = ("convex/schema.ts", "convex/byodMigrations.ts")


def plan_code(ws: Workspace, plan: "Plan") -> list[dict[str, Any]]:
    """One entry per ``deploy_widened`` step of ``plan``, in plan order: the step id, the
    bundle's version id and fingerprint, the data-step functions it carries (with each
    step's description) and ``files`` (path -> TypeScript) of ``CODE_FILES``. Empty when
    the plan runs no data steps (it only deploys versions, whose bundles `byod build`
    writes)."""

    from engine.fleet.artifacts import PlanKit

    kit = PlanKit(ws.graph, ws.config)
    kit.remember(plan)
    out: list[dict[str, Any]] = []
    for number, step in enumerate(plan.steps, start=1):
        if step.kind != "deploy_widened":
            continue
        bundle = kit.step_bundle(plan, step)
        out.append({
            "step": number,
            "id": step.id,
            "version": bundle.version_id,
            "fingerprint": bundle.fingerprint,
            "covers": list(step.covers),
            "data_steps": [{"function": d.function_path, "table": d.table, "op": d.op,
                            "summary": d.summary()} for d in step.data_steps],
            "files": {path: bundle.files[path] for path in CODE_FILES if path in bundle.files},
        })
    return out
