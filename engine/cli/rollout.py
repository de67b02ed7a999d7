"""``byod rollout``: bring every connected deployment to a version, with progress.

A thin click wrapper over ``engine.commands.fleet`` (``rollout``, ``list_rollouts``,
``write_reports``) on a ``Workspace``: it renders the rollout's events (a rich progress bar
on a terminal, one plain line per event otherwise, nothing but the final JSON with
``--json``), prints the summary, and exits 1 when the budget halted the rollout or any
deployment failed. A dry run against a registry that does not exist yet creates none:
there is nothing to roll out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from engine.cli.output import dump
from engine.render import RolloutProgress

if TYPE_CHECKING:
    from engine.commands.workspace import Workspace
    from engine.fleet.rollout import RolloutOptions, RolloutReport
    from engine.fleet.rollout_state import Deployer

__all__ = ["commands"]


def _summary(report: Any, paths: tuple[Path, Path] | None) -> list[str]:
    counts = ", ".join(f"{n} {k}" for k, n in report.counts.items()) or "nothing to do"
    refreshes = sum(1 for r in report.rows if r.get("action") == "refresh")
    if refreshes:
        counts += f"; {refreshes} of them refresh{'es' if refreshes > 1 else ''}"
    lines = [f"rollout {report.rollout_id} to {report.target}: {report.status} "
             f"({counts}) in {report.duration_s:.1f}s"]
    if report.halted_reason:
        lines.append(f"halted: {report.halted_reason}; resume with "
                     f"`byod rollout --resume {report.rollout_id}`")
    for row in report.rows:
        if row["status"] == "failed":
            lines.append(f"  failed {row['user_id']}: {row.get('error_type')}: {row.get('error')}")
    if report.status == "dry_run":
        for source, plan in report.plans.items():
            n = sum(1 for r in report.rows if r.get("before") == source)
            lines.append(f"  from {source} ({n} deployment(s)): "
                         + " -> ".join(plan["path"]) + f", {plan['deploys']} deploy(s), "
                         + f"{len(plan['steps'])} step(s)")
            for step in plan["steps"]:
                lines.append(f"      {step.get('kind')}: {step.get('id')}")
        if report.refresh:
            refresh, plan = report.refresh, report.refresh["plan"]
            lines.append(f"  refresh {refresh['version']} ({len(refresh['deployments'])} "
                         f"deployment(s), stale: recorded with another fingerprint; "
                         f"{refresh['version']} now compiles to {refresh['fingerprint'][:12]}): "
                         f"{plan['deploys']} deploy(s), {len(plan['steps'])} step(s), "
                         "no data steps")
            for step in plan["steps"]:
                lines.append(f"      {step.get('kind')}: {step.get('id')}")
        for source, err in report.plan_errors.items():
            lines.append(f"  from {source}: cannot plan: {err.get('message')}")
    if paths:
        lines.append(f"reports: {paths[0]} {paths[1]}")
        previous = _previous_report(paths[0])
        if previous:
            lines.append(f"previous report: {paths[1].parent / previous['html']}")
    return lines


def _previous_report(json_path: Path) -> dict[str, str] | None:
    """The previous run's report names, as the written JSON report records them."""

    try:
        previous = json.loads(json_path.read_text(encoding="utf-8")).get("previous_report")
    except (OSError, ValueError):
        return None
    return previous if isinstance(previous, dict) else None


def _print_rollouts(rows: list[dict[str, Any]], as_json: bool) -> None:
    """Recent rollouts, newest first (so `--resume ID` can be found)."""

    if as_json:
        dump(rows)
        return
    if not rows:
        click.echo("no rollouts yet")
    for row in rows:
        counts_text = ", ".join(f"{n} {s}" for s, n in sorted(row["counts"].items()))
        click.echo(f"{row['rollout_id']}  to {row['target']}  {row['status']}  ({counts_text})")


@click.command("rollout")
@click.option("--to", "target", default=None, help="Target version (id, number or 'head').")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing anywhere.")
@click.option("--canary", type=click.IntRange(min=0), default=1, show_default=True,
              help="Deployments to migrate first; any failure among them halts.")
@click.option("--waves", default="10%,50%,100%", show_default=True,
              help="Cumulative waves after the canary: percentages or counts.")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-failures", default="10%", show_default=True,
              help="Failures tolerated before halting: a count or a percentage.")
@click.option("--resume", "resume", default=None, metavar="ID",
              help="Continue an interrupted or halted rollout.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Where to write the JSON and HTML reports "
              "(default: .byod/reports beside the registry).")
@click.option("--versions", "versions_dir", type=click.Path(path_type=Path), default=None,
              help="Schema versions directory (default from the config).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Cap on documents per data-step page (default: sized from the schema).")
@click.option("--deployer", type=click.Choice(["push", "cli"]), default="push",
              show_default=True,
              help="push: build each bundle's push request once with the Convex CLI and "
              "send it to every deployment over HTTP; cli: run the Convex CLI per deploy.")
@click.option("--allow-destructive", is_flag=True,
              help="Plan down paths that delete data (rows or field values); refused "
              "without it. Back the data up first.")
@click.option("--only", "only", multiple=True, metavar="USER",
              help="Roll out to this user only (repeat for more).")
@click.option("--exclude", "exclude", multiple=True, metavar="USER",
              help="Leave this user out (repeat for more).")
@click.option("--from-file", "from_file", type=click.Path(path_type=Path, dir_okay=False,
                                                          exists=True),
              default=None, help="Roll out to the users listed in FILE (one id a line, "
              "'#' starts a comment); like --only.")
@click.option("--for-workers", "for_workers", is_flag=True,
              help="Plan and save the rollout open for `byod worker` processes, print its "
              "id and exit without working it (with --resume: open a halted one again).")
@click.option("--lease-ttl", "lease_ttl", type=click.FloatRange(min=0.1), default=120.0,
              show_default=True, help="Seconds a deployment's lease (and a worker's claim) "
              "lasts without renewal; a dead worker's deployments are taken over after it.")
@click.option("--list", "list_only", is_flag=True,
              help="List recent rollouts (id, target, state, counts) and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def rollout_cmd(target: str | None, dry_run: bool, canary: int, waves: str, concurrency: int,
                max_failures: str, resume: str | None, report_dir: Path | None,
                versions_dir: Path | None, batch_size: int | None, deployer: str,
                allow_destructive: bool, only: tuple[str, ...], exclude: tuple[str, ...],
                from_file: Path | None, for_workers: bool, lease_ttl: float, list_only: bool,
                as_json: bool) -> None:
    """Roll every connected deployment out to a version: canary, waves, failure budget."""

    from engine.commands import fleet as verbs
    from engine.commands.workspace import Workspace
    from engine.fleet.rollout import RolloutOptions

    if list_only:
        with Workspace.open() as ws:
            _print_rollouts(verbs.list_rollouts(ws, limit=50), as_json)
        return
    if not target and not resume:
        raise click.UsageError("name the target with --to VERSION (or 'head'), "
                               "or continue one with --resume ID")
    only = only + (_read_user_file(from_file) if from_file is not None else ())
    if only and exclude:
        raise click.UsageError("--only/--from-file and --exclude cannot be used together")
    if resume and (only or exclude):
        raise click.UsageError("--resume keeps the users the rollout was started with; "
                               "drop --only/--exclude/--from-file")
    options = RolloutOptions(canary=canary, waves=waves, concurrency=concurrency,
                             max_failures=max_failures, dry_run=dry_run, max_batch=batch_size,
                             deployer=cast("Deployer", deployer),
                             allow_destructive=allow_destructive, only=only, exclude=exclude,
                             lease_ttl_s=lease_ttl)
    with Workspace.open(deployer=options.deployer).with_versions_dir(versions_dir) as ws:
        _ = ws.graph  # the versions load (and fail) before anything else
        if dry_run and _no_registry_file(ws.config):
            _no_registry(ws, target, as_json)
            return
        if not dry_run:
            _ = ws.vault  # no key: fail before any progress is drawn
        if for_workers and not dry_run:
            report = verbs.rollout(ws, target, options, resume=resume, for_workers=True)
            _opened_for_workers(report, as_json)
            return
        report = _run(ws, target, options, resume, as_json)
        paths = None if dry_run else verbs.write_reports(ws, report, report_dir)
    if as_json:
        data = report.to_dict()
        if paths:
            data["reports"] = {"json": str(paths[0]), "html": str(paths[1]),
                               "previous": _previous_report(paths[0])}
        dump(data)
    else:
        for line in _summary(report, paths):
            click.echo(line)
    if report.status == "halted" or report.failed:
        raise SystemExit(1)


def _opened_for_workers(report: "RolloutReport", as_json: bool) -> None:
    """A rollout saved open for workers: its id (alone on stdout, for scripts), and how
    to work it."""

    if as_json:
        dump(report.to_dict())
        return
    from engine.cli import output

    click.echo(report.rollout_id)
    output.info(f"rollout {report.rollout_id} to {report.target}: open for workers "
                f"({len(report.rows)} deployment(s) in {len(report.waves)} wave(s)); run "
                f"`byod worker --rollout {report.rollout_id}` on each machine, "
                "`byod rollout --list` shows its progress")


def _read_user_file(path: Path) -> tuple[str, ...]:
    """User ids from a file: one a line, blank lines and ``#`` comments ignored."""

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--from-file")
    ids = tuple(line.split("#", 1)[0].strip() for line in text.splitlines())
    ids = tuple(i for i in ids if i)
    if not ids:
        raise click.BadParameter(f"{path} names no user", param_hint="--from-file")
    return ids


def _run(ws: "Workspace", target: str | None, options: "RolloutOptions", resume: str | None,
         as_json: bool) -> "RolloutReport":
    """The rollout, its events rendered: nothing with ``--json``, a progress bar on a
    terminal, plain lines otherwise."""

    from engine.commands import fleet as verbs

    if as_json:
        return verbs.rollout(ws, target, options, resume=resume)
    from engine.cli import output  # loaded when a rollout runs, not for --help

    progress = RolloutProgress(output.info, live=sys.stderr.isatty(),
                               quiet=output.settings.quiet, color=output.settings.color)
    with progress:
        return verbs.rollout(ws, target, options, resume=resume, emit=progress)


def _no_registry_file(config: Any) -> bool:
    """The configured SQLite registry does not exist yet (a URL-like path is left to
    ``open_store``, which explains what it supports)."""

    from engine.config import is_registry_url

    text = str(config.registry_path)
    return not is_registry_url(text) and "://" not in text and not Path(text).exists()


def _no_registry(ws: "Workspace", target: str | None, as_json: bool) -> None:
    """A dry run without a registry: nothing is connected, so the plan is empty (and no
    registry file is created by looking)."""

    from engine.fleet.rollout import RolloutReport

    resolved = ws.graph.resolve(target).id if target else None
    message = f"no registry at {ws.config.registry_path}: nothing to roll out"
    report = RolloutReport(rollout_id="-", target=resolved or "-", status="dry_run",
                           options={}, waves=[], rows=[])
    if as_json:
        data = report.to_dict()
        data["message"] = message
        dump(data)
    else:
        click.echo(message)


commands: list[click.Command] = [rollout_cmd]
