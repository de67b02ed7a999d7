"""``byod registry copy --to LOCATION``: a thin wrapper over
``engine.commands.registry_file.copy_registry``.

Exit codes: 0 copied and verified; 1 refused (same store, a store in use, a non-empty
target, another schema) or a table whose count or checksum differs after the copy (each
named). Locations are printed redacted, ciphertexts never.
"""

from __future__ import annotations

import click

from engine.cli.output import dump, info
from engine.commands import registry_file as verbs
from engine.commands.workspace import Workspace

__all__ = ["copy_cmd"]


@click.command("copy")
@click.option("--to", "to", required=True, metavar="LOCATION",
              help="The target store: a SQLite path, postgresql://… or convex:main.")
@click.option("--force", is_flag=True,
              help="Empty a target that holds rows, and copy while the source is in use.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def copy_cmd(to: str, force: bool, as_json: bool) -> None:
    """Copy the registry to another store, then verify counts and checksums per table."""

    with Workspace.open() as ws:
        result = verbs.copy_registry(
            ws, to, force=force, progress=lambda table, rows: info(f"copied {table}: {rows} rows"))
    if as_json:
        dump(result)
    else:
        from engine.cli import tables  # loaded when a table is drawn, not for --help

        tables.render_table(
            ("table", "source rows", "target rows", "source checksum", "target checksum",
             "verified"),
            [(t["table"], t["source_rows"], t["target_rows"], t["source_checksum"][:16],
              t["target_checksum"][:16], "ok" if t["ok"] else "MISMATCH")
             for t in result["tables"]],
            title=f"{result['source']} → {result['target']}")
        if result["ok"]:
            click.echo(f"copied {result['rows']} rows in {result['seconds']:.2f} s; every "
                       "table verified (counts and sha256 checksums match)")
    if not result["ok"]:
        for t in result["tables"]:
            if not t["ok"]:
                detail = t["problem"] or (
                    f"{t['source_rows']} rows on the source, {t['target_rows']} on the "
                    "target" if t["source_rows"] != t["target_rows"] else
                    "the checksums differ")
                click.echo(f"table {t['table']}: {detail}", err=True)
        click.echo(f"the copy does not match the source in: {', '.join(result['mismatches'])}",
                   err=True)
        raise SystemExit(1)
