"""``byod release``: mark versions released and rewrite ``versions.lock``; ``byod check``
then fails when a released version's file changes."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.output import dump
from engine.commands import released as verbs
from engine.commands.workspace import Workspace

__all__ = ["commands", "release_cmd"]


@click.command("release")
@click.argument("versions", nargs=-1)
@click.option("--rehash", "rehash", multiple=True, metavar="VERSION",
              help="Re-lock a released VERSION whose file was changed on purpose "
              "(repeatable; `all`: every released version). Needs --yes.")
@click.option("--yes", is_flag=True, help="Confirm --rehash.")
@click.option("--versions", "versions_dir", default=None,
              type=click.Path(path_type=Path, file_okay=False),
              help="Directory of version files (default: schema_versions).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def release_cmd(versions: tuple[str, ...], rehash: tuple[str, ...], yes: bool,
                versions_dir: Path | None, as_json: bool) -> None:
    """Mark VERSIONS (default: the head) and their ancestors released; rewrite the lock."""

    ws = Workspace.open().with_versions_dir(versions_dir)
    result = verbs.release(ws, versions, rehash=rehash, confirm=yes)
    if as_json:
        dump(result)
        return
    for row in result["rehashed"]:
        click.echo(f"rehashed {row['id']} ({row['file']}): {row['old']} -> {row['new']}")
    for vid in result["released"]:
        click.echo(f"released {vid}")
    state = "written" if result["written"] else "unchanged"
    click.echo(f"{result['lock']} {state}: {len(result['versions'])} released version(s)")


commands: list[click.Command] = [release_cmd]
