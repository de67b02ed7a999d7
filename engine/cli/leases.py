"""``byod leases`` (list) and ``byod leases break ID --yes``: thin wrappers over
``engine.commands.leases``.

Exit codes: 0 ok; 1 an unknown lease; 3 ``break`` without ``--yes``.
"""

from __future__ import annotations

import click

from engine.cli.output import dump, iso
from engine.commands import leases as verbs
from engine.commands.workspace import Workspace

__all__ = ["commands"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group("leases", invoke_without_command=True)
@_json_option
@click.pass_context
def leases(ctx: click.Context, as_json: bool) -> None:
    """Who holds which lease (a user's deployment, or rollout:ID) and until when."""

    if ctx.invoked_subcommand is None:
        _show(as_json)


@leases.command("list")
@_json_option
def list_cmd(as_json: bool) -> None:
    """Every lease with its holder process (the same as `byod leases`)."""

    _show(as_json)


def _show(as_json: bool) -> None:
    with Workspace.open() as ws:
        rows = verbs.list_leases(ws)
    if as_json:
        dump(rows)
        return
    if not rows:
        click.echo("no leases")
        return
    from engine.cli import tables  # loaded when a table is drawn, not for --help

    tables.render_table(
        ("id", "holder", "state", "process", "started", "renewed", "expires"),
        [(r["id"], r["holder"], r["state"].replace("_", " "),
          f"{r['pid']} on {r['host']}" if r["pid"] is not None else "-",
          iso(r["process_started_at"]), iso(r["renewed_at"]), iso(r["expires_at"]))
         for r in rows])


@leases.command("break")
@click.argument("lease_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Confirm ending the lease.")
@click.option("--reason", default="", help="Recorded in the audit log.")
@_json_option
def break_cmd(lease_id: str, yes: bool, reason: str, as_json: bool) -> None:
    """End lease ID (audited): a command refused because of it can run at once."""

    with Workspace.open() as ws:
        result = verbs.break_lease(ws, lease_id, confirm=yes, reason=reason)
    if as_json:
        dump(result)
        return
    click.echo(f"broke lease {lease_id} (held by {result['holder']}, {result['state']})")


commands: list[click.Command] = [leases]
