"""``byod init``: start a project from an existing Convex app."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.output import dump
from engine.commands.init_project import init

__all__ = ["commands", "init_cmd"]


@click.command("init")
@click.argument("app_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--into", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
              show_default=True, help="The project directory to write byod.toml and "
              "schema_versions/ into.")
@click.option("--location", type=click.Choice(["user", "main"]), default="user",
              show_default=True, help="Where the app's tables live (edit per table later).")
@click.option("--description", "-m", default="", help="Version 1's description.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def init_cmd(app_dir: Path, into: Path, location: str, description: str,
             as_json: bool) -> None:
    """Start a project from the Convex app APP_DIR: version 1 from its schema.ts."""

    into.mkdir(parents=True, exist_ok=True)
    result = init(app_dir, into=into, location=location, description=description)
    if as_json:
        dump(result)
        return
    click.echo(f"wrote {result['file']}: {len(result['tables'])} table(s) from the app's "
               f"schema ({location}-located)")
    click.echo(f"wrote {result['config']}: functions_dir = {result['functions_dir']} "
               f"({len(result['modules'])} module(s))")
    if result["ignore_written"]:
        click.echo(f"wrote {result['ignore_file']}: schema.ts and auth.config.ts stay out "
                   "of the bundles")
    click.echo("next: set each table's location, then `byod check` and `byod release`")


commands: list[click.Command] = [init_cmd]
