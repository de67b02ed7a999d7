"""Deterministic crash points for crash tests: ``BYOD_CRASH_AT=<point>[@<n>]`` makes the
process SIGKILL itself the n-th time (default: the first) it reaches ``<point>``.

Inert unless the variable is set: a real kill at a chosen instant, with no ``finally``
block, no lease release and no flush — what a crash test needs to prove that the
documented recovery works. Never set it in production. The points (see
docs/operator-guide.md, "After a crash"):

* ``disconnect.imported`` — a page was imported on main, its progress not saved yet
* ``disconnect.page`` — a page was copied and its progress saved
* ``disconnect.deleted`` — a page was deleted on the user's deployment, progress not saved
* ``disconnect.verified`` — the copy (or deletion) is verified and saved as such; the
  user is not marked disconnected yet (the completion window)
* ``disconnect.marked`` — the user is marked disconnected; the progress is not final yet
* ``copy.imported`` — connect's copy from main imported documents into the user's
  deployment, the new ids not saved yet
* ``copy.page`` — a page of the copy from main is done and saved
* ``copy.verified`` — the copy is verified and saved as done; the user is not marked
  connected yet
* ``connect.deployed`` — connect deployed the bundle; the version is not recorded yet
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_ENV", "POINTS", "crash_point"]

CRASH_ENV = "BYOD_CRASH_AT"
POINTS: frozenset[str] = frozenset({
    "disconnect.imported", "disconnect.page", "disconnect.deleted", "disconnect.verified",
    "disconnect.marked", "copy.imported", "copy.page", "copy.verified", "connect.deployed",
})
_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process if ``BYOD_CRASH_AT`` names ``name`` and this is the n-th time
    it is reached; otherwise nothing."""

    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
