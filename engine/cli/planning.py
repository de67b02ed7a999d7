"""``byod diff``, ``byod plan`` and ``byod graph``: thin wrappers over the pure planner.

Every version argument takes an id (``0003_content_package``), a number (``3``) or
``head``. Human-readable text by default, ``--json`` for machines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from engine.config import load_config
from engine.errors import PlanError
from engine.plan.diff import Diff, diff
from engine.plan.graph import VersionGraph
from engine.plan.planner import edge_hints, plan, plan_fleet
from engine.schema.loader import load_versions
from engine.schema.models import Location

__all__ = ["commands", "diff_versions", "render_graph"]

_VERSIONS = click.option("--versions", "versions_dir", default=None,
                         type=click.Path(path_type=Path, file_okay=False),
                         help="Directory of version files (default: schema_versions).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _graph(versions_dir: Path | None) -> VersionGraph:
    config = load_config()
    directory = Path(versions_dir or config.versions_dir)
    return VersionGraph(load_versions(directory, config))


def diff_versions(graph: VersionGraph, a: str, b: str) -> tuple[str, str, Diff, str]:
    """(source id, target id, diff, how hints were chosen). Going up, ``b``'s hints (minus
    those ``a`` already ran) and consent apply; otherwise the raw schema diff is shown."""

    va, vb = graph.resolve(a), graph.resolve(b)
    if va.id == vb.id or graph.is_ancestor(va.id, vb.id):
        d = diff(va.schema, vb.schema, edge_hints(graph, va.id, vb.id), vb.consent,
                 location=Location.USER)
        how = f"hints and consent from {vb.id}"
    else:
        d = diff(va.schema, vb.schema, location=Location.USER)
        how = (f"{vb.id} does not descend from {va.id}: no hints apply; "
               f"`byod plan --from {va.id} --to {vb.id}` says whether a path exists")
    return va.id, vb.id, d, how


@click.command("diff")
@click.argument("a")
@click.argument("b")
@_VERSIONS
@_JSON
def diff_cmd(a: str, b: str, versions_dir: Path | None, as_json: bool) -> None:
    """Classified changes from version A to version B (user-deployed tables). Exits 1 when
    a change blocks planning (a missing hint or consent, or an impossible change)."""

    src, dst, d, how = diff_versions(_graph(versions_dir), a, b)
    blocked = len(d.blocking)
    if as_json:
        click.echo(json.dumps({"source": src, "target": dst, "hints": how, **d.to_dict()},
                              indent=2, default=str))
    else:
        click.echo(f"diff {src} -> {dst} ({how})")
        click.echo("")
        click.echo(d.render_text())
        if blocked:
            click.echo(f"diff blocked: {blocked} change(s) need a hint or consent (or are "
                       f"impossible); `byod plan` refuses {src} -> {dst} as it stands")
    if blocked:
        click.get_current_context().exit(1)


def _read_fleet(path: Path) -> list[tuple[Any, ...]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: cannot read the fleet file: {exc}") from None
    if not isinstance(data, list):
        raise PlanError(f"{path}: expected a JSON list of {{deployment, version}} objects")
    rows: list[tuple[Any, ...]] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "deployment" not in item or "version" not in item:
            raise PlanError(f"{path}: entry {i} needs 'deployment' and 'version'")
        rows.append((str(item["deployment"]), str(item["version"]), item.get("fingerprint")))
    return rows


@click.command("plan")
@click.option("--from", "source", default=None, help="Version the deployment is on.")
@click.option("--to", "target", default="head", show_default=True, help="Target version.")
@click.option("--fleet", "fleet_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="JSON list of {deployment, version}: plan each source once.")
@click.option("--allow-destructive", is_flag=True,
              help="Plan a down path even though its steps delete data (rows, fields).")
@_VERSIONS
@_JSON
def plan_cmd(source: str | None, target: str, fleet_file: Path | None, allow_destructive: bool,
             versions_dir: Path | None, as_json: bool) -> None:
    """The steps that bring a deployment (or a fleet) from one version to another."""

    graph = _graph(versions_dir)
    if fleet_file is not None:
        fleet = plan_fleet(graph, _read_fleet(fleet_file), target,
                           allow_destructive=allow_destructive)
        click.echo(json.dumps(fleet.to_dict(), indent=2, default=str) if as_json
                   else fleet.render_text())
        if fleet.errors or fleet.drifted:
            click.get_current_context().exit(1)
        return
    if source is None:
        raise click.UsageError("give --from VERSION (or --fleet FILE)")
    p = plan(graph, source, target, allow_destructive=allow_destructive)
    click.echo(json.dumps(p.to_dict(), indent=2, default=str) if as_json else p.render_text())


def render_graph(graph: VersionGraph, fmt: str = "mermaid",
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


def _registry_counts(path: Path) -> dict[str, int]:
    """Deployments per schema version in a registry file (connected or not)."""

    if not path.exists():
        raise PlanError(f"registry {path} does not exist")
    from engine.registry.sqlite import open_store  # the adapter, only when asked for

    store = open_store(path)
    try:
        counts: dict[str, int] = {}
        for user in store.list_users():
            if user.schema_version:
                counts[user.schema_version] = counts.get(user.schema_version, 0) + 1
        return counts
    finally:
        store.close()


@click.command("graph")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True)
@click.option("--registry", "registry", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Show how many deployments sit on each version "
              "(default: the configured registry, when that file exists).")
@click.option("--no-registry", is_flag=True, help="Do not read any registry.")
@_VERSIONS
@_JSON
def graph_cmd(fmt: str, registry: Path | None, no_registry: bool, versions_dir: Path | None,
              as_json: bool) -> None:
    """The version graph (Mermaid or DOT), heads marked."""

    if registry is not None and no_registry:
        raise click.UsageError("--registry and --no-registry exclude each other")
    graph = _graph(versions_dir)
    counts = None
    if registry is not None:
        counts = _registry_counts(registry)
    elif not no_registry:
        configured = Path(load_config().registry_path)
        if configured.is_file():
            counts = _registry_counts(configured)
    if as_json:
        click.echo(json.dumps({
            "versions": [{"id": v, "parents": graph.parents(v), "head": v in graph.heads(),
                          **({"deployments": counts.get(v, 0)} if counts is not None else {})}
                         for v in graph.topological_order()],
            "heads": graph.heads(),
        }, indent=2))
        return
    click.echo(render_graph(graph, fmt, counts))


commands: list[click.Command] = [diff_cmd, plan_cmd, graph_cmd]
