"""Reading a secret for ``--key-stdin``: exactly one key, from a pipe or a hidden prompt.

The whole of stdin is read; one trailing newline is dropped. More than one non-empty line is
refused (never silently cut to the first); no error ever repeats what was read."""

from __future__ import annotations

import sys
from typing import TextIO

import click

from engine.errors import InvalidCredentials

__all__ = ["read_key_stdin"]


def read_key_stdin(stream: TextIO | None = None) -> str:
    """The key on ``stream`` (default: stdin), stripped; ``""`` when there is none.

    Raises ``InvalidCredentials`` when stdin holds several non-empty lines."""

    stream = sys.stdin if stream is None else stream
    if stream is None:
        return ""
    if stream.isatty():
        return str(click.prompt("Deploy key (input hidden)", hide_input=True, err=True)).strip()
    text = stream.read()
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        raise InvalidCredentials(f"stdin holds {len(lines)} lines; pipe exactly the key "
                                 "(e.g. `printf '%s' \"$KEY\" | byod ... --key-stdin`)")
    return lines[0].strip() if lines else ""
