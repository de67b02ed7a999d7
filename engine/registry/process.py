"""Which process holds a lease, and whether it is provably dead.

A lease records its holder's host name, pid namespace, pid and process start time. A
later command on the same host (and in the same pid namespace) can then tell that the
holder is gone — no process with that pid, a zombie, or a *different* process that reused
the pid (its start time differs) — and take the lease over at once instead of waiting for
it to expire. Anything it cannot prove (another host, no ``/proc``, a pid that exists
but whose start time cannot be read) counts as alive: the lease then expires on its TTL.

Start times come from ``/proc/<pid>/stat`` (field 22, clock ticks since boot) plus the
boot time of ``/proc/stat``: seconds since the epoch, identical for every reader on the
same boot. Without ``/proc`` only "no such pid" proves a death.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["ProcessId", "current_process", "provably_dead", "start_time"]


@dataclass(frozen=True)
class ProcessId:
    """One process: where it runs, its pid, and when it started (None when unknown)."""

    host: str
    pid: int
    started: float | None = None
    pid_namespace: str | None = None


@lru_cache(maxsize=1)
def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of ``/proc/<pid>/stat``, or None when unreadable."""

    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    rest = text[text.rfind(")") + 2:].split()
    try:
        return rest[0], int(rest[19])
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds, 10 ms resolution), or None."""

    stat, boot = _stat(pid), _boot_time()
    if stat is None or boot is None:
        return None
    try:
        hz = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return None
    return round(boot + stat[1] / hz, 2)


def _pid_namespace(pid: int | str = "self") -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def current_process() -> ProcessId:
    """This process (recomputed after a fork: the pid changes)."""

    return _current(os.getpid())


@lru_cache(maxsize=4)
def _current(pid: int) -> ProcessId:
    return ProcessId(host=socket.gethostname(), pid=pid, started=start_time(pid),
                     pid_namespace=_pid_namespace())


def provably_dead(holder: ProcessId) -> bool:
    """True only when ``holder`` ran on this host, in this pid namespace, and is gone:
    no such pid, a zombie, or the pid now belongs to a process that started at another
    time. Everything else (another host, unknown start time, no permission) is False."""

    me = current_process()
    if holder.host != me.host or holder.pid <= 0:
        return False
    if holder.pid_namespace and me.pid_namespace and holder.pid_namespace != me.pid_namespace:
        return False
    if holder.pid == me.pid:  # this very process holds it (maybe under another holder id)
        return holder.started is not None and me.started is not None \
            and holder.started != me.started
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    stat = _stat(holder.pid)
    if stat is not None and stat[0] in ("Z", "X"):
        return True  # killed, not yet reaped by its parent
    if holder.started is None:
        return False
    now = start_time(holder.pid)
    return now is not None and abs(now - holder.started) > 0.05
