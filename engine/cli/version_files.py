"""``byod new``, ``byod history`` and ``byod show``: authoring version files.

Every version argument takes an id (``0003_content_package``), a number (``3``) or
``head``; an unknown one answers with the closest known id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from engine.cli.output import dump
from engine.cli.version_options import JSON, VERSIONS, versions_workspace
from engine.commands import version_files as verbs

__all__ = ["commands", "history_cmd", "new_cmd", "show_cmd"]


def _changes(summary: dict[str, Any]) -> str:
    parts = []
    for parent, counts in summary.items():
        kinds = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in
                          ("safe", "data_step", "destructive", "impossible") if counts.get(k))
        parts.append(f"from {parent}: {kinds or 'no change'}"
                     + (f" ({counts['blocking']} blocking)" if counts["blocking"] else ""))
    return "; ".join(parts) or "first version"


@click.command("new")
@click.argument("name")
@click.option("--description", "-m", default="", help="The new version's description.")
@click.option("--parent", default=None,
              help="Start from this version instead of the head (needed with several heads).")
@VERSIONS
def new_cmd(name: str, description: str, parent: str | None, versions_dir: Path | None) -> None:
    """Start version NAME: the next number, the head as parent, the head's schema, no hints."""

    path = verbs.new_version(versions_workspace(versions_dir), name, description=description,
                             parent=parent)
    click.echo(f"created {path}: edit its tables, then `byod diff` to see the hints it needs")


@click.command("history")
@VERSIONS
@JSON
def history_cmd(versions_dir: Path | None, as_json: bool) -> None:
    """Every version, oldest first, with what changed from its parents."""

    rows = verbs.history(versions_workspace(versions_dir))
    if as_json:
        dump({"versions": rows})
        return
    for row in rows:
        head = " (head)" if row["head"] else ""
        click.echo(f"{row['id']}{head}: {row['description'] or '(no description)'}")
        click.echo(f"    {_changes(row['from_parents'])}")


@click.command("show")
@click.argument("version")
@VERSIONS
@JSON
def show_cmd(version: str, versions_dir: Path | None, as_json: bool) -> None:
    """One VERSION (an id, a number or `head`): graph, tables, hints, bundle, functions."""

    info = verbs.show_version(versions_workspace(versions_dir), version)
    if as_json:
        dump(info)
        return
    click.echo(f"{info['id']}{' (head)' if info['head'] else ''}  {info['file'] or ''}")
    click.echo(f"  {info['description'] or '(no description)'}")
    click.echo(f"  parents: {', '.join(info['parents']) or '-'}; "
               f"children: {', '.join(info['children']) or '-'}")
    click.echo(f"  changes: {_changes(info['from_parents'])}")
    click.echo(f"  bundle fingerprint: {info['fingerprint'][:16]}")
    for name, table in info["tables"].items():
        click.echo(f"  table {name} ({table['location']}): {table['fields']} field(s), "
                   f"{table['indexes']} index(es)")
    for hint in info["migrations"]:
        target = hint.get("field") or ""
        source = f"{hint['from_field']} -> " if hint.get("from_field") else ""
        click.echo(f"  hint {hint['op']} {hint['table']}"
                   + (f".{source}{target}" if target else ""))
    for key, values in info["consent"].items():
        if values:
            click.echo(f"  consent {key}: {', '.join(values)}")
    functions = info["functions"]
    if functions is not None:
        pinned = " (pinned)" if functions["pinned"] else ""
        click.echo(f"  app functions{pinned} from {functions['source']}: "
                   f"{', '.join(functions['modules']) or 'none'}")


commands: list[click.Command] = [new_cmd, history_cmd, show_cmd]
