"""Run the real ``byod`` command in its own process, optionally SIGKILLed by itself at a
named crash point (``BYOD_CRASH_AT``, see ``engine.lifecycle.crashpoints``), and compare
deployments' documents by content (ids and references left out)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

ENTRY = "from engine.cli.main import main; main()"


def byod(environ: dict[str, str], *args: str, crash: str | None = None,
         stdin: str | None = None, timeout: float = 240) -> tuple[int, str, float]:
    """(return code, output, seconds) of ``byod ARGS``; -9 when the crash point fired."""

    env = {k: v for k, v in os.environ.items() if not k.startswith("BYOD_")}
    env.update(environ)
    if crash:
        env["BYOD_CRASH_AT"] = crash
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", ENTRY, *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


KILLED = -signal.SIGKILL


def plain(doc: dict[str, Any]) -> str:
    """A document's content without ids or references: comparable across deployments."""

    return repr(sorted((k, v) for k, v in doc.items()
                       if k not in ("_id", "_creationTime")
                       and (not k.endswith("Id") or k == "userId")))


def owned(docs: dict[str, list[dict[str, Any]]], user_id: str,
          tables: list[str]) -> dict[str, list[str]]:
    """Per table, the sorted content of ``user_id``'s documents (every seeded table has
    ``userId``)."""

    return {t: sorted(plain(d) for d in docs.get(t, []) if d.get("userId") == user_id)
            for t in tables}
