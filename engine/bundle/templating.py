"""Where the engine's templates live, and the one Jinja set-up its generated code uses.

The bundle compiler and the data-step renderer both generate TypeScript from templates;
they share the directory and the rendering rules so generated code reads the same way."""

from __future__ import annotations

from pathlib import Path

import jinja2

from engine import assets

__all__ = ["code_environment", "templates_dir"]


def templates_dir() -> Path:
    """The engine's templates: packaged with an installed wheel, else ``templates/`` at the
    root of the checkout (see ``engine.assets``)."""

    return assets.templates_dir()


def code_environment(directory: Path) -> jinja2.Environment:
    """Jinja for generated code: an undefined name fails the render, block tags leave no
    stray whitespace, and nothing is HTML-escaped (the output is TypeScript)."""

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
