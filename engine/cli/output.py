"""How every command prints: one JSON encoder, one time format, one set of verbosity flags.

* Times are ISO 8601 in UTC (``2026-11-29T15:10:00Z``), in text and in ``--json`` alike: a
  key ending in ``_at``, or named ``at`` or ``last_connection_test``, holding epoch seconds
  is rendered that way wherever it sits in the output.
* ``--json`` output is ``dump(data)``: sorted keys, two-space indent; its shape per command
  is described by a JSON Schema in ``engine/cli/schemas/`` (version 1: fields are only ever
  added within a version).
* ``--quiet`` silences progress and notes on stderr (results and errors still print);
  ``--verbose`` shows the engine's own log lines; ``--no-color`` (or ``NO_COLOR``) turns
  colour off.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

__all__ = ["Verbosity", "dump", "info", "iso", "schema_for", "schema_names", "settings",
           "to_json"]

_TIME_KEYS = frozenset({"at", "last_connection_test"})


@dataclass
class Verbosity:
    quiet: bool = False
    verbose: bool = False
    color: bool = True


settings = Verbosity()


def configure(*, quiet: bool, verbose: bool, no_color: bool) -> None:
    """Set from the group's options, once per invocation."""

    settings.quiet, settings.verbose = quiet, verbose
    settings.color = not (no_color or bool(os.environ.get("NO_COLOR")))
    if not settings.color:
        os.environ["NO_COLOR"] = "1"  # rich and other renderers honour it
    if verbose:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        engine_log = logging.getLogger("engine")
        engine_log.addHandler(handler)
        engine_log.setLevel(logging.DEBUG)


def iso(ts: float | None) -> str:
    """Epoch seconds as ISO 8601 UTC; ``-`` for none."""

    if not ts:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _is_time_key(key: str) -> bool:
    return key in _TIME_KEYS or key.endswith("_at")


def to_json(data: Any) -> Any:
    """``data`` with every epoch time under a time key as ISO 8601 UTC."""

    if isinstance(data, dict):
        return {k: ((iso(v) if v else None) if _is_time_key(str(k))
                    and isinstance(v, (int, float)) and not isinstance(v, bool)
                    else to_json(v))
                for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [to_json(v) for v in data]
    return data


def dump(data: Any, *, indent: int | None = 2) -> None:
    """Print ``data`` as the command's ``--json`` output."""

    click.echo(json.dumps(to_json(data), indent=indent, sort_keys=True, default=str))


def info(message: str) -> None:
    """A progress line or a note on stderr, unless ``--quiet``."""

    if not settings.quiet:
        click.echo(message, err=True, color=settings.color)


_SCHEMAS = Path(__file__).resolve().parent / "schemas"


def schema_names(version: int = 1) -> list[str]:
    """The commands whose ``--json`` output has a schema of ``version``, sorted."""

    suffix = f".v{version}.json"
    return sorted(p.name[:-len(suffix)] for p in _SCHEMAS.glob(f"*{suffix}"))


def schema_for(name: str, version: int = 1) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one command's ``--json`` output, e.g.
    ``schema_for("plan-fleet")``; ``KeyError`` for a name without one."""

    path = _SCHEMAS / f"{name}.v{version}.json"
    if "/" in name or "\\" in name or not path.is_file():
        raise KeyError(f"no v{version} output schema for {name!r}; known: "
                       + ", ".join(schema_names(version)))
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded
