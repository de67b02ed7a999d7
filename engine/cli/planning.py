"""``byod diff``, ``byod plan`` and ``byod graph``: thin wrappers over the pure planner.

Every version argument takes an id (``0003_content_package``), a number (``3``) or
``head``. Human-readable text by default, ``--json`` for machines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from engine.cli.output import dump
from engine.cli.version_options import JSON, VERSIONS, versions_workspace
from engine.commands import authoring as verbs
from engine.commands.migration_code import plan_code
from engine.errors import PlanError

__all__ = ["commands"]


@click.command("diff")
@click.argument("a")
@click.argument("b")
@VERSIONS
@JSON
def diff_cmd(a: str, b: str, versions_dir: Path | None, as_json: bool) -> None:
    """Classified changes from version A to version B (user-deployed tables). Exits 1 when
    a change blocks planning (a missing hint or consent, or an impossible change)."""

    src, dst, d, how = verbs.diff(versions_workspace(versions_dir), a, b)
    blocked = len(d.blocking)
    if as_json:
        dump({"source": src, "target": dst, "hints": how, **d.to_dict()})
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
@click.option("--show-code", is_flag=True,
              help="Also print the TypeScript each widened deploy carries (its schema and "
              "data-step mutations), for review; with --json, under `code`.")
@VERSIONS
@JSON
def plan_cmd(source: str | None, target: str, fleet_file: Path | None, allow_destructive: bool,
             show_code: bool, versions_dir: Path | None, as_json: bool) -> None:
    """The steps that bring a deployment (or a fleet) from one version to another."""

    ws = versions_workspace(versions_dir)
    if fleet_file is not None and show_code:
        raise click.UsageError("--show-code prints one plan's code: give --from VERSION "
                               "instead of --fleet")
    if fleet_file is not None:
        fleet = verbs.plan_fleet(ws, _read_fleet(fleet_file), target,
                                    allow_destructive=allow_destructive)
        if as_json:
            dump(fleet.to_dict())
        else:
            click.echo(fleet.render_text())
        if fleet.errors or fleet.drifted:
            click.get_current_context().exit(1)
        return
    if source is None:
        raise click.UsageError("give --from VERSION (or --fleet FILE)")
    p = verbs.plan(ws, source, target, allow_destructive=allow_destructive)
    code = plan_code(ws, p) if show_code else None
    if as_json:
        dump({**p.to_dict(), **({"code": code} if code is not None else {})})
        return
    click.echo(p.render_text())
    if code is not None:
        click.echo(_render_code(code))


def _render_code(entries: list[dict[str, Any]]) -> str:
    """The widened bundles' code as one TypeScript-commented listing."""

    if not entries:
        return ("\n// this plan runs no data steps, so it deploys no migration code; the "
                "bundle of each version it deploys: `byod build VERSION`")
    lines: list[str] = []
    for entry in entries:
        lines += ["", f"// ==== step {entry['step']}: {entry['id']}",
                  f"// bundle {entry['version']} (fingerprint {entry['fingerprint'][:12]}), "
                  f"{len(entry['data_steps'])} data step(s):"]
        lines += [f"//   {d['function']}: {d['summary']}" for d in entry["data_steps"]]
        for path, text in entry["files"].items():
            lines += ["", f"// ---- {path}", text.rstrip("\n")]
    return "\n".join(lines)


@click.command("graph")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True)
@click.option("--registry", "registry", metavar="LOCATION", default=None,
              help="Show how many deployments sit on each version, from this registry (a "
              "SQLite file or a postgresql:// URL; default: the configured registry, when "
              "it exists).")
@click.option("--no-registry", is_flag=True, help="Do not read any registry.")
@VERSIONS
@JSON
def graph_cmd(fmt: str, registry: str | None, no_registry: bool, versions_dir: Path | None,
              as_json: bool) -> None:
    """The version graph (Mermaid or DOT), heads marked."""

    if registry is not None and no_registry:
        raise click.UsageError("--registry and --no-registry exclude each other")
    ws = versions_workspace(versions_dir)
    graph = ws.graph
    counts = None if no_registry else verbs.version_counts(ws, registry)
    if as_json:
        dump({
            "versions": [{"id": v, "parents": graph.parents(v), "head": v in graph.heads(),
                          **({"deployments": counts.get(v, 0)} if counts is not None else {})}
                         for v in graph.topological_order()],
            "heads": graph.heads(),
        })
        return
    click.echo(verbs.graph(ws, fmt, counts))


commands: list[click.Command] = [diff_cmd, plan_cmd, graph_cmd]
