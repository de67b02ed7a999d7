"""``byod registry check`` and ``byod registry upgrade``: thin wrappers over
``engine.commands.registry_file``.

Exit codes: ``check`` 0 the registry is sound, 1 it is damaged or missing (each problem
printed); ``upgrade`` 0 the schema is (now) this engine's, 1 with ``--check`` when it is
behind, or when it is newer than this engine or missing (the error printed)."""

from __future__ import annotations

import click

from engine.cli.output import dump
from engine.cli.registry_copy_cmd import copy_cmd
from engine.commands import registry_file as verbs
from engine.commands.workspace import Workspace

__all__ = ["commands"]


@click.group("registry")
def registry() -> None:
    """The registry itself: `check` verifies it, `upgrade` migrates its schema, `copy` moves it.

    `check`: pages, references, every stored record. `upgrade`: Alembic revisions to this
    engine's schema (`--check` only reports). `copy --to LOCATION`: another store (SQLite,
    PostgreSQL, convex:main), verified by counts and checksums."""


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
                   f"(schema version {result['schema_version']}, "
                   f"revision {result['revision']})")
    else:
        for problem in result["problems"]:
            click.echo(f"registry {result['registry']}: {problem}", err=True)
        if result["exists"] and not any("reconcile --apply" in p for p in result["problems"]):
            click.echo(_repair_hint(str(result["registry"])), err=True)
    if not result["ok"]:
        raise SystemExit(1)


@registry.command("upgrade")
@click.option("--check", "check", is_flag=True,
              help="Only say whether the schema is behind (exit 1 when it is); change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def upgrade_cmd(check: bool, as_json: bool) -> None:
    """Bring the registry's schema to this engine's (a shared PostgreSQL registry needs it)."""

    with Workspace.open() as ws:
        result = verbs.upgrade_registry(ws, check=check)
    if as_json:
        dump(result)
    else:
        click.echo(_upgrade_line(result))
    if check and not result["up_to_date"]:
        raise SystemExit(1)


def _repair_hint(registry: str) -> str:
    """What to do about the problems found: a SQLite file can be set aside and rebuilt; a
    server registry may only be out of reach (its error says why), or needs its backup."""

    from engine.registry.open import registry_kind

    if registry_kind(registry) == "sqlite":
        return ("restore a backup, or move the file aside and run `byod reconcile --apply` "
                "to rebuild it from the deployments")
    return ("if the registry cannot be reached, check the server and the credentials; if it "
            "is damaged, restore it from a backup, then run `byod reconcile` to compare it "
            "with the deployments")


def _upgrade_line(result: dict[str, object]) -> str:
    where, before, head = result["registry"], result["from"], result["to"]
    if result["up_to_date"]:
        return f"registry {where}: schema {head} is this engine's, nothing to do"
    if result["check"]:
        found = "empty" if before is None else f"schema {before}"
        return (f"registry {where}: {found}, this engine needs schema {head}: "
                "run `byod registry upgrade`")
    if before is None:
        return f"registry {where}: created schema {head}"
    return f"registry {where}: upgraded schema {before} -> {head}"


registry.add_command(copy_cmd)  # `byod registry copy`, in its own module

commands: list[click.Command] = [registry]
