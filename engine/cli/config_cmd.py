"""``byod config show``: the effective configuration and where each value came from.

Values come from the defaults, ``byod.toml`` (or the file ``BYOD_CONFIG`` names) and the
``BYOD_*`` variables, in that order of precedence; secrets are redacted (the webhook URL
shows only its scheme and host).
"""

from __future__ import annotations

import click

from engine.cli.output import dump
from engine.commands.settings import config_show
from engine.commands.workspace import Workspace

__all__ = ["commands", "config"]


@click.group("config")
def config() -> None:
    """Show the effective configuration and where each value comes from."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_show_cmd(as_json: bool) -> None:
    """Every setting with its value and source: default, file:line or env VAR. Secrets
    are redacted."""

    view = config_show(Workspace.open())
    if as_json:
        dump(view.to_dict())
        return
    click.echo(f"config file: {view.file if view.file else '(none: defaults)'}")
    width = max(len(e.key) for e in view.entries)
    shown = [(e.key, "-" if e.value is None else f"{e.value}{' (redacted)' if e.redacted else ''}",
              e.source) for e in view.entries]
    value_width = max(len(v) for _, v, _ in shown)
    for key, value, source in shown:
        click.echo(f"{key:<{width}}  {value:<{value_width}}  {source}")


commands: list[click.Command] = [config]
