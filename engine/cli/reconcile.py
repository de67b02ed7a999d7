"""``byod reconcile``: check the registry against the deployments' own records and, with
``--apply``, rebuild it from them (a thin wrapper over ``engine.fleet.reconcile``).

Exit codes: 0 the registry matches every deployment read; 1 differences remain (after
``--apply``: the ones that cannot be fixed, such as drift) or a deployment could not be
read. Nothing here prints a URL or a key: every text comes from the sanitized report.
"""

from __future__ import annotations

from typing import Any

import click

from engine.cli.output import dump

__all__ = ["commands"]


def _render(report: Any) -> None:
    from engine.cli import tables  # loaded when a table is drawn, not for --help

    if report.results:
        tables.render_table(("user", "state", "record", "version", "reason"),
                            [(r.user_id, r.state, r.kind if r.version else None, r.version,
                              r.reason) for r in report.results])
    for r in report.results:
        for f in r.findings:
            click.echo(f"{r.user_id}: {f.describe()}")
        for note in r.notes:
            click.echo(f"{r.user_id}: note: {note}")
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items()) or "no users"
    click.echo(f"{counts}; {len(report.fixed)} difference(s) fixed, "
               f"{len(report.remaining)} left")
    if not report.applied and any(f.fixable for _, f in report.remaining):
        click.echo("run again with --apply to rebuild these from the deployments' records")


@click.command("reconcile")
@click.option("--user", "users", multiple=True, help="Reconcile this user (repeatable).")
@click.option("--all", "all_users", is_flag=True,
              help="Reconcile every user with saved credentials (the default).")
@click.option("--apply", is_flag=True,
              help="Rebuild the registry from each deployment's own record where it is "
                   "trustworthy (drift is never fixed); every change is audited.")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 512))
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 300),
              help="Seconds a deployment may take to answer.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def reconcile_cmd(users: tuple[str, ...], all_users: bool, apply: bool, concurrency: int,
                  timeout: float, as_json: bool) -> None:
    """Compare the registry with every deployment's own record (version, fingerprint,
    deployment status, journal); with --apply, rebuild it from them."""

    from engine.commands import fleet
    from engine.commands.workspace import Workspace

    if users and all_users:
        raise click.UsageError("give --user or --all, not both")
    with Workspace.open() as ws:
        report = fleet.reconcile(ws, list(users) if users else "all", apply=apply,
                                 concurrency=concurrency, timeout=timeout)
    if as_json:
        dump(report.to_dict())
    else:
        _render(report)
    if not report.ok:
        raise SystemExit(1)


commands: list[click.Command] = [reconcile_cmd]
