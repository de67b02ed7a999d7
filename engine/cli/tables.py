"""Tables on stdout for the CLI: ``engine.render.render_table`` with the command's colour
setting (``--no-color`` / ``NO_COLOR``). A rich table on a terminal, plain two-space
columns (an empty cell as ``-``) on a pipe, so scripts can still read them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from engine import render
from engine.cli import output

__all__ = ["render_table"]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
                 title: str | None = None, indent: int = 0) -> None:
    """Print ``rows`` under ``headers`` (see ``engine.render.format_table``)."""

    render.render_table(headers, rows, title=title, indent=indent,
                        echo=lambda line: click.echo(line, color=output.settings.color),
                        color=output.settings.color)
