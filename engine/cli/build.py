"""CLI verbs (see engine.cli.main)."""

from __future__ import annotations

import click

commands: list[click.Command] = []
