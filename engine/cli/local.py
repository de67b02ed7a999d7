"""``byod local up|down|status``: local Convex-compatible deployments in the background.

Admin keys are never printed: they stay in ``<dir>/secrets.json`` (mode 0600).
(``byod deploy`` lives in this module too.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from engine.cli.output import dump
from engine.errors import LocalFleetError
from engine.local.launcher import LocalFleet

DEFAULT_DIR = Path(".byod/local")

_dir_option = click.option(
    "--dir", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
    show_default=True, help="Data directory of the fleet (documents, code, keys file).",
)


def _echo_fleet(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        dump(summary)
        return
    click.echo(f"{summary['status']}: {len(summary['deployments'])} local deployment(s) in {summary['dir']}")
    if summary["deployments"]:
        from engine.cli import tables  # loaded when a table is drawn, not for --help

        live = any("pushes" in dep for dep in summary["deployments"])
        headers = ("name", "url", "fault", "pushes") if live else ("name", "url")
        rows = [(dep["name"], dep["url"], dep.get("fault"), dep.get("pushes"))[:len(headers)]
                for dep in summary["deployments"]]
        tables.render_table(headers, rows)
    if summary["deployments"]:
        click.echo(f"admin keys: {summary['keys_file']} (readable by you only)")


def _summary(fleet: LocalFleet, status: str, *, live: bool = True) -> dict[str, Any]:
    rows: list[dict[str, Any]]
    if live:
        rows = [
            {"name": d["name"], "url": d["url"], "fault": d["fault"]["mode"], "pushes": d["pushes"]}
            for d in fleet.status()
        ]
    else:
        rows = [{"name": d.name, "url": d.url} for d in fleet.deployments]
    return {
        "status": status,
        "dir": str(fleet.data_dir),
        "pid": fleet.pid,
        "keys_file": str(fleet.data_dir / "secrets.json"),
        "deployments": rows,
    }


@click.group("local")
def local() -> None:
    """Local Convex-compatible deployments (for tests and the demo)."""


@local.command("up")
@click.option("--count", type=click.IntRange(min=0), default=2, show_default=True,
              help="How many deployments the fleet should have.")
@_dir_option
@click.option("--base-port", type=click.IntRange(1024, 65000), default=None,
              help="Control port; deployments use the ports after it (default: free ports).")
@click.option("--max-writes", type=click.IntRange(min=1), default=None,
              help="Per-transaction document write limit (Convex: 16000).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def up(count: int, data_dir: Path, base_port: int | None, max_writes: int | None,
       as_json: bool) -> None:
    """Start local deployments in the background (restarting any kept in --dir)."""

    fleet = LocalFleet.start(count, data_dir, base_port=base_port, max_writes=max_writes)
    _echo_fleet(_summary(fleet, "running"), as_json)


@local.command("status")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(data_dir: Path, as_json: bool) -> None:
    """Show the fleet in --dir and each deployment's URL, fault mode and push count."""

    try:
        fleet = LocalFleet.attach(data_dir)
    except LocalFleetError:
        info = LocalFleet.recorded(data_dir)
        summary = {
            "status": "stopped",
            "dir": str(data_dir.resolve()),
            "pid": None,
            "keys_file": str(data_dir.resolve() / "secrets.json"),
            "deployments": [{"name": d["name"], "url": d["url"]} for d in info.get("deployments", [])],
        }
        _echo_fleet(summary, as_json)
        return
    _echo_fleet(_summary(fleet, "running"), as_json)


@local.command("down")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def down(data_dir: Path, as_json: bool) -> None:
    """Stop the fleet in --dir (documents and code stay on disk for the next `up`)."""

    try:
        fleet = LocalFleet.attach(data_dir)
    except LocalFleetError:
        result = {"status": "not running", "dir": str(data_dir.resolve())}
        if as_json:
            dump(result)
        else:
            click.echo(f"no local fleet is running in {result['dir']}")
        return
    summary = _summary(fleet, "stopped", live=False)
    fleet.stop()
    _echo_fleet(summary, as_json)


commands: list[click.Command] = [local]
