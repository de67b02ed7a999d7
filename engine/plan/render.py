"""Rendering plans for people (``byod plan``) and machines (``--json``). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import PlanError

if TYPE_CHECKING:
    from engine.plan.graph import VersionGraph

__all__ = ["fleet_to_dict", "plan_to_dict", "render_fleet_text", "render_graph", "render_plan_text"]


def _step_dict(step: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": step.id, "kind": step.kind}
    if step.version:
        out["version"] = step.version
    if step.kind == "deploy_widened":
        assert step.schema is not None
        out["tables"] = len(step.schema.tables)
        out["data_steps"] = [s.id for s in step.data_steps]
        out["covers"] = list(step.covers)
        out["schema"] = step.schema.to_convex_json()
    if step.data_step is not None:
        out["data_step"] = step.data_step.to_dict()
    if step.destructive:
        out["destructive"] = True
    return out


def plan_to_dict(plan: Any) -> dict[str, Any]:
    return {
        "id": plan.id,
        "deployment": plan.deployment,
        "source": plan.source,
        "target": plan.target,
        "direction": plan.direction,
        "path": list(plan.path),
        "deploys": plan.deploys,
        "groups": [list(g) for g in plan.groups],
        "notes": list(plan.notes),
        "destructive": [s.id for s in plan.destructive_steps],
        "steps": [_step_dict(s) for s in plan.steps],
    }


def _describe(step: Any) -> str:
    if step.kind == "deploy_widened":
        assert step.schema is not None
        return (f"deploy the widened schema ({len(step.schema.tables)} tables accepting "
                f"both {step.covers[0]} and {step.covers[-1]} documents) with "
                f"{len(step.data_steps)} data-step mutation(s)")
    if step.kind == "run_data_step":
        assert step.data_step is not None
        return f"run data step {step.data_step.summary()}"
    if step.kind == "deploy_target":
        return f"deploy {step.version}"
    if step.kind == "verify":
        return f"verify the deployment reports {step.version}"
    return f"record {step.version} in the registry and on the deployment"


def render_plan_text(plan: Any) -> str:
    who = f" for {plan.deployment}" if plan.deployment else ""
    if plan.direction == "none":
        return f"plan{who}: already at {plan.target}; nothing to do"
    edges = len(plan.path) - 1
    lines = [
        f"plan{who}: {plan.source} -> {plan.target} ({plan.direction}, {edges} edge(s), "
        f"{plan.deploys} deploy(s), {len(plan.data_steps)} data step(s))",
        "path: " + " -> ".join(plan.path),
        "",
    ]
    gone = plan.destructive_steps
    if gone:
        why = ("on the way down, allowed explicitly" if plan.direction == "down"
               else "as the version files consent")
        lines[-1:-1] = [f"destructive: {len(gone)} step(s) delete data, {why} (marked below)"]
    for i, step in enumerate(plan.steps, 1):
        mark = "  [destructive: deletes data]" if step.destructive else ""
        lines.append(f"{i:>3}. {_describe(step)}{mark}")
        if step.kind == "run_data_step":
            lines.append(f"       function {step.data_step.function_path}")
    if len(plan.groups) > 1:
        lines.append("")
        lines.append(f"deploys are split into {len(plan.groups)} groups:")
        lines += [f"  - {' -> '.join(g)}" for g in plan.groups]
    if plan.notes:
        lines.append("")
        lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


def fleet_to_dict(fleet: Any) -> dict[str, Any]:
    groups = []
    for vid, deps in fleet.members.items():
        entry: dict[str, Any] = {"source": vid, "deployments": list(deps)}
        if vid in fleet.plans:
            p = fleet.plans[vid]
            entry.update(plan=plan_to_dict(p))
        if vid in fleet.errors:
            entry["error"] = fleet.errors[vid]
        groups.append(entry)
    return {
        "target": fleet.target,
        "deployments": fleet.deployments,
        "groups": groups,
        "drifted": list(fleet.drifted),
    }


def render_fleet_text(fleet: Any) -> str:
    lines = [f"fleet plan to {fleet.target}: {fleet.deployments} deployment(s) in "
             f"{len(fleet.members)} source version(s)", ""]
    for vid, deps in fleet.members.items():
        if vid in fleet.plans:
            p = fleet.plans[vid]
            what = ("already there" if p.direction == "none" else
                    f"{p.direction}, {p.deploys} deploy(s), {len(p.data_steps)} data step(s)")
            lines.append(f"  {vid}: {len(deps)} deployment(s) -> {what}")
        else:
            err = fleet.errors.get(vid, {})
            first, *rest = err.get("message", "unknown error").splitlines() or ["?"]
            lines.append(f"  {vid}: {len(deps)} deployment(s) -> cannot plan: {first}")
            lines += [f"      {line.rstrip()}" for line in rest]
    if fleet.drifted:
        lines.append("")
        lines.append(f"{len(fleet.drifted)} drifted deployment(s) (not planned):")
        lines += [f"  - {d['deployment']} on {d['version']}: expected {d['expected'][:12]}, "
                  f"found {d['actual'][:12]}" for d in fleet.drifted]
    return "\n".join(lines)


def render_graph(graph: "VersionGraph", fmt: str = "mermaid",
                 counts: dict[str, int] | None = None) -> str:
    """The version graph as Mermaid or DOT; heads are marked, and ``counts`` (deployments
    per version id, from a registry) are shown when given."""

    heads = set(graph.heads())
    order = graph.topological_order()

    def label(vid: str) -> str:
        v = graph.get(vid)
        text = vid + (" (head)" if vid in heads else "")
        if v.description:
            text += "\\n" + v.description.split(".")[0][:48]
        if counts is not None:
            text += f"\\n{counts.get(vid, 0)} deployment(s)"
        return text

    node = {vid: f"v{graph.get(vid).number}_{i}" for i, vid in enumerate(order)}
    if fmt == "dot":
        lines = ["digraph versions {", "  rankdir=LR;", "  node [shape=box];"]
        for vid in order:
            style = ", style=bold, peripheries=2" if vid in heads else ""
            lines.append(f'  {node[vid]} [label="{label(vid)}"{style}];')
        for vid in order:
            for child in graph.children(vid):
                lines.append(f"  {node[vid]} -> {node[child]};")
        lines.append("}")
        return "\n".join(lines)
    if fmt != "mermaid":
        raise PlanError(f"unknown graph format {fmt!r}: use mermaid or dot")
    lines = ["graph LR"]
    for vid in order:
        text = label(vid).replace("\\n", "<br/>").replace('"', "'")
        lines.append(f'  {node[vid]}["{text}"]')
    for vid in order:
        for child in graph.children(vid):
            lines.append(f"  {node[vid]} --> {node[child]}")
    if heads:
        lines.append("  classDef head stroke-width:3px")
        lines.append("  class " + ",".join(node[h] for h in sorted(heads)) + " head")
    return "\n".join(lines)
