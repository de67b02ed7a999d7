"""``byod serve`` as a real process on loopback, for the tests that drive it over HTTP
(one service, or several replicas over one registry)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["BYOD", "free_port", "start_serve", "stop_serve"]

BYOD = Path(sys.executable).with_name("byod")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(env: dict[str, str], cwd: Path, log: Path,
                timeout_s: float = 60.0) -> tuple[subprocess.Popen[bytes], int]:
    """Start `byod serve` on a free port (output appended to ``log``) and wait until it
    answers ``/healthz``; the process and its port."""

    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([str(BYOD), "serve", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait(10)
    raise AssertionError("the service did not start: " + log.read_text())


def stop_serve(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Signal the service and wait for it (killed if it does not stop within 20 s)."""

    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
