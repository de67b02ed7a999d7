"""``byod check``: load every version file, run the validation rules, report.

One line per problem (``Problem.render()``), then a summary line. Exit 1 when any error
was found (or any warning with ``--strict``, and the summary then says so); warnings alone
pass. The rules include planning every edge of the graph (BYOD-E164). Warnings a version
file acknowledges (its ``lint`` key) are not printed; the summary counts them
(``(16 acknowledged)``) and ``--json`` lists them under ``acknowledged_problems``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from engine.cli.output import dump
from engine.commands import authoring as verbs
from engine.commands.workspace import Workspace
from engine.errors import Problem

__all__ = ["commands"]


def _summary(problems: list[Problem], versions: int, strict: bool = False,
             acknowledged: int = 0) -> str:
    """The last line; it says ``failed`` whenever the exit code is 1, and why when only
    ``--strict`` warnings caused it. Acknowledged warnings are counted apart and never fail
    the check."""

    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    state = "failed" if errors or (strict and warnings) else "ok"
    line = (f"check {state}: {versions} version(s), {errors} error(s), "
            f"{warnings} warning(s)")
    if acknowledged:
        line += f" ({acknowledged} acknowledged)"
    if strict and warnings and not errors:
        line += " (--strict: warnings fail the check)"
    return line


@click.command("check")
@click.option("--versions", "versions_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Directory of version files (default: schema_versions).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.option("--deep", is_flag=True,
              help="Also type-check every bundle and compare with the real convex export.")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
def check(versions_dir: Path | None, as_json: bool, deep: bool, strict: bool) -> None:
    """Validate every schema version file and the version graph."""

    result = verbs.check(Workspace.open().with_versions_dir(versions_dir), deep=deep)
    versions, problems = result.versions, list(result.problems)
    errors = result.errors
    failed = result.failed(strict)
    if as_json:
        report: dict[str, Any] = {
            "ok": not failed,
            "versions": [v.id for v in versions],
            "errors": errors,
            "warnings": len(problems) - errors,
            "acknowledged": len(result.acknowledged),
            "problems": [dict(p.__dict__) for p in problems],
            "acknowledged_problems": [dict(p.__dict__, reason=reason)
                                      for p, reason in result.acknowledged],
        }
        dump(report)
    else:
        for p in problems:
            click.echo(p.render())
        click.echo(_summary(problems, len(versions), strict, len(result.acknowledged)))
    if failed:
        click.get_current_context().exit(1)


commands: list[click.Command] = [check]
