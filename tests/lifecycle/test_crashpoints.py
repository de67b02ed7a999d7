"""``BYOD_CRASH_AT`` kills the process at the named point (the n-th time), and is inert
otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

CODE = """
from engine.lifecycle.crashpoints import crash_point
for i in range(1, 4):
    crash_point("other.point")
    crash_point("disconnect.page")
    print(i, flush=True)
"""


def _run(spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BYOD_CRASH_AT"}
    if spec is not None:
        env["BYOD_CRASH_AT"] = spec
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                          text=True, timeout=60)


def test_inert_unless_named() -> None:
    for spec in (None, "", "copy.page"):
        result = _run(spec)
        assert result.returncode == 0 and result.stdout.split() == ["1", "2", "3"]


def test_kills_with_sigkill_at_the_nth_time() -> None:
    first = _run("disconnect.page")
    assert first.returncode == -signal.SIGKILL and first.stdout == ""
    second = _run("disconnect.page@2")
    assert second.returncode == -signal.SIGKILL and second.stdout.split() == ["1"]
