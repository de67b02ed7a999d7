"""``byod``: a thin click wrapper over ``engine.commands``-style functions, one per verb.

Each module in ``_COMMAND_MODULES`` owns a few verbs and exposes ``commands``, a list of
click commands. Only ``ByodError`` is caught here; it is printed (already free of secrets)
and turned into its documented exit code: 0 ok, 1 a domain error or failed check,
2 a usage error (click's own).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import click

from engine.errors import ByodError

_COMMAND_MODULES = (
    "check",      # check
    "build",      # build, toolchain
    "planning",   # diff, plan, graph
    "local",      # local up/down/status
    "deploy_cmd",  # deploy
    "fleet",      # keys, connect, status, test-connection
    "rollout",    # rollout
    "ops",        # health, monitor, disconnect, demo
    "reconcile",  # reconcile
)


class _Group(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["byod.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ByodError as exc:
            as_json = ctx.meta.get("byod.json", False)
            if as_json:
                click.echo(json.dumps(exc.to_dict(), indent=2, default=str))
            else:
                click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="byod-engine", prog_name="byod")
def cli() -> None:
    """byod: schema versions and fleet migrations for bring-your-own Convex deployments."""


for _name in _COMMAND_MODULES:
    _module = importlib.import_module(f"{__package__}.{_name}")
    for _command in getattr(_module, "commands", []):
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="byod")
