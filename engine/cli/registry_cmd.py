"""``byod registry check``: a thin wrapper over ``engine.commands.registry_file``.

Exit codes: 0 the registry is sound; 1 it is damaged or missing (each problem printed)."""

from __future__ import annotations

import click

from engine.cli.output import dump
from engine.commands import registry_file as verbs
from engine.commands.workspace import Workspace

__all__ = ["commands"]


@click.group("registry")
def registry() -> None:
    """The registry file itself: `registry check` verifies it (pages, references, records)."""


@registry.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check_cmd(as_json: bool) -> None:
    """Verify the registry: SQLite's page check, references, every stored document."""

    with Workspace.open() as ws:
        result = verbs.check_registry(ws)
    if as_json:
        dump(result)
    elif result["ok"]:
        click.echo(f"registry {result['registry']}: sound "
                   f"(schema version {result['schema_version']})")
    else:
        for problem in result["problems"]:
            click.echo(f"registry {result['registry']}: {problem}", err=True)
        if result["exists"] and not any("reconcile --apply" in p for p in result["problems"]):
            click.echo("restore a backup, or move the file aside and run "
                       "`byod reconcile --apply` to rebuild it from the deployments", err=True)
    if not result["ok"]:
        raise SystemExit(1)


commands: list[click.Command] = [registry]
