"""``byod health``, ``byod monitor``, ``byod disconnect`` and ``byod demo``: thin wrappers
over ``engine.lifecycle.health``, ``engine.lifecycle.disconnect`` and ``engine.demo.run``.

Exit codes: 0 ok; 1 a domain error, an unhealthy deployment (health) or a failed demo.
Nothing here prints a URL or a key: every text comes from reports that are sanitized.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import click

from engine.cli.output import dump, info, iso
from engine.commands import fleet, users
from engine.commands.workspace import Workspace
from engine.config import load_config

__all__ = ["commands"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _render_health(report: Any) -> None:
    from engine.cli import tables  # loaded when a table is drawn, not for --help

    rows = []
    for r in report.results:
        latency = f"{r.latency_ms:.0f}ms" if r.latency_ms is not None else "-"
        status = r.status_before if r.status_before == r.status_after else \
            f"{r.status_before}->{r.status_after}"
        rows.append((r.user_id, r.state, r.version, latency, status, r.reason))
    if rows:
        tables.render_table(("user", "state", "version", "latency", "status", "reason"), rows)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items()) or "no deployments"
    click.echo(f"{counts}; {len(report.transitions)} transition(s)")
    for alert in report.alerts:
        by = "" if alert.channel == "webhook" else f" ({alert.channel})"
        click.echo(f"alert {alert.event}{by}: "
                   + ("delivered" if alert.delivered else f"NOT delivered ({alert.error})"))
    pending = _pending_note(report)
    if pending:
        click.echo(pending)


def _pending_note(report: Any) -> str:
    """One line on alerts still waiting for the webhook (empty when none)."""

    summary = report.pending_summary()
    if not summary["count"]:
        return ""
    return (f"{summary['count']} alert(s) waiting for the webhook since "
            f"{iso(summary['oldest_at'])}; next try {iso(summary['next_at'])}")


@click.command("health")
@click.option("--user", "users", multiple=True, help="Check this user (repeatable).")
@click.option("--all", "all_users", is_flag=True, help="Check every connected or failing user.")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 512))
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 300),
              help="Seconds a deployment may take to answer.")
@_json_option
def health_cmd(users: tuple[str, ...], all_users: bool, concurrency: int, timeout: float,
               as_json: bool) -> None:
    """Check deployments; move them connected <-> error; alert on transitions."""

    if users and all_users:
        raise click.UsageError("give --user or --all, not both")
    with Workspace.open() as ws:
        report = fleet.health(ws, list(users) if users else "all", concurrency=concurrency,
                              timeout=timeout)
    if as_json:
        dump(report.to_dict())
    else:
        _render_health(report)
    if not report.ok:
        raise SystemExit(1)


@click.command("monitor")
@click.option("--interval", required=True, type=click.FloatRange(1, 86_400),
              help="Seconds between runs; each run finishes within it.")
@click.option("--max-runs", type=click.IntRange(1), default=None,
              help="Stop after this many runs (default: run until interrupted).")
@click.option("--once", is_flag=True, help="One run (same as --max-runs 1).")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 512))
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 300))
@_json_option
def monitor_cmd(interval: float, max_runs: int | None, once: bool, concurrency: int,
                timeout: float, as_json: bool) -> None:
    """Run the health check every INTERVAL seconds (alerts go to the webhook and by email)."""

    def show(report: Any) -> None:
        if as_json:
            dump(report.to_dict(), indent=None)
            return
        stamp = iso(report.started_at)
        counts = ", ".join(f"{k} {v}" for k, v in report.counts.items()) or "no deployments"
        moved = "; ".join(f"{t['user_id']} {t['from']}->{t['to']}" for t in report.transitions)
        pending = _pending_note(report)
        click.echo(f"[{stamp}] {counts}" + (f"; {moved}" if moved else "")
                   + (f"; {pending}" if pending else ""))

    def standby(holder: str | None) -> None:
        note = (f"standing by: the monitor runs in {holder}" if holder
                else "standing by: another process runs the monitor")
        if as_json:
            dump({"standby": True, "holder": holder}, indent=None)
        else:
            click.echo(f"[{iso(time.time())}] {note}")

    try:
        with Workspace.open() as ws:
            fleet.monitor(ws, interval, max_runs=1 if once else max_runs,
                          concurrency=concurrency, timeout=timeout, on_report=show,
                          on_standby=standby)
    except KeyboardInterrupt:
        info("monitor stopped.")


@click.command("disconnect")
@click.option("--user", "user_id", required=True, help="The user to disconnect.")
@click.option("--data", "mode", required=True, type=click.Choice(["keep", "migrate", "delete"]),
              help="keep: leave the data there; migrate: copy it to main and verify; "
                   "delete: delete it from the user's deployment (needs --yes).")
@click.option("--yes", is_flag=True, help="Confirm deleting the user's data.")
@click.option("--abandon-migrate", is_flag=True,
              help="Give up an interrupted migrate for --data keep/delete (audited; what it "
                   "copied stays on main).")
@click.option("--page-size", default=200, show_default=True, type=click.IntRange(1, 8192))
@_json_option
def disconnect_cmd(user_id: str, mode: str, yes: bool, abandon_migrate: bool, page_size: int,
                   as_json: bool) -> None:
    """Disconnect a user's deployment (migrate reads BYOD_MAIN_URL / BYOD_MAIN_ADMIN_KEY)."""

    def progress(event: str, detail: dict[str, Any]) -> None:
        if as_json:
            return
        if event == "page":
            info(f"  copied {detail['table']}: {detail['copied']}")
        elif event == "deleted":
            info(f"  deleted {detail['table']}: {detail['deleted']}")

    with Workspace.open() as ws:
        report = users.disconnect(ws, user_id, mode, confirm=yes, page_size=page_size,
                                  hook=progress, abandon_migrate=abandon_migrate)
    if as_json:
        dump(report.to_dict())
        return
    click.echo(f"{user_id}: {report.status} ({report.message})")
    for name, t in report.tables.items():
        if mode == "migrate":
            click.echo(f"  {name}: {t['source_count']} -> {t['main_count']} on main, "
                       f"checksum {t['checksum']} {'verified' if t['verified'] else 'MISMATCH'}")
        else:
            click.echo(f"  {name}: {t['deleted']} deleted, "
                       f"{'verified empty' if t['verified'] else 'NOT EMPTY'}")
    for d in report.dangling:
        click.echo(f"  note: {d['table']} {d['id']}.{d['field']} referenced a missing "
                   f"{d['references']}; left out")


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where to put the demo (default: a new .byod/demo/<time>).")
@click.option("--users", default=4, show_default=True, type=click.IntRange(1, 50))
@click.option("--serve", "serve", is_flag=True,
              help="Then keep the deployments running and serve the settings pages, API "
                   "and dashboard over the demo until Ctrl-C.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port for --serve (default: serve.port; 0 takes any free port).")
@click.option("--registry", type=click.Choice(["sqlite", "convex:main"]), default="sqlite",
              show_default=True,
              help="Where the demo keeps its registry: a SQLite file in the demo directory, "
                   "or the demo's main deployment (convex:main).")
@_json_option
def demo_cmd(directory: Path | None, users: int, serve: bool, port: int | None,
             registry: str, as_json: bool) -> None:
    """Run the whole product on local deployments: connect, seed, roll out, check health,
    disconnect with migrate, write the report (--serve: then serve it until Ctrl-C)."""

    from engine.demo.run import DemoServe, run_demo

    if port is not None and not serve:
        raise click.UsageError("--port goes with --serve")
    if serve and as_json:
        raise click.UsageError("--serve runs until Ctrl-C: it does not go with --json")
    logging.getLogger("engine").setLevel(logging.ERROR)  # progress lines say it all
    echo = (lambda _line: None) if as_json else click.echo
    config = load_config()
    serving = None
    if serve:
        from engine.cli.demo_serve import serve_demo

        def serving(demo: DemoServe) -> None:
            serve_demo(demo, host="127.0.0.1",
                       port=config.serve.port if port is None else port)
    if serve and registry != "sqlite":
        raise click.UsageError("--serve goes with the SQLite registry (the service keeps its "
                               "tokens and jobs there)")
    result = run_demo(directory, users, echo=echo, config=config, serve=serving,
                      registry=registry)
    if as_json:
        dump(result.to_dict())
    if not result.ok:
        raise SystemExit(1)


commands: list[click.Command] = [health_cmd, monitor_cmd, disconnect_cmd, demo_cmd]
