"""Options shared by the commands that read the version files (``plan``, ``diff``, ``graph``,
``new``, ``history``, ``show``): where the versions are, and JSON output."""

from __future__ import annotations

from pathlib import Path

import click

from engine.commands.workspace import Workspace

__all__ = ["JSON", "VERSIONS", "versions_workspace"]

VERSIONS = click.option("--versions", "versions_dir", default=None,
                        type=click.Path(path_type=Path, file_okay=False),
                        help="Directory of version files (default: schema_versions).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def versions_workspace(versions_dir: Path | None) -> Workspace:
    """The configured workspace, reading versions from ``--versions`` when given."""

    return Workspace.open().with_versions_dir(versions_dir)
